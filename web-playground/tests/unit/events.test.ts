// The panels' view of the project's live events.
import { describe, expect, it } from 'vitest';
import { appended, emptyLog, since, type EventLog } from '../../src/app/events';

describe('an event log', () => {
  it('hands each event to a reader once, also after the oldest were dropped', () => {
    let log: EventLog<number> = emptyLog();
    let seen = 0;
    const read: number[] = [];
    for (let event = 0; event < 1000; event += 1) {
      log = appended(log, event, 10);
      // A reader that sometimes lags behind by a few events.
      if (event % 3 === 0) {
        read.push(...since(log, seen));
        seen = log.total;
      }
    }
    read.push(...since(log, seen));
    expect(read).toEqual([...Array(1000).keys()]);
    expect(log.recent).toHaveLength(10);
  });

  it('gives what is still kept to a reader that fell further behind', () => {
    let log: EventLog<string> = emptyLog();
    for (const event of ['a', 'b', 'c', 'd']) log = appended(log, event, 2);
    expect(since(log, 0)).toEqual(['c', 'd']);
    expect(since(log, 3)).toEqual(['d']);
    expect(since(log, 4)).toEqual([]);
  });
});
