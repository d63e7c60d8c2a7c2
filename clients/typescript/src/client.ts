import { Batcher, type BatchOptions, DEFAULT_BATCH, NO_BATCHING, type Posted } from "./batch.js";
import { errorFromAnswer, PedroError } from "./errors.js";
import { backoffMs, DEFAULT_RETRY, isRetried, retryAfterMs, type RetryOptions, sleep } from "./retry.js";
import type {
  Balance, CaptureRequest, Event, EventAccepted, EventResult, HoldRequest, HoldResult, MovementsPage,
} from "./types.js";

export interface PedroClientOptions {
  /** The ingress, e.g. `https://pedro-worker.internal:8080` (no `/v1`). */
  baseUrl: string;
  /** One of the server's `PEDRO_API_TOKENS`. */
  token: string;
  /** A `fetch` to use instead of the global one (tests, instrumentation). */
  fetch?: typeof fetch;
  /** Retries of 429, 503 (and 502, 504), network errors and timeouts; never of another 4xx. */
  retry?: RetryOptions;
  /** Client-side batching of `publish()`; without it each call is sent at once. */
  batch?: BatchOptions;
  /** Each attempt's deadline, in milliseconds. Default 10000. */
  timeoutMs?: number;
}

interface Answer {
  status: number;
  body: unknown;
  headers: Headers;
  requestId: string | undefined;
}

type Query = Record<string, string | number | null | undefined>;

function describe(cause: unknown): string {
  return cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
}

function path(template: string, ...ids: string[]): string {
  let i = 0;
  return template.replace(/\{[^}]+\}/g, () => encodeURIComponent(ids[i++]!));
}

/**
 * The app's client for pedro-worker's /v1 API: publish events (queued, then applied exactly
 * once by the worker), hold / capture / release credits, read balances and movements.
 *
 * Every call may be retried safely: events and holds carry their idempotency key (`id`), and a
 * capture or release of a resolved hold answers its resolution. Failed answers throw a
 * `PedroError` subclass: `InsufficientCredits`, `ValidationError`, `Conflict`, `NotFound`,
 * `Unauthorized`, `Unavailable`.
 */
export class PedroClient {
  private readonly baseUrl: string;
  private readonly token: string;
  private readonly fetchFn: typeof fetch;
  private readonly retry: Required<RetryOptions>;
  private readonly timeoutMs: number;
  private readonly batcher: Batcher;
  private closed = false;

  constructor(options: PedroClientOptions) {
    if (!options.baseUrl) throw new TypeError("PedroClient needs a baseUrl");
    if (!options.token) throw new TypeError("PedroClient needs a token");
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.token = options.token;
    const given = options.fetch ?? globalThis.fetch;
    if (typeof given !== "function") throw new TypeError("no fetch: pass one in the options");
    this.fetchFn = (input, init) => given(input, init); // unbound: some runtimes refuse fetch called as a method
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    this.timeoutMs = options.timeoutMs ?? 10_000;
    const batch = options.batch === undefined ? NO_BATCHING : { ...DEFAULT_BATCH, ...options.batch };
    this.batcher = new Batcher((events) => this.postEvents(events), batch);
  }

  /**
   * Publish one event, or several: resolves once the server has queued them all (durably, in
   * Redis) with their results, or rejects with `ValidationError` when any of them breaks the
   * contract (`results` then has every event's result: the accepted ones are queued). With
   * `batch`, events of many calls share a POST. Every event needs its `id`, its idempotency key:
   * the same id again is a duplicate the worker applies once, so publishing again is always safe.
   */
  publish(event: Event): Promise<EventAccepted>;
  publish(events: readonly Event[]): Promise<EventAccepted[]>;
  async publish(input: Event | readonly Event[]): Promise<EventAccepted | EventAccepted[]> {
    const events: readonly Event[] = Array.isArray(input) ? input : [input as Event];
    events.forEach((event, index) => {
      const id = typeof event === "object" && event !== null ? (event as { id?: unknown }).id : undefined;
      if (typeof id !== "string" || id === "") {
        throw new TypeError(`event ${index} has no id: every event needs one, its idempotency key`);
      }
    });
    if (this.closed) throw new PedroError({ status: 0, code: "client_closed", detail: "this PedroClient is closed" });
    if (events.length === 0) return [];
    const results = await this.batcher.add(events);
    return Array.isArray(input) ? results : results[0]!;
  }

  /** Send the events queued by `publish()` now, and wait until each has its answer. */
  flush(): Promise<void> {
    return this.batcher.flush();
  }

  /** Flush, then refuse further events (`publish()` rejects with `client_closed`). */
  async close(): Promise<void> {
    this.closed = true;
    await this.batcher.flush();
  }

