// The side panels of a project: run, chat, versions, members.
import { useCallback, useEffect, useRef, useState, type FormEvent } from 'react';
import type { Api } from '../client/api';
import {
  AddMemberDocument,
  CancelRunDocument,
  CreateInviteDocument,
  CreateVersionDocument,
  FileAtDocument,
  InvitesDocument,
  LanguagesDocument,
  LatestRunsDocument,
  MessagesDocument,
  RemoveMemberDocument,
  RestoreVersionDocument,
  RevokeInviteDocument,
  RunCodeDocument,
  RunEventsDocument,
  SendMessageDocument,
  SetMemberRoleDocument,
  VersionsDocument,
  type InvitesQuery,
  type Language,
  type LanguagesQuery,
  type MessagePartsFragment,
  type ProjectQuery,
  type ProjectRole,
  type RunResultFragment,
  type VersionsQuery,
} from '../generated/graphql';
import type { Notify } from './App';
import { since, type EventLog } from './events';
import type { ProjectEvent } from './ProjectView';
import { LANGUAGES } from './Projects';

interface Chunk {
  stream: string;
  seq: number;
  data: string;
}

interface RunView {
  id: string;
  status: string;
  chunks: Chunk[];
  result: RunResultFragment | null;
  by: string | null;
}

/** The live chunks, or the stored output when they lack some: a chunk published before this
 * page subscribed and not yet in the run's row when it was read is only in the final row. */
function complete(chunks: Chunk[], run: { stdout: string; stderr: string }): Chunk[] {
  const text = (stream: string) => chunks.filter((c) => c.stream === stream).map((c) => c.data).join('');
  if (text('STDOUT') === run.stdout && text('STDERR') === run.stderr) return chunks;
  return [
    { stream: 'STDOUT', seq: 0, data: run.stdout },
    { stream: 'STDERR', seq: 0, data: run.stderr },
  ].filter((c) => c.data !== '');
}

