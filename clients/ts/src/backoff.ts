/**
 * Reconnect delays with full jitter (the AWS Architecture Blog's
 * "Exponential Backoff And Jitter"): after the n-th failed attempt wait a
 * uniformly random time in [0, min(cap, base * 2^n)). The randomness spreads
 * a crowd of clients that lost the same server over the whole window, instead
 * of having them all knock in the same millisecond when it comes back.
 */
export interface BackoffOptions {
  /** Ceiling of the first wait, in ms. Default 500. */
  baseMs?: number;
  /** Largest ceiling, in ms. Default 10 000. */
  capMs?: number;
  /**
   * A connection that stayed up this long counts as healthy and resets the
   * attempt count. Resetting on the handshake alone would let a server that
   * accepts and then immediately closes drive a tight loop. Default 10 000.
   */
  stableAfterMs?: number;
}

export const DEFAULT_BACKOFF: Required<BackoffOptions> = { baseMs: 500, capMs: 10_000, stableAfterMs: 10_000 };

/** The wait before attempt number `attempt` (0 for the first retry). */
export function fullJitter(attempt: number, opts: BackoffOptions = {}, random: () => number = Math.random): number {
  const base = opts.baseMs ?? DEFAULT_BACKOFF.baseMs;
  const cap = opts.capMs ?? DEFAULT_BACKOFF.capMs;
  // 2 ** attempt overflows to Infinity long after min() has picked cap.
  const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 52));
  return Math.floor(random() * ceiling);
}
