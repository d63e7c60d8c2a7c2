// The client's own behaviour, against a scripted fetch: retries, errors, batching, idempotency keys.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  Conflict, InsufficientCredits, NotFound, PedroClient, PedroError, Unauthorized, Unavailable, ValidationError,
  type Event,
} from "@pedro-ai/worker-client";

import { eventsServer, json, scripted, usage } from "./fake.js";

const FAST = { retries: 3, minDelayMs: 1, maxDelayMs: 5 };

function client(fetch: typeof globalThis.fetch, more: Partial<ConstructorParameters<typeof PedroClient>[0]> = {}) {
  return new PedroClient({ baseUrl: "http://pedro.test/", token: "tok", fetch, retry: FAST, ...more });
}

describe("retries", () => {
  it("retries 503, 429, 502, 504 and network errors, then succeeds", async () => {
    const fetch = scripted(
      json(503, { error: "queue_unavailable", detail: "down", requestId: "r1" }, { "retry-after": "0" }),
      json(429, { error: "too_many", detail: "slow down", requestId: "r2" }),
      new TypeError("fetch failed"),
      json(502, {}),
      eventsServer(),
    );
    const result = await client(fetch, { retry: { ...FAST, retries: 4 } }).publish(usage("e1"));
    assert.deepEqual(result, { index: 0, id: "e1", status: "accepted" });
    assert.equal(fetch.sent.length, 5);
    assert.equal(fetch.sent[0]!.url, "http://pedro.test/v1/events");
    assert.equal(fetch.sent[0]!.headers.authorization, "Bearer tok");
  });

  it("gives up after `retries` with Unavailable, or a network_error PedroError", async () => {
    const busy = scripted(json(503, { error: "balance_busy", detail: "busy", requestId: "r" }, { "retry-after": "0" }));
    const error = await client(busy).balance("user_a").catch((e: unknown) => e);
    assert.ok(error instanceof Unavailable);
    assert.equal((error as Unavailable).code, "balance_busy");
    assert.equal(busy.sent.length, 1 + FAST.retries);

    const down = scripted(new TypeError("connect ECONNREFUSED"));
    const network = await client(down).balance("user_a").catch((e: unknown) => e);
    assert.ok(network instanceof PedroError && !(network instanceof Unavailable));
    assert.equal((network as PedroError).status, 0);
    assert.equal((network as PedroError).code, "network_error");
    assert.match((network as PedroError).detail, /ECONNREFUSED/);
  });

  it("never retries another 4xx", async () => {
    for (const status of [400, 401, 402, 404, 409, 413, 422]) {
      const fetch = scripted(json(status, { error: "nope", detail: "no", requestId: "r" }));
      await assert.rejects(client(fetch).getHold("h1"), PedroError);
      assert.equal(fetch.sent.length, 1, `status ${status}`);
    }
  });

  it("waits what Retry-After says", async () => {
    const fetch = scripted(json(503, { error: "queue_unavailable", detail: "down", requestId: "r" }, { "retry-after": "1" }),
      json(200, { remaining: 1, held: 0, available: 1, waiting: 0, requestId: "r" }));
    const started = Date.now();
    await client(fetch).balance("user_a");
    assert.ok(Date.now() - started >= 950, `waited ${Date.now() - started} ms`);
  });

  it("gives each attempt a deadline: a hung server is a retried timeout", async () => {
    let calls = 0;
    const hung: typeof fetch = (_input, init) => new Promise((resolve, reject) => {
      calls++;
      if (calls > 1) return resolve(json(200, { remaining: 1, held: 0, available: 1, waiting: 0, requestId: "r" }));
      init?.signal?.addEventListener("abort", () => reject(init.signal!.reason));
    });
    const alive = setInterval(() => {}, 1000); // (AbortSignal.timeout's timer does not keep node running)
    const balance = await client(hung, { timeoutMs: 50 }).balance("user_a").finally(() => clearInterval(alive));
    assert.equal(balance.remaining, 1);
    assert.equal(calls, 2);
  });
});

