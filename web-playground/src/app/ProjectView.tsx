// A project open in the editor: its Loro document kept live, the file tree, the editor with
// other people's cursors, and the side panels (run, chat, versions, members).
import { LoroDoc } from 'loro-crdt';
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import type { Api, ConnectionState } from '../client/api';
import { DocSync, decodeBase64, encodeBase64 } from '../editor/sync';
import type { RemoteCursor } from '../editor/cursors';
import {
  ApplyUpdateDocument,
  CreateFileDocument,
  DeleteFileDocument,
  DocumentUpdatesDocument,
  PresenceDocument,
  ProjectDocument,
  ProjectEventsDocument,
  RenameFileDocument,
  UpdatePresenceDocument,
  type PresenceSubscription,
  type ProjectEventsSubscription,
  type ProjectQuery,
} from '../generated/graphql';
import type { Notify } from './App';
import { Editor, type Activity } from './Editor';
import { appended, emptyLog, type EventLog } from './events';
import { ChatPanel, MembersPanel, RunPanel, VersionsPanel } from './Panels';

export const clientId = crypto.randomUUID();
type Presence = PresenceSubscription['presence'];
export type ProjectEvent = ProjectEventsSubscription['projectEvents'];

const HEARTBEAT_MS = 5_000;
const TYPING_MS = 1_500;