const ENDED = new Set(['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'MEMORY_LIMIT', 'OUTPUT_LIMIT', 'CANCELLED', 'INTERNAL_ERROR']);

export function RunPanel(props: {
  /** Bumped by the editor's Mod-Enter: start a run. */
  runRequests: number;
  /** Bumped on reconnection: read the latest run again (its start may have been missed). */
  resumes: number;
  api: Api;
  projectId: string;
  notify: Notify;
  events: EventLog<ProjectEvent>;
  entry: string | null;
  canRun: boolean;
  defaultLanguage: Language;
}) {
  const { api, notify, events } = props;
  const [languages, setLanguages] = useState<LanguagesQuery['languages']>([]);
  const [language, setLanguage] = useState<Language | null>(null);
  const [stdin, setStdin] = useState('');
  const [run, setRun] = useState<RunView | null>(null);
  const seen = useRef(0);

  useEffect(() => {
    api.request(LanguagesDocument, {}).then((data) => setLanguages(data.languages)).catch(notify);
  }, [api, notify]);

  // The project's latest run, on opening and after a reconnection.
  useEffect(() => {
    api
      .request(LatestRunsDocument, { projectId: props.projectId, first: 1 })
      .then((data) => {
        const latest = data.runs.nodes[0];
        if (!latest) return;
        setRun((view) => {
          if (view && view.id === latest.id) return view;
          if (view && !ENDED.has(view.status)) return view;
          return {
            id: latest.id,
            status: latest.status,
            chunks: [],
            result: ENDED.has(latest.status) ? latest : null,
            by: latest.requestedBy.username,
          };
        });
      })
      .catch(() => undefined); // the live events still come
  }, [api, props.projectId, props.resumes]);

  // Follow a run's events: status, output chunks in `seq` order, the result.
  useEffect(() => {
    if (!run?.id) return;
    const id = run.id;
    return api.subscribe(RunEventsDocument, { runId: id }, {
      next: ({ runEvents: event }) =>
        setRun((view) => {
          if (!view || view.id !== id) return view;
          if (event.__typename === 'RunStatusChanged') return { ...view, status: event.status };
          if (event.__typename === 'RunOutput') {
            if (view.chunks.some((c) => c.stream === event.stream && c.seq === event.seq)) return view;
            return { ...view, chunks: [...view.chunks, event].sort((a, b) => a.seq - b.seq) };
          }
          if (event.__typename === 'RunFinished') {
            return { ...view, status: event.run.status, result: event.run, chunks: complete(view.chunks, event.run) };
          }
          return view;
        }),
      error: notify,
    });
  }, [api, notify, run?.id]);

  // A run anybody in the project starts shows here too.
  useEffect(() => {
    for (const event of since(events, seen.current)) {
      if (event.__typename === 'RunStarted') {
        const started = event;
        setRun((view) =>
          view?.id === started.run.id
            ? view
            : { id: started.run.id, status: 'QUEUED', chunks: [], result: null, by: started.requestedBy.username },
        );
      }
    }
    seen.current = events.total;
  }, [events]);

  const start = async (event?: FormEvent) => {
    event?.preventDefault();
    if (!props.canRun || !props.entry) return;
    try {
      const data = await api.request(RunCodeDocument, {
        projectId: props.projectId,
        language: language ?? props.defaultLanguage,
        entry: props.entry,
        stdin: stdin || null,
      });
      setRun((view) =>
        view?.id === data.runCode.id ? view : { id: data.runCode.id, status: data.runCode.status, chunks: [], result: null, by: null },
      );
    } catch (error) {
      notify(error);
    }
  };

  const startRef = useRef(start);
  startRef.current = start;
  useEffect(() => {
    if (props.runRequests > 0) void startRef.current();
  }, [props.runRequests]);

  const cancel = async () => {
    if (!run) return;
    try {
      await api.request(CancelRunDocument, { id: run.id });
    } catch (error) {
      notify(error);
    }
  };

  const result = run?.result;
  return (
    <section aria-labelledby="run-title" className="panel">
      <h2 id="run-title">Run</h2>
      <form onSubmit={(event) => void start(event)}>
        <label>
          Language
          <select value={language ?? props.defaultLanguage} onChange={(e) => setLanguage(e.target.value as Language)}>
            {(languages.length ? languages.map((l) => l.language) : LANGUAGES).map((l) => {
              const info = languages.find((x) => x.language === l);
              return (
                <option key={l} value={l} disabled={info ? !info.available : false}>
                  {l}
                  {info?.version ? ` (${info.version})` : ''}
                  {info && !info.available ? ' — not installed' : ''}
                </option>
              );
            })}
          </select>
        </label>
        <label>
          Input (stdin)
          <textarea value={stdin} onChange={(e) => setStdin(e.target.value)} rows={2} />
        </label>
        <div className="row">
          <button type="submit" disabled={!props.canRun || !props.entry} data-testid="run" title="Ctrl+Enter in the editor">
            Run {props.entry ?? ''}
          </button>
          {run && !ENDED.has(run.status) && (
            <button type="button" onClick={() => void cancel()} data-testid="cancel-run">
              Cancel
            </button>
          )}
        </div>
        {!props.canRun && <p className="muted">Viewers cannot run code.</p>}
      </form>
      {run && (
        <div className="run" data-testid="run-view" data-status={run.status} data-run={run.id}>
          <p>
            <strong data-testid="run-status">{run.status}</strong>
            {run.by ? ` · started by ${run.by}` : ''}
            {result?.exitCode != null ? ` · exit code ${result.exitCode}` : ''}
            {result?.wallTimeMs != null ? ` · ${result.wallTimeMs} ms` : ''}
            {result?.peakMemoryBytes != null ? ` · ${(result.peakMemoryBytes / 1048576).toFixed(1)} MiB` : ''}
          </p>
          {result?.error && <p className="error">{result.error}</p>}
          <pre className="output" data-testid="run-output" aria-live="polite">
            {run.chunks.map((c) => (
              <span key={`${c.stream}-${c.seq}`} className={c.stream === 'STDERR' ? 'stderr' : 'stdout'}>
                {c.data}
              </span>
            ))}
          </pre>
        </div>
      )}
    </section>
  );
}

export function ChatPanel(props: { resumes: number; api: Api; projectId: string; notify: Notify; events: EventLog<ProjectEvent> }) {
  const { api, projectId, notify, events, resumes } = props;
  const [messages, setMessages] = useState<MessagePartsFragment[]>([]);
  const [older, setOlder] = useState<string | null>(null);
  const pagedBack = useRef(false);
  const [text, setText] = useState('');
  const seen = useRef(0);

  const load = useCallback(
    async (before: string | null) => {
      try {
        const data = await api.request(MessagesDocument, { projectId, first: 30, before });
        const page = [...data.messages.nodes].reverse();
        // The newest page again (after a reconnection) keeps older pages already shown.
        setMessages((list) => {
          if (before) return [...page, ...list];
          const ids = new Set(page.map((m) => m.id));
          const oldest = page[0]?.createdAt ?? '';
          return [...list.filter((m) => !ids.has(m.id) && m.createdAt < oldest), ...page];
        });
        if (before) pagedBack.current = true;
        if (before || !pagedBack.current) {
          setOlder(data.messages.pageInfo.hasNextPage ? (data.messages.pageInfo.endCursor ?? null) : null);
        }
      } catch (error) {
        notify(error);
      }
    },
    [api, projectId, notify],
  );
  useEffect(() => void load(null), [load, resumes]);

  useEffect(() => {
    for (const event of since(events, seen.current)) {
      if (event.__typename === 'MessagePosted') {
        const message = event.message;
        setMessages((list) => (list.some((m) => m.id === message.id) ? list : [...list, message]));
      }
    }
    seen.current = events.total;
  }, [events]);

  const send = async (event: FormEvent) => {
    event.preventDefault();
    try {
      const data = await api.request(SendMessageDocument, { projectId, text });
      setText('');
      setMessages((list) => (list.some((m) => m.id === data.sendMessage.id) ? list : [...list, data.sendMessage]));
    } catch (error) {
      notify(error);
    }
  };

  return (
    <section aria-labelledby="chat-title" className="panel">
      <h2 id="chat-title">Chat</h2>
      {older && <button onClick={() => void load(older)}>Older messages</button>}
      <ol className="messages" aria-live="polite">
        {messages.map((m) => (
          <li key={m.id}>
            <strong>{m.author.displayName || m.author.username}</strong>{' '}
            <time className="muted">{new Date(m.createdAt).toLocaleTimeString()}</time>
            <div className="message-text">{m.text}</div>
          </li>
        ))}
      </ol>
      <form onSubmit={(event) => void send(event)} className="row">
        <label className="grow">
          <span className="sr-only">Message</span>
          <input value={text} onChange={(e) => setText(e.target.value)} placeholder="Say something" maxLength={4000} required />
        </label>
        <button type="submit">Send</button>
      </form>
    </section>
  );
}

export function VersionsPanel(props: { api: Api; projectId: string; notify: Notify; path: string | null; canEdit: boolean }) {
  const { api, projectId, notify, path } = props;
  const [versions, setVersions] = useState<VersionsQuery['versions']>([]);
  const [title, setTitle] = useState('');
  const [viewing, setViewing] = useState<{ id: string; title: string; content: string | null } | null>(null);

  const load = useCallback(() => {
    api.request(VersionsDocument, { projectId }).then((data) => setVersions(data.versions)).catch(notify);
  }, [api, projectId, notify]);
  useEffect(load, [load]);

  const create = async (event: FormEvent) => {
    event.preventDefault();
    try {
      await api.request(CreateVersionDocument, { projectId, title });
      setTitle('');
      load();
    } catch (error) {
      notify(error);
    }
  };

  const view = async (id: string, versionTitle: string) => {
    if (!path) return;
    try {
      const data = await api.request(FileAtDocument, { projectId, path, version: id });
      setViewing({ id, title: versionTitle, content: data.file.content });
    } catch (error) {
      setViewing({ id, title: versionTitle, content: null });
      notify(error);
    }
  };

  const restore = async (id: string) => {
    try {
      await api.request(RestoreVersionDocument, { projectId, versionId: id });
      setViewing(null);
    } catch (error) {
      notify(error);
    }
  };

  return (
    <section aria-labelledby="versions-title" className="panel">
      <h2 id="versions-title">Versions</h2>
      {props.canEdit && (
        <form onSubmit={(event) => void create(event)} className="row">
          <label className="grow">
            <span className="sr-only">Version name</span>
            <input value={title} onChange={(e) => setTitle(e.target.value)} placeholder="Name this version" required />
          </label>
          <button type="submit">Save version</button>
        </form>
      )}
      <ul className="versions">
        {versions.map((v) => (
          <li key={v.id} data-testid="version">
            <span>
              {v.title} <span className="muted">{new Date(v.createdAt).toLocaleString()}</span>
            </span>
            <button onClick={() => void view(v.id, v.title)} disabled={!path}>
              View
            </button>
            {props.canEdit && <button onClick={() => void restore(v.id)}>Restore</button>}
          </li>
        ))}
      </ul>
      {viewing && (
        <div className="version-view">
          <h3>
            {path} at “{viewing.title}”
          </h3>
          <pre data-testid="version-content">{viewing.content ?? '(this file did not exist then)'}</pre>
          <button onClick={() => setViewing(null)}>Close</button>
        </div>
      )}
    </section>
  );
}

export function MembersPanel(props: { api: Api; project: ProjectQuery['project']; notify: Notify; reload(): void }) {
  const { api, project, notify, reload } = props;
  const [username, setUsername] = useState('');
  const [role, setRole] = useState<ProjectRole>('EDITOR');
  const [invites, setInvites] = useState<InvitesQuery['invites']>([]);
  const [link, setLink] = useState<string | null>(null);

  const loadInvites = useCallback(() => {
    api.request(InvitesDocument, { projectId: project.id }).then((data) => setInvites(data.invites)).catch(notify);
  }, [api, project.id, notify]);
  useEffect(loadInvites, [loadInvites]);

  const run = async (action: () => Promise<unknown>) => {
    try {
      await action();
      reload();
      loadInvites();
    } catch (error) {
      notify(error);
    }
  };

  return (
    <section aria-labelledby="members-title" className="panel">
      <h2 id="members-title">Members</h2>
      <ul className="members">
        {project.members.map((m) => (
          <li key={m.user.id}>
            {m.user.displayName || m.user.username} <span className="muted">@{m.user.username}</span>
            <select
              aria-label={`Role of ${m.user.username}`}
              value={m.role}
              onChange={(e) =>
                void run(() =>
                  api.request(SetMemberRoleDocument, { projectId: project.id, userId: m.user.id, role: e.target.value as ProjectRole }),
                )
              }
            >
              <option>OWNER</option>
              <option>EDITOR</option>
              <option>VIEWER</option>
            </select>
            <button onClick={() => void run(() => api.request(RemoveMemberDocument, { projectId: project.id, userId: m.user.id }))}>
              Remove
            </button>
          </li>
        ))}
      </ul>
      <form
        className="row"
        onSubmit={(event) => {
          event.preventDefault();
          void run(async () => {
            await api.request(AddMemberDocument, { projectId: project.id, username, role });
            setUsername('');
          });
        }}
      >
        <label className="grow">
          Add by username
          <input value={username} onChange={(e) => setUsername(e.target.value)} required />
        </label>
        <select aria-label="Role" value={role} onChange={(e) => setRole(e.target.value as ProjectRole)}>
          <option>EDITOR</option>
          <option>VIEWER</option>
        </select>
        <button type="submit">Add</button>
      </form>
      <h3>Invite links</h3>
      <button
        onClick={() =>
          void run(async () => {
            const data = await api.request(CreateInviteDocument, { projectId: project.id, role, expiresInHours: 168 });
            setLink(`${location.origin}/invite/${encodeURIComponent(data.createInvite.token)}`);
          })
        }
      >
        Create an invite link ({role.toLowerCase()}, one week)
      </button>
      {link && (
        <p>
          Share this link (shown once): <input readOnly value={link} aria-label="Invite link" onFocus={(e) => e.target.select()} />
        </p>
      )}
      <ul>
        {invites.map((invite) => (
          <li key={invite.id}>
            {invite.role.toLowerCase()} · used {invite.uses}× {invite.expiresAt ? `· until ${new Date(invite.expiresAt).toLocaleDateString()}` : ''}
            <button onClick={() => void run(() => api.request(RevokeInviteDocument, { id: invite.id }))}>Revoke</button>
          </li>
        ))}
      </ul>
    </section>
  );
}
