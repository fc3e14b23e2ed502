// CodeMirror 6 <-> one LoroText of the project's document. Hand-written rather than
// loro-codemirror: that plugin owns the document's sync and awareness itself, while here the
// server is the hub (applyUpdate/documentUpdates, presence from the API), so only the text
// binding is needed. Both sides count in UTF-16 code units.

import { Annotation, type ChangeSpec, type Extension } from '@codemirror/state';
import { ViewPlugin, type EditorView, type ViewUpdate } from '@codemirror/view';
import type { LoroDoc, LoroEventBatch, LoroText } from 'loro-crdt';

/** Marks a transaction that mirrors a change already in the Loro text. */
export const fromLoro = Annotation.define<boolean>();

/** The CodeMirror changes that replay a Loro text delta (positions in the old text). */
export function changesFromBatch(batch: LoroEventBatch): ChangeSpec[] {
  const changes: ChangeSpec[] = [];
  for (const event of batch.events) {
    if (event.diff.type !== 'text') continue;
    let pos = 0;
    for (const op of event.diff.diff) {
      if (op.retain !== undefined) {
        pos += op.retain;
      } else if (op.delete !== undefined) {
        changes.push({ from: pos, to: pos + op.delete });
        pos += op.delete;
      } else if (op.insert !== undefined) {
        changes.push({ from: pos, insert: op.insert });
      }
    }
  }
  return changes;
}

/** Keeps the editor and `text` equal: local edits are committed to the document (and so
 * become the next applyUpdate), imported ones are dispatched without moving the local
 * selection (CodeMirror maps it through them). */
export function loroBinding(doc: LoroDoc, text: LoroText): Extension {
  return ViewPlugin.define((view: EditorView) => {
    const unsubscribe = text.subscribe((batch) => {
      if (batch.by === 'local') return;
      const changes = changesFromBatch(batch);
      if (changes.length > 0) view.dispatch({ changes, annotations: fromLoro.of(true) });
    });
    return {
      update(update: ViewUpdate) {
        let changed = false;
        for (const tr of update.transactions) {
          if (!tr.docChanged || tr.annotation(fromLoro)) continue;
          let shift = 0;
          tr.changes.iterChanges((fromA, toA, _fromB, _toB, inserted) => {
            const at = fromA + shift;
            const removed = toA - fromA;
            if (removed > 0) text.delete(at, removed);
            const added = inserted.toString();
            if (added.length > 0) text.insert(at, added);
            shift += added.length - removed;
            changed = true;
          });
        }
        if (changed) doc.commit({ origin: 'editor' });
      },
      destroy() {
        unsubscribe();
      },
    };
  });
}