  /**
   * Hold credits before the work: `credits`, or the cost of `operationType`. Throws
   * `InsufficientCredits` (with `available`) when the user has fewer; nothing is held then.
   * The same `id` again answers the same hold (`replayed: true`).
   */
  async hold(request: HoldRequest): Promise<HoldResult> {
    return this.holdAnswer(await this.request("POST", "/v1/holds", {}, request, [201]));
  }

  /** The hold as it is now, and its user's balance. */
  async getHold(holdId: string): Promise<HoldResult> {
    return this.holdAnswer(await this.request("GET", path("/v1/holds/{holdId}", holdId), {}, undefined, [200]));
  }

  /**
   * Charge what the work used (`credits`; absent: the whole hold) and give back the rest.
   * Throws `Conflict` `hold_expired` when the hold expired first (nothing charged), or
   * `over_capture` above the hold under `overCapture: "reject"`.
   */
  async capture(holdId: string, request: CaptureRequest = {}): Promise<HoldResult> {
    const answer = await this.request("POST", path("/v1/holds/{holdId}/capture", holdId), {}, request, [200]);
    return this.holdAnswer(answer);
  }

  /** Give every held credit back (the work did not happen). */
  async release(holdId: string): Promise<HoldResult> {
    return this.holdAnswer(await this.request("POST", path("/v1/holds/{holdId}/release", holdId), {}, undefined, [200]));
  }

  /** The user's balance: `remaining`, `held`, `available` (what a hold may take), `waiting`. */
  async balance(clerkUserId: string): Promise<Balance> {
    const answer = await this.request("GET", path("/v1/users/{clerkUserId}/balance", clerkUserId), {}, undefined, [200]);
    return answer.body as Balance;
  }

  /**
   * One page of the user's movements, newest first; pass the page's `nextCursor` as `cursor`
   * for the next one (null on the last page). `limit`: 1..200, default 50.
   */
  async movements(clerkUserId: string, options: { cursor?: string | null; limit?: number } = {}): Promise<MovementsPage> {
    const query = { cursor: options.cursor, limit: options.limit };
    const answer = await this.request("GET", path("/v1/users/{clerkUserId}/movements", clerkUserId), query, undefined, [200]);
    return answer.body as MovementsPage;
  }

  private holdAnswer(answer: Answer): HoldResult {
    return { ...(answer.body as Omit<HoldResult, "replayed">), replayed: answer.headers.get("idempotent-replayed") === "true" };
  }

  private async postEvents(events: Event[]): Promise<Posted> {
    // 422 (no event valid) carries the results as 202 does: they settle the calls, not an error
    const answer = await this.request("POST", "/v1/events", {}, events, [202, 422]);
    const results = (answer.body as { results?: unknown } | undefined)?.results;
    if (!Array.isArray(results)) {
      throw new PedroError({ status: answer.status, code: "invalid_answer", detail: "no results in the answer",
        requestId: answer.requestId, body: answer.body });
    }
    return { results: results as EventResult[], requestId: answer.requestId };
  }

  /** One request, retried on 429/502/503/504, network errors and timeouts; other answers throw. */
  private async request(method: "GET" | "POST", route: string, query: Query, body: unknown,
    expected: readonly number[]): Promise<Answer> {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== null) search.set(name, String(value));
    }
    const queryString = search.toString(); // (not search.size: Node 18 lacks it)
    const url = this.baseUrl + route + (queryString ? `?${queryString}` : "");
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}`, accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    const payload = body === undefined ? undefined : JSON.stringify(body);

    for (let attempt = 0; ; attempt++) {
      const more = attempt < this.retry.retries;
      let response: Response;
      let text: string;
      try {
        const signal = typeof AbortSignal.timeout === "function" ? AbortSignal.timeout(this.timeoutMs) : undefined;
        response = await this.fetchFn(url, { method, headers, body: payload, signal });
        text = await response.text();
      } catch (cause) {
        if (more) {
          await sleep(backoffMs(attempt, this.retry));
          continue;
        }
        throw new PedroError({ status: 0, code: "network_error", detail: describe(cause), cause });
      }
      const requestId = response.headers.get("x-request-id") ?? undefined;
      let parsed: unknown;
      try {
        parsed = text === "" ? undefined : JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      if (expected.includes(response.status) && parsed !== undefined) {
        return { status: response.status, body: parsed, headers: response.headers, requestId };
      }
      if (isRetried(response.status) && more) {
        await sleep(retryAfterMs(response.headers.get("retry-after")) ?? backoffMs(attempt, this.retry));
        continue;
      }
      if (expected.includes(response.status)) {
        throw new PedroError({ status: response.status, code: "invalid_answer", detail: "the answer is not JSON", requestId });
      }
      throw errorFromAnswer(response.status, parsed, requestId);
    }
  }
}
