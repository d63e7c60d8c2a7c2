import type { EventResult, HoldExpiredBody, OverCaptureBody } from "./types.js";

interface ErrorInit {
  status: number;
  code: string;
  detail: string;
  requestId?: string | undefined;
  body?: unknown;
  cause?: unknown;
}

/**
 * Any answer but success, after the retries: the HTTP `status` (0 when none came: a network
 * error or a timeout), the server's machine-readable `code` (its `error`: `unknown_hold`,
 * `queue_unavailable`…, or `network_error`), the human `detail`, the `requestId` to find the
 * server's log lines, and the whole JSON `body`.
 */
export class PedroError extends Error {
  readonly status: number;
  readonly code: string;
  readonly detail: string;
  readonly requestId: string | undefined;
  readonly body: unknown;

  constructor(init: ErrorInit) {
    super(`${init.code}: ${init.detail}` + (init.status ? ` (HTTP ${init.status})` : ""),
      init.cause === undefined ? undefined : { cause: init.cause });
    this.name = new.target.name;
    this.status = init.status;
    this.code = init.code;
    this.detail = init.detail;
    this.requestId = init.requestId;
    this.body = init.body;
  }
}

/**
 * 422 (or 400: not JSON, a bad cursor…): the request breaks the contract; it is never retried.
 * From `publish()`: some of the call's events were
 * rejected, and `results` has every event of the call (by `index` in it) — the accepted ones are
 * queued, so publishing the whole call again once fixed is safe.
 */
export class ValidationError extends PedroError {
  readonly results: EventResult[];

  constructor(init: ErrorInit & { results?: EventResult[] }) {
    super(init);
    this.results = init.results ?? [];
  }
}

/** 402 from `hold()`: fewer credits `available` than asked; nothing was held. */
export class InsufficientCredits extends PedroError {
  readonly available: number;

  constructor(init: ErrorInit & { available: number }) {
    super(init);
    this.available = init.available;
  }
}

/**
 * 409: `idempotency_conflict` (the id was used for another request), `over_capture` (`body.held`,
 * `body.requested`), `hold_expired` (`body.hold`, `body.balance`), `balance_out_of_range`.
 */
export class Conflict extends PedroError {
  declare readonly body: OverCaptureBody | HoldExpiredBody | { error: string; detail: string; requestId: string };
}

/** 404: `unknown_hold`, `unknown_user` (its `user.created` may not be applied yet), `not_found`. */
export class NotFound extends PedroError {}

/** 401: the token is not one of the server's `PEDRO_API_TOKENS`. */
export class Unauthorized extends PedroError {}

/** 429 or 503 (`queue_unavailable`, `balance_busy`, `database_unavailable`) once the retries ran out. */
export class Unavailable extends PedroError {}

function field(body: unknown, name: string): unknown {
  return typeof body === "object" && body !== null ? (body as Record<string, unknown>)[name] : undefined;
}

/** The error for an answer that is not a success, by status. */
export function errorFromAnswer(status: number, body: unknown, requestId: string | undefined): PedroError {
  const code = typeof field(body, "error") === "string" ? (field(body, "error") as string) : `http_${status}`;
  const detail = typeof field(body, "detail") === "string" ? (field(body, "detail") as string) : `HTTP ${status}`;
  const rid = typeof field(body, "requestId") === "string" ? (field(body, "requestId") as string) : requestId;
  const init: ErrorInit = { status, code, detail, requestId: rid, body };
  const available = field(body, "available");
  if (status === 402 && typeof available === "number") return new InsufficientCredits({ ...init, available });
  if (status === 422 || status === 400) {
    const results = field(body, "results");
    return new ValidationError({ ...init, results: Array.isArray(results) ? (results as EventResult[]) : [] });
  }
  if (status === 409) return new Conflict(init);
  if (status === 404) return new NotFound(init);
  if (status === 401) return new Unauthorized(init);
  if (status === 429 || status === 503) return new Unavailable(init);
  return new PedroError(init);
}
