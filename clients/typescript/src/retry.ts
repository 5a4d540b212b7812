/** How calls are retried. */
export interface RetryOptions {
  /** Tries of one call in all, the first included (default 6). A watch counts failures in a row. */
  attempts: number;
  /** The first backoff step, in ms (default 250); each further step doubles it. */
  baseDelayMs: number;
  /** The largest backoff step, in ms (default 10,000). */
  maxDelayMs: number;
  /**
   * The longest Retry-After honoured, in ms (default 60,000): an answer that
   * asks for a longer pause fails the call at once with its error.
   */
  maxRetryAfterMs: number;
  /** The statuses retried (default 429, 502, 503, 504); connection failures always are. */
  statuses: readonly number[];
}

export const DEFAULT_RETRY: Readonly<RetryOptions> = Object.freeze({
  attempts: 6,
  baseDelayMs: 250,
  maxDelayMs: 10_000,
  maxRetryAfterMs: 60_000,
  statuses: Object.freeze([429, 502, 503, 504]),
});

/**
 * The pause before retry number `n` (0 for the first retry). With a
 * Retry-After it is that pause plus up to a tenth more; without, "equal
 * jitter" on an exponential step: half the step plus up to the other half,
 * so that clients cut off together do not come back together.
 */
export function retryDelay(
  n: number,
  retryAfterMs: number | undefined,
  policy: Readonly<RetryOptions>,
  random: () => number,
): number {
  if (retryAfterMs !== undefined) return retryAfterMs + random() * retryAfterMs * 0.1;
  const step = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(n, 30));
  return step / 2 + (random() * step) / 2;
}

/**
 * Reads a Retry-After header: delay-seconds or an HTTP date (RFC 9110
 * §10.2.3), as milliseconds from `now`. Anything else is undefined.
 */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  const s = value.trim();
  if (/^[0-9]+$/.test(s)) return Number(s) * 1000;
  // The three date formats of RFC 9110 all begin with the day's name.
  if (!/^[A-Za-z]{3}/.test(s)) return undefined;
  const at = Date.parse(s);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/** A pause that an abort ends early, rejecting with the signal's reason. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
