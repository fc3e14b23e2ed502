// One CodeMirror 6 view bound to one file of the project's Loro document.
import { indentWithTab } from '@codemirror/commands';
import { cpp } from '@codemirror/lang-cpp';
import { java } from '@codemirror/lang-java';
import { javascript } from '@codemirror/lang-javascript';
import { python } from '@codemirror/lang-python';
import { rust } from '@codemirror/lang-rust';
import { EditorState, type Extension } from '@codemirror/state';
import { EditorView, keymap } from '@codemirror/view';
import { basicSetup } from 'codemirror';
import { LoroText, type LoroDoc } from 'loro-crdt';
import { useEffect, useRef } from 'react';
import { loroBinding } from '../editor/binding';
import { remoteCursors, setRemoteCursors, type RemoteCursor } from '../editor/cursors';

export interface Activity {
  cursor: number;
  anchor: number;
  head: number;
  typed: boolean;
}

function languageFor(path: string): Extension {
  const ext = path.slice(path.lastIndexOf('.') + 1).toLowerCase();
  switch (ext) {
    case 'py':
      return python();
    case 'js':
    case 'mjs':
    case 'ts':
      return javascript({ typescript: ext === 'ts' });
    case 'rs':
      return rust();
    case 'c':
    case 'h':
    case 'cc':
    case 'cpp':
    case 'hpp':
      return cpp();
    case 'java':
      return java();
    default:
      return [];
  }
}

declare global {
  interface Window {
    /** For the browser tests: the text the editor shows now. */
    codecrafterEditorText?: () => string;
  }
}

export function Editor(props: {
  doc: LoroDoc;
  path: string;
  readOnly: boolean;
  cursors: RemoteCursor[];
  onActivity(activity: Activity): void;
  onRun(): void;
}) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const callbacks = useRef(props);
  callbacks.current = props;

  useEffect(() => {
    const text = props.doc.getMap('files').get(props.path);
    if (!(text instanceof LoroText) || !host.current) return;
    const editor = new EditorView({
      parent: host.current,
      state: EditorState.create({
        doc: text.toString(),
        extensions: [
          keymap.of([
            { key: 'Mod-Enter', run: () => (callbacks.current.onRun(), true) },
            indentWithTab,
          ]),
          basicSetup,
          languageFor(props.path),
          EditorView.lineWrapping,
          EditorState.readOnly.of(props.readOnly),
          EditorView.editable.of(!props.readOnly),
          EditorView.contentAttributes.of({ 'aria-label': `Editor for ${props.path}` }),
          loroBinding(props.doc, text),
          remoteCursors(),
          EditorView.updateListener.of((update) => {
            if (!update.selectionSet && !update.docChanged) return;
            const typed = update.transactions.some((tr) => tr.isUserEvent('input') || tr.isUserEvent('delete'));
            const main = update.state.selection.main;
            callbacks.current.onActivity({ cursor: main.head, anchor: main.anchor, head: main.head, typed });
          }),
        ],
      }),
    });
    view.current = editor;
    window.codecrafterEditorText = () => editor.state.doc.toString();
    return () => {
      editor.destroy();
      view.current = null;
      window.codecrafterEditorText = undefined;
    };
  }, [props.doc, props.path, props.readOnly]);

  useEffect(() => {
    view.current?.dispatch({ effects: setRemoteCursors.of(props.cursors) });
  }, [props.cursors]);

  return <div className="editor-host" ref={host} data-testid="editor" />;
}
