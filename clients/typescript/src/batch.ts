import { PedroError, ValidationError } from "./errors.js";
import type { Event, EventAccepted, EventResult } from "./types.js";

/** Client-side batching of `publish()`: events wait until `size` are queued or `lingerMs` passed. */
export interface BatchOptions {
  /** Events per POST (at most 1000, the server's default `PEDRO_INGRESS_MAX_BATCH`). Default 100. */
  size?: number;
  /** How long the first queued event waits for more before its batch is sent; 0 sends at once. Default 20. */
  lingerMs?: number;
  /** POSTs in flight at once; further batches wait for a free slot. Default 4. */
  maxInFlight?: number;
}

export const SERVER_MAX_BATCH = 1000;
export const DEFAULT_BATCH: Required<BatchOptions> = { size: 100, lingerMs: 20, maxInFlight: 4 };
/** Without `batch`: each `publish()` call is sent at once, as one POST (or several past 1000 events). */
export const NO_BATCHING: Required<BatchOptions> = { size: SERVER_MAX_BATCH, lingerMs: 0, maxInFlight: 4 };

/** What one POST /v1/events answered (202 or 422): a result per event, in order. */
export interface Posted {
  results: EventResult[];
  requestId: string | undefined;
}

/** One `publish()` call: it settles when every one of its events has a result, or one POST failed. */
class Call {
  readonly promise: Promise<EventAccepted[]>;
  private readonly results: EventResult[];
  private left: number;
  private done = false;
  private firstRejection: { result: EventResult & { status: "rejected" }; requestId: string | undefined } | undefined;
  private resolve!: (results: EventAccepted[]) => void;
  private reject!: (error: unknown) => void;

  constructor(size: number) {
    this.results = new Array<EventResult>(size);
    this.left = size;
    this.promise = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  settle(index: number, result: EventResult, requestId: string | undefined): void {
    this.results[index] = result;
    if (result.status === "rejected" && this.firstRejection === undefined) {
      this.firstRejection = { result, requestId };
    }
    if (--this.left > 0 || this.done) return;
    this.done = true;
    const first = this.firstRejection;
    if (first === undefined) {
      this.resolve(this.results as EventAccepted[]);
      return;
    }
    const rejected = this.results.filter((r) => r.status === "rejected").length;
    const detail = this.results.length === 1
      ? first.result.detail
      : `${rejected} of ${this.results.length} events rejected; event ${first.result.index}: ${first.result.detail}`;
    this.reject(new ValidationError({ status: 422, code: first.result.reason, detail, requestId: first.requestId,
      results: this.results }));
  }

  fail(error: unknown): void {
    if (this.done) return;
    this.done = true;
    this.reject(error);
  }
}

interface Item {
  event: Event;
  call: Call;
  index: number;
}

/**
 * Queues events and sends them in batches: a batch goes when it has `size` events, when its
 * first event has waited `lingerMs`, or on `flush()`. At most `maxInFlight` POSTs at once.
 */
export class Batcher {
  private readonly options: Required<BatchOptions>;
  private queue: Item[] = [];
  private ready: Item[][] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly post: (events: Event[]) => Promise<Posted>, options: Required<BatchOptions>) {
    if (!(options.size >= 1 && options.size <= SERVER_MAX_BATCH)) {
      throw new RangeError(`batch.size must be 1..${SERVER_MAX_BATCH}, not ${options.size}`);
    }
    if (!(options.maxInFlight >= 1)) throw new RangeError(`batch.maxInFlight must be at least 1`);
    this.options = options;
  }

  /** Queue a call's events; the promise settles with their results. */
  add(events: readonly Event[]): Promise<EventAccepted[]> {
    const call = new Call(events.length);
    events.forEach((event, index) => this.queue.push({ event, call, index }));
    this.cut(this.options.lingerMs <= 0);
    if (this.queue.length > 0 && this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.cut(true);
      }, this.options.lingerMs);
    }
    return call.promise;
  }

  /** Send everything queued now, and wait until every POST has its answer. */
  async flush(): Promise<void> {
    this.cut(true);
    while (this.inFlight.size > 0) {
      await Promise.all(this.inFlight);
    }
  }

  /** Events queued or in flight. */
  get pending(): number {
    return this.queue.length + this.ready.reduce((n, batch) => n + batch.length, 0);
  }

  private cut(everything: boolean): void {
    const { size } = this.options;
    while (this.queue.length >= size || (everything && this.queue.length > 0)) {
      this.ready.push(this.queue.splice(0, size));
    }
    if (this.queue.length === 0 && this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.pump();
  }

  private pump(): void {
    while (this.inFlight.size < this.options.maxInFlight && this.ready.length > 0) {
      const batch = this.ready.shift()!;
      const sending: Promise<void> = this.send(batch).finally(() => {
        this.inFlight.delete(sending);
        this.pump();
      });
      this.inFlight.add(sending);
    }
  }

  private async send(batch: Item[]): Promise<void> {
    try {
      const answer = await this.post(batch.map((item) => item.event));
      if (answer.results.length !== batch.length) {
        throw new PedroError({ status: 0, code: "invalid_answer", detail:
          `${answer.results.length} results for ${batch.length} events`, requestId: answer.requestId });
      }
      for (const result of answer.results) {
        const item = batch[result.index]!;
        item.call.settle(item.index, { ...result, index: item.index }, answer.requestId);
      }
    } catch (error) {
      for (const item of batch) item.call.fail(error);
    }
  }
}
