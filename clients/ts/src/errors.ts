import { CloseCode, ErrorCode } from '../gen/parley_pb.js';

/** Codes after which the same request may succeed later. */
const RETRYABLE = new Set<ErrorCode>([ErrorCode.UNAVAILABLE, ErrorCode.RATE_LIMITED]);

/** The name of an ErrorCode as it appears in parley.proto, e.g. "ERROR_CODE_TOO_LONG". */
export function errorCodeName(code: ErrorCode): string {
  const name = ErrorCode[code] as string | undefined;
  return name ? `ERROR_CODE_${name}` : `ERROR_CODE_${code}`;
}

/** The name of a CloseCode as it appears in parley.proto, e.g. "CLOSE_CODE_TRY_AGAIN_LATER"; "" for codes Parley does not define. */
export function closeCodeName(code: number): string {
  const name = CloseCode[code] as string | undefined;
  return name ? `CLOSE_CODE_${name}` : '';
}

/**
 * The server refused a request (an Error frame), or the client refused it
 * before sending because the server would have (local: true; a post larger
 * than Welcome.maxMessageBytes, a post to a room not joined).
 */
export class ParleyError extends Error {
  override readonly name = 'ParleyError';
  /** From parley.proto's ErrorCode. */
  readonly code: ErrorCode;
  /** The request this answers ("" when the server named none). */
  readonly requestId: string;
  readonly room: string;
  readonly local: boolean;

  constructor(code: ErrorCode, text: string, opts: { room?: string; requestId?: string; local?: boolean } = {}) {
    super(text || errorCodeName(code));
    this.code = code;
    this.room = opts.room ?? '';
    this.requestId = opts.requestId ?? '';
    this.local = opts.local ?? false;
  }

  /** "ERROR_CODE_TOO_LONG" and so on. */
  get codeName(): string {
    return errorCodeName(this.code);
  }

  /** True when retrying later may succeed (UNAVAILABLE, RATE_LIMITED). */
  get retryable(): boolean {
    return RETRYABLE.has(this.code);
  }
}

/** A request got no answer in time. */
export class TimeoutError extends Error {
  override readonly name = 'TimeoutError';
  constructor(what: string, ms: number) {
    super(`${what}: no answer within ${ms} ms`);
  }
}

/**
 * The connection dropped before the answer came. The client reconnects by
 * itself; joins and posts are carried over, so only other requests see this.
 */
export class ConnectionLostError extends Error {
  override readonly name = 'ConnectionLostError';
  constructor(message = 'connection lost') {
    super(message);
  }
}

/**
 * The connection ended for good: the server closed it with a code after
 * which reconnecting would not help (KICKED, POLICY_VIOLATION, TOKEN_EXPIRED
 * without a token provider), or close() was called.
 */
export class ClosedError extends Error {
  override readonly name = 'ClosedError';
  /** The WebSocket close code; parley.proto's CloseCode for the server's own. */
  readonly code: number;
  readonly reason: string;
  constructor(code: number, reason: string) {
    super(`connection closed: ${closeCodeName(code) || code}${reason ? `: ${reason}` : ''}`);
    this.code = code;
    this.reason = reason;
  }
}

/**
 * The server refused the WebSocket handshake with an HTTP status: 401 a bad
 * or expired token, 403 a refused Origin, 429/503 too many connections
 * (retryAfterMs from Retry-After). Browsers do not show the status to
 * scripts, so there a refused handshake looks like a dropped connection;
 * Node with the ws package reports it.
 */
export class HandshakeError extends Error {
  override readonly name = 'HandshakeError';
  readonly status: number;
  readonly retryAfterMs: number;
  constructor(status: number, retryAfterMs: number) {
    super(`handshake refused with HTTP ${status}`);
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}
