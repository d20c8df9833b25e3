// The close codes the client acts on. This is the client's only copy of the
// server's table (protocol/codes.go); test/codes.test.mjs parses the Go
// source and fails if a row differs.

/** What the client makes of a close code. */
export interface CloseInfo {
  /** The close code. */
  code: number;
  /** The code's wire name, as in docs/protocol.md ("service_restart"). */
  name: string;
  /** Whether the client reconnects after it. */
  reconnect: boolean;
  /** Whether a new token is needed first (getToken is called). */
  refresh: boolean;
}

// code -> "name action": 0 stop and report, 1 reconnect, 2 get a new token
// then reconnect. 1005 and 1006 are never sent by the server: a browser
// reports them when the connection ended without a close code.
const TABLE: Record<number, string> = {
  1000: 'normal 0',
  1001: 'going_away 0',
  1002: 'protocol_error 0',
  1003: 'unsupported_data 0',
  1005: 'no_status 1',
  1006: 'abnormal 1',
  1007: 'invalid_payload 0',
  1008: 'policy_violation 0',
  1009: 'message_too_big 0',
  1011: 'internal_error 1',
  1012: 'service_restart 1',
  1013: 'try_again_later 1',
  4000: 'session_expired 2',
  4001: 'unauthorized 0',
  4003: 'forbidden 0',
  4004: 'banned 0',
  4005: 'slow_consumer 1',
  4006: 'kicked 0',
  4008: 'heartbeat_timeout 1',
};

/**
 * closeInfo says what the client does after `code` when the server sent no
 * `disconnect` event with its own advice. Codes not in the table
 * follow the server's rule: below 3000 they are transient (reconnect), as a
 * network failure would be; 3000 and above (libraries' and applications'
 * ranges) are decisions and are not retried.
 */
export function closeInfo(code: number): CloseInfo {
  const row = TABLE[code];
  if (!row) return { code, name: String(code), reconnect: code < 3000, refresh: false };
  const [name, a] = row.split(' ');
  return { code, name, reconnect: a != '0', refresh: a == '2' };
}

/** closeCodes lists every code in the table, ordered by code. */
export function closeCodes(): CloseInfo[] {
  return Object.keys(TABLE).map((c) => closeInfo(+c));
}

/** Reconnect delay settings, in milliseconds. */
export interface BackoffOptions {
  initialDelay: number;
  maxDelay: number;
  factor: number;
}

/**
 * backoffDelay is the wait before reconnect attempt `attempt` (0 first):
 * exponential backoff with full jitter, a uniform random delay in
 * [0, min(maxDelay, initialDelay * factor^attempt)). Full jitter spreads a
 * crowd of clients that lost the same server instead of sending them back
 * in waves.
 */
export function backoffDelay(attempt: number, o: BackoffOptions, random: () => number = Math.random): number {
  return Math.floor(random() * Math.min(o.maxDelay, o.initialDelay * o.factor ** attempt));
}