describe("errors", () => {
  it("maps each status to its class, with code, detail, requestId and body", async () => {
    const cases: [number, object, new (...args: never[]) => PedroError][] = [
      [402, { error: "insufficient_credits", detail: "20 asked, 12 available", requestId: "r402", available: 12 }, InsufficientCredits],
      [409, { error: "over_capture", detail: "x", requestId: "r409", held: 10, requested: 11 }, Conflict],
      [404, { error: "unknown_hold", detail: "no hold h1", requestId: "r404" }, NotFound],
      [401, { error: "unauthorized", detail: "bad token", requestId: "r401" }, Unauthorized],
      [422, { error: "validation_error", detail: "credits: bad", requestId: "r422" }, ValidationError],
      [500, { error: "internal_error", detail: "oops", requestId: "r500" }, PedroError],
    ];
    for (const [status, body, kind] of cases) {
      const error = await client(scripted(json(status, body))).hold({ id: "h1", clerkUserId: "user_a", credits: 20 })
        .catch((e: unknown) => e as PedroError);
      assert.ok(error instanceof kind, `${status}: ${error}`);
      assert.equal(error.status, status);
      assert.equal(error.code, (body as { error: string }).error);
      assert.equal(error.requestId, `r${status}`);
      assert.deepEqual(error.body, body);
    }
    const poor = await client(scripted(json(402, cases[0]![1]))).hold({ id: "h", clerkUserId: "u", credits: 20 })
      .then(() => assert.fail("no error"), (e: unknown) => e as InsufficientCredits);
    assert.equal(poor.available, 12);
  });

  it("a publish call with a rejected event rejects with ValidationError and every event's result", async () => {
    const fetch = scripted(eventsServer((event) => (event.id === "bad" ? "credits: Input should be a valid integer" : undefined)));
    const error = await client(fetch).publish([usage("ok"), usage("bad")]).catch((e: unknown) => e as ValidationError);
    assert.ok(error instanceof ValidationError);
    assert.equal(error.code, "validation_error");
    assert.deepEqual(error.results.map((r) => [r.index, r.id, r.status]), [[0, "ok", "accepted"], [1, "bad", "rejected"]]);
    assert.match(error.detail, /1 of 2 events rejected; event 1: credits/);

    const single = await client(scripted(eventsServer(() => "credits: bad"))).publish(usage("bad"))
      .catch((e: unknown) => e as ValidationError);
    assert.ok(single instanceof ValidationError);
    assert.equal(single.detail, "credits: bad");
  });
});

describe("idempotency keys", () => {
  it("are required by the types", () => {
    // @ts-expect-error: an event without its id does not type-check
    const noId: Event = { type: "usage.recorded", clerkUserId: "u", operationType: "AI_TEXT_CHAT", occurredAt: "x" };
    assert.ok(noId);
  });

  it("refuses an event without an id, and sends nothing of its call", async () => {
    const fetch = scripted(eventsServer());
    const { id: _, ...noId } = usage("x");
    await assert.rejects(client(fetch).publish([usage("a"), noId as unknown as Event]), /event 1 has no id/);
    await assert.rejects(client(fetch).publish({ ...usage("b"), id: "" }), TypeError);
    assert.equal(fetch.sent.length, 0);
  });
});