export function ProjectView(props: { api: Api; projectId: string; notify: Notify; navigate(path: string): void }) {
  const { api, projectId, notify } = props;
  const [project, setProject] = useState<ProjectQuery['project'] | null>(null);
  const doc = useMemo(() => new LoroDoc(), []);
  const [paths, setPaths] = useState<string[]>([]);
  const [ready, setReady] = useState(false);
  const [current, setCurrent] = useState<string | null>(null);
  const [connection, setConnection] = useState<ConnectionState>(api.state);
  const [pending, setPending] = useState(false);
  const [presence, setPresence] = useState<Presence>([]);
  const [events, setEvents] = useState<EventLog<ProjectEvent>>(emptyLog);
  const [panel, setPanel] = useState<'run' | 'chat' | 'versions' | 'members'>('run');
  const [runRequests, setRunRequests] = useState(0);
  // Bumped on every reconnection: live-only streams (events) may have missed something.
  const [resumes, setResumes] = useState(0);
  const activity = useRef<Activity>({ cursor: 0, anchor: 0, head: 0, typed: false });
  const lastTyped = useRef(0);

  const reloadProject = useCallback(() => {
    api
      .request(ProjectDocument, { id: projectId })
      .then((data) => setProject(data.project))
      .catch(notify);
  }, [api, projectId, notify]);
  useEffect(reloadProject, [reloadProject]);

  // The document: subscribe from our version vector on every (re)connection.
  useEffect(() => {
    const sync = new DocSync(doc, {
      send: async (update) => {
        await api.request(ApplyUpdateDocument, { projectId, update: encodeBase64(update), clientId });
      },
      onPending: setPending,
      onRefused: notify,
    });
    const files = doc.getMap('files');
    const refreshPaths = () => setPaths([...files.keys()].sort());
    const unsubscribeDoc = doc.subscribe(refreshPaths);
    let stop: (() => void) | null = null;
    const start = () => {
      stop?.();
      const since = sync.since();
      stop = api.subscribe(
        DocumentUpdatesDocument,
        { projectId, since: since ? encodeBase64(since) : null },
        {
          next: ({ documentUpdates: event }) => {
            if (!event.catchUp && event.clientId === clientId) return;
            sync.receive(decodeBase64(event.update), event.catchUp);
            if (event.catchUp) {
              refreshPaths();
              setReady(true);
            }
          },
          error: notify,
        },
      );
    };
    const offConnection = api.onConnection((state) => {
      setConnection(state);
      if (state === 'connected') {
        start();
        setResumes((n) => n + 1);
      }
      else {
        stop?.();
        stop = null;
        sync.disconnected();
      }
    });
    start();
    return () => {
      offConnection();
      stop?.();
      unsubscribeDoc();
      sync.dispose();
    };
  }, [api, doc, projectId, notify]);

  // Open the first file once the document is here; follow renames and deletions.
  useEffect(() => {
    if (!ready) return;
    if (current === null || !paths.includes(current)) setCurrent(paths[0] ?? null);
  }, [ready, paths, current]);

  // Presence and project events.
  useEffect(() => {
    const stopPresence = api.subscribe(PresenceDocument, { projectId, clientId }, {
      next: (data) => setPresence(data.presence),
      error: notify,
    });
    const stopEvents = api.subscribe(ProjectEventsDocument, { projectId }, {
      next: (data) => {
        setEvents((log) => appended(log, data.projectEvents));
        const kind = data.projectEvents.__typename;
        if (kind === 'MemberJoined' || kind === 'MemberLeft' || kind === 'MemberRemoved') reloadProject();
      },
      error: notify,
    });
    return () => {
      stopPresence();
      stopEvents();
    };
  }, [api, projectId, notify, reloadProject]);

  const sendPresence = useCallback(() => {
    const a = activity.current;
    const typing = Date.now() - lastTyped.current < TYPING_MS;
    api
      .request(UpdatePresenceDocument, {
        projectId,
        clientId,
        file: current,
        cursor: current ? a.cursor : null,
        selection: current ? { anchor: a.anchor, head: a.head } : null,
        typing,
      })
      .catch(() => undefined); // a missed heartbeat is repaired by the next one
  }, [api, projectId, current]);

  useEffect(() => {
    sendPresence();
    const timer = setInterval(sendPresence, HEARTBEAT_MS);
    return () => clearInterval(timer);
  }, [sendPresence]);

  const presenceTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const typingTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const onActivity = useCallback(
    (next: Activity) => {
      activity.current = next;
      if (next.typed) {
        lastTyped.current = Date.now();
        clearTimeout(typingTimer.current);
        typingTimer.current = setTimeout(sendPresence, TYPING_MS + 50);
      }
      if (presenceTimer.current === undefined) {
        presenceTimer.current = setTimeout(() => {
          presenceTimer.current = undefined;
          sendPresence();
        }, 120);
      }
    },
    [sendPresence],
  );

  const cursors: RemoteCursor[] = useMemo(
    () =>
      presence
        .filter((p) => p.clientId !== clientId && p.file === current && p.cursor !== null)
        .map((p) => ({
          clientId: p.clientId,
          name: p.user.displayName || p.user.username,
          color: p.color,
          cursor: p.cursor ?? 0,
          anchor: p.selection?.anchor,
          head: p.selection?.head,
          typing: p.typing,
        })),
    [presence, current],
  );

  const role = project?.viewerRole ?? null;
  const canEdit = role === 'OWNER' || role === 'EDITOR';

  const fileAction = async (action: 'create' | 'rename' | 'delete', path?: string) => {
    try {
      if (action === 'create') {
        const name = prompt('New file name (for example main.py)')?.trim();
        if (!name) return;
        await api.request(CreateFileDocument, { projectId, path: name, content: null });
        setCurrent(name);
      } else if (action === 'rename' && path) {
        const name = prompt(`Rename ${path} to`, path)?.trim();
        if (!name || name === path) return;
        await api.request(RenameFileDocument, { projectId, path, newPath: name });
        setCurrent(name);
      } else if (action === 'delete' && path) {
        if (!confirm(`Delete ${path}?`)) return;
        await api.request(DeleteFileDocument, { projectId, path });
      }
    } catch (error) {
      notify(error);
    }
  };

  const connectionText =
    connection === 'connected'
      ? pending
        ? 'Connected · saving…'
        : 'Connected · all changes saved'
      : connection === 'offline'
        ? 'Offline · your edits are kept and sent when you are back'
        : 'Reconnecting…';

  return (
    <main className="workspace">
      <div className="workspace-head">
        <h1>{project?.title ?? 'Loading…'}</h1>
        <span className={`connection ${connection}`} data-testid="connection" data-state={connection} data-pending={pending}>
          {connectionText}
        </span>
        <ul className="presence" aria-label="People here" data-testid="presence">
          {presence.map((p) => (
            <li key={p.clientId} style={{ borderColor: p.color }} title={p.file ?? ''}>
              <span className="dot" style={{ background: p.color }} />
              {p.user.displayName || p.user.username}
              {p.clientId === clientId ? ' (you)' : ''}
              {p.typing ? ' · typing…' : ''}
            </li>
          ))}
        </ul>
      </div>
      <nav className="files" aria-label="Files">
        <div className="files-head">
          <h2>Files</h2>
          {canEdit && (
            <button onClick={() => void fileAction('create')} aria-label="New file">
              + New
            </button>
          )}
        </div>
        <ul>
          {paths.map((path) => (
            <li key={path} className={path === current ? 'current' : ''}>
              <button className="file" onClick={() => setCurrent(path)} aria-current={path === current}>
                {path}
              </button>
              {canEdit && (
                <span className="file-actions">
                  <button aria-label={`Rename ${path}`} onClick={() => void fileAction('rename', path)}>
                    ✎
                  </button>
                  <button aria-label={`Delete ${path}`} onClick={() => void fileAction('delete', path)}>
                    ✕
                  </button>
                </span>
              )}
            </li>
          ))}
        </ul>
        {ready && paths.length === 0 && <p className="muted">No files yet.</p>}
      </nav>
      <section className="editor-pane" aria-label="Editor">
        {!ready && <p className="muted">Loading the document…</p>}
        {ready && current && paths.includes(current) && (
          <Editor
            key={current}
            doc={doc}
            path={current}
            readOnly={!canEdit}
            cursors={cursors}
            onActivity={onActivity}
            onRun={() => {
              setPanel('run');
              setRunRequests((n) => n + 1);
            }}
          />
        )}
      </section>
      <aside className="side">
        <div role="tablist" className="tabs">
          {(['run', 'chat', 'versions', ...(role === 'OWNER' ? ['members' as const] : [])] as const).map((name) => (
            <button key={name} role="tab" aria-selected={panel === name} onClick={() => setPanel(name)}>
              {name[0]?.toUpperCase()}
              {name.slice(1)}
            </button>
          ))}
        </div>
        <div hidden={panel !== 'run'}>
          <RunPanel runRequests={runRequests} resumes={resumes} api={api} projectId={projectId} notify={notify} events={events} entry={current} canRun={canEdit} defaultLanguage={project?.defaultLanguage ?? 'PYTHON'} />
        </div>
        <div hidden={panel !== 'chat'}>
          <ChatPanel resumes={resumes} api={api} projectId={projectId} notify={notify} events={events} />
        </div>
        <div hidden={panel !== 'versions'}>
          <VersionsPanel api={api} projectId={projectId} notify={notify} path={current} canEdit={canEdit} />
        </div>
        {role === 'OWNER' && project && (
          <div hidden={panel !== 'members'}>
            <MembersPanel api={api} project={project} notify={notify} reload={reloadProject} />
          </div>
        )}
      </aside>
    </main>
  );
}
