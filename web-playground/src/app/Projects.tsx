import { useCallback, useEffect, useState, type FormEvent } from 'react';
import type { Api } from '../client/api';
import {
  CreateProjectDocument,
  ForkProjectDocument,
  JoinProjectDocument,
  ProjectsDocument,
  type Language,
  type ProjectPartsFragment,
} from '../generated/graphql';
import type { Notify } from './App';

const PAGE = 20;
export const LANGUAGES: Language[] = ['PYTHON', 'JAVASCRIPT', 'TYPESCRIPT', 'C', 'CPP', 'BASH', 'RUST', 'JAVA', 'GO', 'RUBY'];

export function ProjectList({ api, notify, navigate }: { api: Api; notify: Notify; navigate(path: string): void }) {
  const [search, setSearch] = useState('');
  const [projects, setProjects] = useState<ProjectPartsFragment[]>([]);
  const [total, setTotal] = useState(0);
  const [after, setAfter] = useState<string | null>(null);
  const [title, setTitle] = useState('');
  const [language, setLanguage] = useState<Language>('PYTHON');
  const [isPublic, setIsPublic] = useState(false);

  const load = useCallback(
    async (cursor: string | null) => {
      try {
        const data = await api.request(ProjectsDocument, {
          filter: search.trim() ? { search: search.trim() } : null,
          first: PAGE,
          after: cursor,
        });
        setProjects((list) => (cursor ? [...list, ...data.projects.nodes] : data.projects.nodes));
        setTotal(data.projects.totalCount);
        setAfter(data.projects.pageInfo.hasNextPage ? (data.projects.pageInfo.endCursor ?? null) : null);
      } catch (error) {
        notify(error);
      }
    },
    [api, notify, search],
  );

  useEffect(() => {
    const timer = setTimeout(() => void load(null), 200);
    return () => clearTimeout(timer);
  }, [load]);

  const create = async (event: FormEvent) => {
    event.preventDefault();
    try {
      const data = await api.request(CreateProjectDocument, {
        input: { title, defaultLanguage: language, isPublic },
      });
      navigate(`/p/${data.createProject.id}`);
    } catch (error) {
      notify(error);
    }
  };

  const act = async (action: 'fork' | 'join', project: ProjectPartsFragment) => {
    try {
      if (action === 'fork') {
        const data = await api.request(ForkProjectDocument, { id: project.id, title: null });
        navigate(`/p/${data.forkProject.id}`);
      } else {
        await api.request(JoinProjectDocument, { id: project.id });
        navigate(`/p/${project.id}`);
      }
    } catch (error) {
      notify(error);
    }
  };

  return (
    <main className="projects">
      <section aria-labelledby="new-project">
        <h2 id="new-project">New project</h2>
        <form className="row" onSubmit={(event) => void create(event)}>
          <label>
            Title
            <input name="title" value={title} onChange={(e) => setTitle(e.target.value)} required maxLength={120} />
          </label>
          <label>
            Language
            <select value={language} onChange={(e) => setLanguage(e.target.value as Language)}>
              {LANGUAGES.map((l) => (
                <option key={l}>{l}</option>
              ))}
            </select>
          </label>
          <label className="check">
            <input type="checkbox" checked={isPublic} onChange={(e) => setIsPublic(e.target.checked)} /> Public
          </label>
          <button type="submit">Create</button>
        </form>
      </section>
      <section aria-labelledby="project-list">
        <h2 id="project-list">Projects ({total})</h2>
        <label>
          Search
          <input type="search" value={search} onChange={(e) => setSearch(e.target.value)} placeholder="Title or description" />
        </label>
        <ul className="project-list">
          {projects.map((project) => (
            <li key={project.id} data-testid="project-row">
              <a
                href={`/p/${project.id}`}
                onClick={(event) => {
                  event.preventDefault();
                  navigate(`/p/${project.id}`);
                }}
              >
                {project.title}
              </a>
              <span className="muted">
                {' '}
                by {project.owner.username} · {project.isPublic ? 'public' : 'private'} · {project.defaultLanguage}
                {project.viewerRole ? ` · ${project.viewerRole.toLowerCase()}` : ''}
              </span>
              <span className="actions">
                <button onClick={() => void act('fork', project)}>Fork</button>
                {project.isPublic && !project.viewerRole && <button onClick={() => void act('join', project)}>Join</button>}
              </span>
            </li>
          ))}
        </ul>
        {after && <button onClick={() => void load(after)}>Show more</button>}
      </section>
    </main>
  );
}
