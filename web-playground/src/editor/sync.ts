// Keeps a local Loro document in step with the server's copy.
//
// Typing never waits for the network: local commits only mark the document dirty. One
// `applyUpdate` is in flight at a time; it carries everything committed since the last
// acknowledged send (`sentUpTo`), so what is typed while one is in flight goes into the next.
// Updates from the server are imported as they come. While disconnected, edits stay in the
// document; on reconnect the subscription asks for what was missed (`since` = the document's
// version vector) and the pending edits are sent on top.

import { VersionVector, type LoroDoc } from 'loro-crdt';

export interface SyncError {
  code: string;
  extensions: Record<string, unknown>;
}

export interface DocSyncOptions {
  /** Send one update (a Loro `update` export); rejects with `{code, extensions}` on refusal. */
  send(update: Uint8Array): Promise<void>;
  /** Whether edits wait to be sent (for a "saving…" indicator). */
  onPending?(pending: boolean): void;
  /** A refusal that retrying will not cure (e.g. FORBIDDEN). */
  onRefused?(error: unknown): void;
  retryMs?: number;
}

function isSyncError(error: unknown): error is SyncError {
  return typeof error === 'object' && error !== null && typeof (error as SyncError).code === 'string';
}

export function decodeBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export function encodeBase64(bytes: Uint8Array): string {
  let binary = '';
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}

export class DocSync {
  private sentUpTo: VersionVector | null = null;
  private inFlight = false;
  private dirty = false;
  private live = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private lastPending = false;
  private readonly unsubscribe: () => void;

  constructor(
    readonly doc: LoroDoc,
    private readonly options: DocSyncOptions,
  ) {
    this.unsubscribe = doc.subscribeLocalUpdates(() => {
      this.dirty = true;
      this.reportPending();
      queueMicrotask(() => void this.flush());
    });
  }

  /** The version vector to resume from (`since`), or null before anything was received. */
  since(): Uint8Array | null {
    return this.sentUpTo ? this.doc.oplogVersion().encode() : null;
  }

  get pending(): boolean {
    return this.dirty || this.inFlight;
  }

  get isLive(): boolean {
    return this.live;
  }

  /** The subscription ended (socket closed, offline): keep edits until `receive` catches up. */
  disconnected(): void {
    this.live = false;
  }

  /** An event of `documentUpdates`. */
  receive(update: Uint8Array, catchUp: boolean): void {
    if (update.length > 0) this.doc.import(update);
    if (catchUp) {
      this.live = true;
      if (!this.sentUpTo) this.sentUpTo = this.doc.oplogVersion();
    }
    // Nothing of ours waits: the server has everything we hold.
    if (!this.dirty && !this.inFlight && this.live) this.sentUpTo = this.doc.oplogVersion();
    if (catchUp) void this.flush();
  }

  async flush(): Promise<void> {
    if (this.inFlight || !this.dirty || !this.live || !this.sentUpTo) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const upTo = this.doc.oplogVersion();
    const update = this.doc.export({ mode: 'update', from: this.sentUpTo });
    this.dirty = false;
    this.inFlight = true;
    let failed = false;
    try {
      await this.options.send(update);
      this.sentUpTo = upTo;
    } catch (error) {
      failed = true;
      this.dirty = true;
      if (isSyncError(error) && error.code === 'CONFLICT' && typeof error.extensions.versionVector === 'string') {
        // The server lacks something we assumed it had: send from what it says it holds.
        this.sentUpTo = VersionVector.decode(decodeBase64(error.extensions.versionVector));
        this.retryTimer = setTimeout(() => void this.flush(), 0);
      } else if (!isSyncError(error) || ['NETWORK', 'INTERNAL', 'UNAUTHENTICATED', 'RATE_LIMITED'].includes(error.code)) {
        this.retryTimer = setTimeout(() => void this.flush(), this.options.retryMs ?? 1_000);
      } else {
        this.dirty = false;
        this.options.onRefused?.(error);
      }
    } finally {
      this.inFlight = false;
      this.reportPending();
    }
    // What was typed while this one was in flight goes now (after a failure, the retry timer).
    if (!failed && this.dirty) void this.flush();
  }

  dispose(): void {
    clearTimeout(this.retryTimer);
    this.unsubscribe();
  }

  private reportPending(): void {
    const pending = this.pending;
    if (pending !== this.lastPending) {
      this.lastPending = pending;
      this.options.onPending?.(pending);
    }
  }
}