describe("batching", () => {
  it("sends a batch when it is full, the rest after lingerMs, in POSTs of at most `size`", async () => {
    const fetch = scripted(eventsServer());
    const pedro = client(fetch, { batch: { size: 10, lingerMs: 30 } });
    const calls = Array.from({ length: 25 }, (_, n) => pedro.publish(usage(`e${n}`)));
    await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(fetch.sent.length, 2); // two full batches at once, five events lingering
    const results = await Promise.all(calls);
    assert.deepEqual(fetch.sent.map((s) => (s.body as unknown[]).length), [10, 10, 5]);
    assert.deepEqual(results.map((r) => [r.index, r.id]), Array.from({ length: 25 }, (_, n) => [0, `e${n}`]));
  });

  it("a call larger than `size` spans several POSTs and keeps its own indexes", async () => {
    const fetch = scripted(eventsServer());
    const events = Array.from({ length: 7 }, (_, n) => usage(`big${n}`));
    const results = await client(fetch, { batch: { size: 3, lingerMs: 20 } }).publish(events);
    assert.deepEqual(results.map((r) => [r.index, r.id]), events.map((e, n) => [n, e.id]));
    assert.deepEqual(fetch.sent.map((s) => (s.body as unknown[]).length), [3, 3, 1]); // the last one after the linger
  });

  it("flush() sends at once; close() flushes and refuses more", async () => {
    const fetch = scripted(eventsServer());
    const pedro = client(fetch, { batch: { size: 100, lingerMs: 60_000 } });
    const first = pedro.publish(usage("f1"));
    await pedro.flush();
    assert.equal((await first).status, "accepted");
    const second = pedro.publish(usage("f2"));
    await pedro.close();
    assert.equal((await second).id, "f2");
    await assert.rejects(pedro.publish(usage("f3")), (e: unknown) => e instanceof PedroError && e.code === "client_closed");
    assert.equal(fetch.sent.length, 2);
  });

  it("without `batch`, each call is one POST at once; past 1000 events, several", async () => {
    const fetch = scripted(eventsServer());
    const pedro = client(fetch);
    await pedro.publish(usage("n1"));
    await pedro.publish(Array.from({ length: 1500 }, (_, n) => usage(`m${n}`)));
    assert.deepEqual(fetch.sent.map((s) => (s.body as unknown[]).length), [1, 1000, 500]);
  });

  it("keeps at most maxInFlight POSTs in flight", async () => {
    let inFlight = 0;
    let most = 0;
    const server = eventsServer();
    const fetch = scripted(async (sent) => {
      most = Math.max(most, ++inFlight);
      await new Promise((resolve) => setTimeout(resolve, 10));
      inFlight--;
      return server(sent);
    });
    const pedro = client(fetch, { batch: { size: 1, lingerMs: 0, maxInFlight: 2 } });
    await Promise.all(Array.from({ length: 8 }, (_, n) => pedro.publish(usage(`p${n}`))));
    assert.equal(most, 2);
    assert.equal(fetch.sent.length, 8);
  });

  it("a POST that fails for good rejects every call in it", async () => {
    const fetch = scripted(json(413, { error: "payload_too_large", detail: "too big", requestId: "r" }));
    const pedro = client(fetch, { batch: { size: 10, lingerMs: 5 } });
    const outcomes = await Promise.allSettled([pedro.publish(usage("a")), pedro.publish(usage("b"))]);
    assert.deepEqual(outcomes.map((o) => o.status), ["rejected", "rejected"]);
    assert.equal(fetch.sent.length, 1);
  });
});

describe("requests", () => {
  it("encodes path ids and the movements cursor, and reports a replayed hold", async () => {
    const page = { movements: [], nextCursor: null, requestId: "r" };
    const view = { hold: { id: "h/1" }, balance: { remaining: 1, held: 0, available: 1 }, requestId: "r" };
    const fetch = scripted(json(200, page), json(200, view, { "idempotent-replayed": "true" }));
    const pedro = client(fetch);
    await pedro.movements("user_a", { cursor: "abc=", limit: 2 });
    const released = await pedro.release("h/1");
    assert.equal(fetch.sent[0]!.url, "http://pedro.test/v1/users/user_a/movements?cursor=abc%3D&limit=2");
    assert.equal(fetch.sent[1]!.url, "http://pedro.test/v1/holds/h%2F1/release");
    assert.equal(released.replayed, true);
  });
});
