// Other people's cursors and selections, drawn from `presence` entries: a caret with the
// person's name in their colour, their selection tinted. Offsets are clamped to the text,
// as presence may be a moment behind the document.

import { StateEffect, StateField, type Extension, type Range } from '@codemirror/state';
import { Decoration, EditorView, WidgetType, type DecorationSet } from '@codemirror/view';

export interface RemoteCursor {
  clientId: string;
  name: string;
  color: string;
  cursor: number;
  anchor?: number;
  head?: number;
  typing: boolean;
}

export const setRemoteCursors = StateEffect.define<RemoteCursor[]>();

class CaretWidget extends WidgetType {
  constructor(private readonly remote: RemoteCursor) {
    super();
  }

  override eq(other: CaretWidget): boolean {
    const a = this.remote;
    const b = other.remote;
    return a.clientId === b.clientId && a.name === b.name && a.color === b.color && a.typing === b.typing;
  }

  toDOM(): HTMLElement {
    const caret = document.createElement('span');
    caret.className = 'cc-remote-caret';
    caret.style.borderLeftColor = this.remote.color;
    caret.dataset.clientId = this.remote.clientId;
    const label = document.createElement('span');
    label.className = 'cc-remote-name';
    label.style.backgroundColor = this.remote.color;
    label.textContent = this.remote.typing ? `${this.remote.name} ✎` : this.remote.name;
    caret.append(label);
    return caret;
  }

  override ignoreEvent(): boolean {
    return true;
  }
}

function build(cursors: RemoteCursor[], length: number): DecorationSet {
  const clamp = (n: number) => Math.max(0, Math.min(length, n));
  const ranges: Range<Decoration>[] = [];
  for (const remote of cursors) {
    if (remote.anchor !== undefined && remote.head !== undefined && remote.anchor !== remote.head) {
      const from = clamp(Math.min(remote.anchor, remote.head));
      const to = clamp(Math.max(remote.anchor, remote.head));
      if (from < to) {
        ranges.push(
          Decoration.mark({ attributes: { style: `background-color: ${remote.color}33` } }).range(from, to),
        );
      }
    }
    ranges.push(Decoration.widget({ widget: new CaretWidget(remote), side: 1 }).range(clamp(remote.cursor)));
  }
  return Decoration.set(ranges, true);
}

const remoteCursorField = StateField.define<DecorationSet>({
  create: () => Decoration.none,
  update(value, tr) {
    let next = value.map(tr.changes);
    for (const effect of tr.effects) {
      if (effect.is(setRemoteCursors)) next = build(effect.value, tr.state.doc.length);
    }
    return next;
  },
  provide: (field) => EditorView.decorations.from(field),
});

const theme = EditorView.baseTheme({
  '.cc-remote-caret': {
    position: 'relative',
    borderLeft: '2px solid',
    marginLeft: '-1px',
    marginRight: '-1px',
  },
  '.cc-remote-name': {
    position: 'absolute',
    top: '-1.2em',
    left: '-2px',
    fontSize: '0.7em',
    lineHeight: '1.2em',
    padding: '0 3px',
    color: 'white',
    whiteSpace: 'nowrap',
    borderRadius: '3px 3px 3px 0',
    pointerEvents: 'none',
    zIndex: '10',
  },
});

export function remoteCursors(): Extension {
  return [remoteCursorField, theme];
}
