// The CodeMirror <-> Loro binding and the sync queue, against real loro-crdt documents and a
// real (headless) CodeMirror state; no DOM is needed for the parts tested here.
import { EditorSelection, EditorState } from '@codemirror/state';
import { LoroDoc, LoroText, type LoroEventBatch } from 'loro-crdt';
import { describe, expect, it } from 'vitest';
import { changesFromBatch } from '../../src/editor/binding';
import { DocSync } from '../../src/editor/sync';

function withText(initial: string): { doc: LoroDoc; path: string } {
  const doc = new LoroDoc();
  doc.getMap('files').ensureMergeableText('main.py').insert(0, initial);
  doc.commit();
  return { doc, path: 'main.py' };
}

describe('changesFromBatch', () => {
  it('replays a remote edit without moving the local cursor before it', () => {
    const a = withText('hello world');
    const b = new LoroDoc();
    b.import(a.doc.export({ mode: 'snapshot' }));
    const text = b.getMap('files').get('main.py');
    if (!(text instanceof LoroText)) throw new Error('no text');
    let state = EditorState.create({ doc: text.toString(), selection: EditorSelection.cursor(5) });
    const batches: LoroEventBatch[] = [];
    text.subscribe((batch) => batches.push(batch));

    const before = a.doc.oplogVersion();
    const remote = a.doc.getMap('files').ensureMergeableText('main.py');
    remote.insert(11, '!');
    remote.delete(0, 1);
    remote.insert(0, 'H😀');
    a.doc.commit();
    b.import(a.doc.export({ mode: 'update', from: before }));

    expect(batches.length).toBeGreaterThan(0);
    for (const batch of batches) {
      state = state.update({ changes: changesFromBatch(batch) }).state;
    }
    expect(state.doc.toString()).toBe(text.toString());
    expect(state.doc.toString()).toBe('H😀ello world!');
    // The cursor stayed after "hello" (shifted by the two UTF-16 units of the emoji).
    expect(state.selection.main.head).toBe(5 - 1 + 3);
  });
});

describe('DocSync', () => {
  it('sends what is typed during a send in the next one, and nothing is lost', async () => {
    const server = new LoroDoc();
    server.getMap('files').ensureMergeableText('main.py');
    server.commit();
    const client = new LoroDoc();
    const sent: Uint8Array[] = [];
    let release: (() => void) | null = null;
    const sync = new DocSync(client, {
      send: (update) => {
        sent.push(update);
        server.import(update);
        return new Promise<void>((resolve) => {
          release = resolve;
        });
      },
    });
    sync.receive(server.export({ mode: 'snapshot' }), true);
    const text = client.getMap('files').ensureMergeableText('main.py');
    text.insert(0, 'a');
    client.commit();
    await Promise.resolve();
    await Promise.resolve();
    expect(sent.length).toBe(1);
    // Typed while the first update is in flight: not sent yet, not lost.
    text.insert(1, 'b');
    client.commit();
    text.insert(2, 'c');
    client.commit();
    await Promise.resolve();
    expect(sent.length).toBe(1);
    expect(sync.pending).toBe(true);
    const finish = release as (() => void) | null;
    finish?.();
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(sent.length).toBe(2);
    (release as (() => void) | null)?.();
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(sync.pending).toBe(false);
    expect(server.getMap('files').get('main.py')?.toString()).toBe('abc');
  });

  it('keeps edits made while disconnected and sends them after catching up', async () => {
    const server = new LoroDoc();
    server.getMap('files').ensureMergeableText('main.py').insert(0, 'x');
    server.commit();
    const client = new LoroDoc();
    const sync = new DocSync(client, {
      send: async (update) => {
        server.import(update);
      },
    });
    sync.receive(server.export({ mode: 'snapshot' }), true);
    sync.disconnected();
    const text = client.getMap('files').ensureMergeableText('main.py');
    text.insert(1, 'offline');
    client.commit();
    // Someone else edits the server meanwhile.
    const serverVv = server.oplogVersion();
    server.getMap('files').ensureMergeableText('main.py').insert(0, '>');
    server.commit();
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(server.getMap('files').get('main.py')?.toString()).toBe('>x');
    // Reconnect: since = the client's version vector; the server sends what it lacks.
    const since = sync.since();
    expect(since).not.toBeNull();
    const missed = server.export({ mode: 'update', from: serverVv });
    sync.receive(missed, true);
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(server.getMap('files').get('main.py')?.toString()).toBe('>xoffline');
    expect(client.getMap('files').get('main.py')?.toString()).toBe('>xoffline');
  });

  it('retries from the version the server reports on CONFLICT', async () => {
    const server = new LoroDoc();
    server.getMap('files').ensureMergeableText('main.py');
    server.commit();
    const client = new LoroDoc();
    let calls = 0;
    const sync = new DocSync(client, {
      send: async (update) => {
        calls += 1;
        if (calls === 1) {
          const { encodeBase64 } = await import('../../src/editor/sync');
          throw { code: 'CONFLICT', extensions: { versionVector: encodeBase64(server.oplogVersion().encode()) } };
        }
        server.import(update);
      },
    });
    sync.receive(server.export({ mode: 'snapshot' }), true);
    client.getMap('files').ensureMergeableText('main.py').insert(0, 'z');
    client.commit();
    const deadline = Date.now() + 2_000;
    while (server.getMap('files').get('main.py')?.toString() !== 'z' && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(server.getMap('files').get('main.py')?.toString()).toBe('z');
    expect(calls).toBe(2);
  });
});
