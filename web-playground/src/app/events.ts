// The project's live events as the panels read them.

/** The most recent events, and how many have arrived in all: a panel finds what is new by
 *  that count, which keeps growing once the oldest events are dropped (an index into the
 *  list would stop finding anything once the list is full). */
export interface EventLog<T> {
  readonly recent: readonly T[];
  readonly total: number;
}

/** How many events are kept; a panel reads them as they arrive, so this is only slack. */
export const KEPT_EVENTS = 200;

export function emptyLog<T>(): EventLog<T> {
  return { recent: [], total: 0 };
}

export function appended<T>(log: EventLog<T>, event: T, keep = KEPT_EVENTS): EventLog<T> {
  return { recent: [...log.recent.slice(-(keep - 1)), event], total: log.total + 1 };
}

/** The events after the first `seen` of the log's total (those handled already). */
export function since<T>(log: EventLog<T>, seen: number): readonly T[] {
  const fresh = Math.min(log.total - seen, log.recent.length);
  return fresh > 0 ? log.recent.slice(log.recent.length - fresh) : [];
}
