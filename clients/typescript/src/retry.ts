/** How failed requests are retried: 429, 503 (and 502, 504 from a proxy), network errors, timeouts. */
export interface RetryOptions {
  /** Retries after the first attempt (0: none). Default 4. */
  retries?: number;
  /** The first retry waits up to this long; each next one up to twice as long. Default 100. */
  minDelayMs?: number;
  /** No backoff waits longer than this. Default 5000. */
  maxDelayMs?: number;
}

export const DEFAULT_RETRY: Required<RetryOptions> = { retries: 4, minDelayMs: 100, maxDelayMs: 5_000 };

/** A `Retry-After` longer than this is not waited for in full. */
export const MAX_RETRY_AFTER_MS = 60_000;

const RETRIED = new Set([429, 502, 503, 504]);

/** Whether an answer with this status is tried again: never another 4xx (it would fail the same way). */
export function isRetried(status: number): boolean {
  return RETRIED.has(status);
}

/** "Full jitter" exponential backoff: a uniform wait in [0, min(maxDelayMs, minDelayMs·2^attempt)). */
export function backoffMs(attempt: number, options: Required<RetryOptions>, random: () => number = Math.random): number {
  const ceiling = Math.min(options.maxDelayMs, options.minDelayMs * 2 ** attempt);
  return Math.floor(random() * ceiling);
}

/** A `Retry-After` header in milliseconds (delta-seconds or an HTTP date), or undefined. */
export function retryAfterMs(header: string | null, now: number = Date.now()): number | undefined {
  if (header === null || header.trim() === "") return undefined;
  const text = header.trim();
  const ms = /^\d+$/.test(text) ? Number(text) * 1000 : Date.parse(text) - now;
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS) : undefined;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
