import { describe, expect, it } from 'vitest';
import { ApiError, describeError } from '../../src/client/errors';
import { refreshDelay, type Session } from '../../src/client/session';
import { decodeBase64, encodeBase64 } from '../../src/editor/sync';

const session = (expiresInMs: number, now: number): Session => ({
  accessToken: 't',
  refreshToken: 'r',
  accessTokenExpiresAt: new Date(now + expiresInMs).toISOString(),
  user: { id: '1', username: 'ada', displayName: 'Ada' },
});

describe('refreshDelay', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  it('refreshes a minute early for the usual 15-minute token', () => {
    expect(refreshDelay(session(15 * 60_000, now), now, now)).toBe(14 * 60_000);
  });
  it('refreshes a third of the lifetime early for short tokens', () => {
    expect(refreshDelay(session(30_000, now), now, now)).toBe(20_000);
  });
  it('refreshes at once when the token has expired', () => {
    expect(refreshDelay(session(-1_000, now), now, now)).toBe(0);
  });
});

describe('describeError', () => {
  it('says each code in words', () => {
    expect(describeError(new ApiError('x', 'FORBIDDEN'))).toMatch(/permission/);
    expect(describeError(new ApiError('x', 'NOT_FOUND'))).toMatch(/does not exist/);
    expect(describeError(new ApiError('too short', 'BAD_USER_INPUT', { field: 'title' }))).toBe(
      'Please check your input. title: too short',
    );
    expect(describeError(new ApiError('x', 'RATE_LIMITED', { retryAfter: 12.2 }))).toMatch(/wait 13 seconds/);
    expect(describeError(new ApiError('secret cause', 'INTERNAL'))).not.toMatch(/secret/);
    expect(describeError(new TypeError('fetch failed'))).toMatch(/cannot be reached/);
  });
});

describe('base64', () => {
  it('round-trips bytes, large ones too', () => {
    const bytes = new Uint8Array(100_000).map((_, i) => (i * 7) % 256);
    expect(decodeBase64(encodeBase64(bytes))).toEqual(bytes);
    expect(encodeBase64(new Uint8Array([1, 2, 3]))).toBe('AQID');
  });
});
