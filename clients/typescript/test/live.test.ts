// The client against the real ingress, worker and notification dispatcher, which
// tests/integration/test_typescript_client.py starts and names in the environment:
//   PEDRO_URL, PEDRO_TOKEN             the ingress and one of its tokens
//   PEDRO_WEBHOOK_PORT, PEDRO_WEBHOOK_SECRET   where the dispatcher delivers notifications, signed with it
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, describe, it } from "node:test";

import {
  Conflict, InsufficientCredits, NotFound, PedroClient, Unauthorized, ValidationError, verifyWebhook,
  type Event, type Notification,
} from "@pedro-ai/worker-client";

const { PEDRO_URL: url, PEDRO_TOKEN: token, PEDRO_WEBHOOK_PORT: port, PEDRO_WEBHOOK_SECRET: secret } = process.env;
const skip = url && token ? false : "PEDRO_URL and PEDRO_TOKEN not set (tests/integration/test_typescript_client.py sets them)";

const run = Date.now().toString(36);
const alice = `ts_alice_${run}`;
const bob = `ts_bob_${run}`;
const at = (second: number) => new Date(Date.UTC(2026, 10, 1, 12, 0, second)).toISOString();

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function created(clerkUserId: string): Event {
  return { type: "user.created", id: `${clerkUserId}-created`, clerkUserId, email: `${clerkUserId}@example.com`,
    updatedAt: at(0) };
}

function usage(id: string, clerkUserId: string, credits: number): Event {
  return { type: "usage.recorded", id, clerkUserId, operationType: "AI_TEXT_CHAT", credits, occurredAt: at(1) };
}

describe("against the real ingress and worker", { skip }, () => {
  const posts: string[] = [];
  const pedro = new PedroClient({
    baseUrl: url ?? "", token: token ?? "",
    fetch: (input, init) => {
      posts.push(`${init?.method} ${new URL(String(input)).pathname}`);
      return fetch(input, init);
    },
  });
  const received: Notification[] = [];
  const refused: string[] = [];
  let receiver: Server | undefined;

  before(async () => {
    if (port && secret) {
      receiver = createServer((request, response) => {
        const chunks: Buffer[] = [];
        request.on("data", (chunk: Buffer) => chunks.push(chunk));
        request.on("end", () => {
          verifyWebhook(secret, Buffer.concat(chunks).toString("utf8"), request.headers).then(
            (notification) => { received.push(notification); response.writeHead(204).end(); },
            (error: Error) => { refused.push(error.message); response.writeHead(400).end(); },
          );
        });
      });
      await new Promise<void>((resolve) => receiver!.listen(Number(port), "127.0.0.1", resolve));
    }
    await pedro.publish([created(alice), created(bob)]);
    await eventually("the users' balances", async () => {
      const found = await Promise.all([alice, bob].map((user) => pedro.balance(user).catch((e: unknown) => {
        if (e instanceof NotFound) return undefined;
        throw e;
      })));
      return found.every((b) => b !== undefined) ? found : undefined;
    });
  });

  after(async () => {
    await pedro.close();
    await new Promise((resolve) => receiver?.close(resolve) ?? resolve(undefined));
  });

  it("reads a new user's balance: its starter credits", async () => {
    const balance = await pedro.balance(alice);
    assert.deepEqual({ ...balance, requestId: "" }, { remaining: 100, held: 0, available: 100, waiting: 0, requestId: "" });
  });

  it("holds, captures, and answers a capture or release again with the hold as it is", async () => {
    const placed = await pedro.hold({ id: `${run}-h1`, clerkUserId: alice, operationType: "AI_TEXT_CHAT", credits: 30 });
    assert.equal(placed.hold.status, "held");
    assert.deepEqual(placed.balance, { remaining: 70, held: 30, available: 70 });
    assert.equal(placed.replayed, false);
    const again = await pedro.hold({ id: `${run}-h1`, clerkUserId: alice, operationType: "AI_TEXT_CHAT", credits: 30 });
    assert.equal(again.replayed, true);

    const captured = await pedro.capture(`${run}-h1`, { credits: 20 });
    assert.equal(captured.hold.status, "captured");
    assert.equal(captured.hold.captured, 20);
    assert.deepEqual(captured.balance, { remaining: 80, held: 0, available: 80 });
    assert.equal((await pedro.capture(`${run}-h1`, { credits: 20 })).replayed, true);
    assert.equal((await pedro.release(`${run}-h1`)).hold.status, "captured");
    assert.equal((await pedro.getHold(`${run}-h1`)).hold.usageId, `${run}-h1`);

    await pedro.hold({ id: `${run}-h2`, clerkUserId: alice, credits: 5, operationType: "AI_TEXT_CHAT" });
    const released = await pedro.release(`${run}-h2`);
    assert.equal(released.hold.status, "released");
    assert.equal(released.balance.available, 80);
  });

  it("throws InsufficientCredits with what is available, and holds nothing", async () => {
    const error = await pedro.hold({ id: `${run}-h3`, clerkUserId: bob, credits: 101, operationType: "AI_TEXT_CHAT" })
      .catch((e: unknown) => e);
    assert.ok(error instanceof InsufficientCredits, String(error));
    assert.equal(error.available, 100);
    assert.equal(error.status, 402);
    assert.equal(error.code, "insufficient_credits");
    assert.match(error.requestId ?? "", /\S/);
    assert.equal((await pedro.balance(bob)).held, 0);
  });

  it("throws Conflict for a reused id and an over-capture, NotFound for what does not exist", async () => {
    await pedro.hold({ id: `${run}-h4`, clerkUserId: bob, credits: 10, operationType: "AI_TEXT_CHAT", overCapture: "reject" });
    const reused = await pedro.hold({ id: `${run}-h4`, clerkUserId: bob, credits: 11, operationType: "AI_TEXT_CHAT" })
      .catch((e: unknown) => e);
    assert.ok(reused instanceof Conflict && reused.code === "idempotency_conflict", String(reused));
    const over = await pedro.capture(`${run}-h4`, { credits: 11 }).catch((e: unknown) => e);
    assert.ok(over instanceof Conflict && over.code === "over_capture", String(over));
    assert.deepEqual([(over.body as { held: number }).held, (over.body as { requested: number }).requested], [10, 11]);
    await pedro.release(`${run}-h4`);

    const missing = [() => pedro.capture(`${run}-nope`), () => pedro.balance(`nobody_${run}`),
      () => pedro.movements(`nobody_${run}`)];
    for (const call of missing) {
      const error = await call().catch((e: unknown) => e);
      assert.ok(error instanceof NotFound, String(error));
    }
  });

  it("throws ValidationError with each event's result; the valid events of the call are applied", async () => {
    const bad = { ...usage(`${run}-bad`, bob, 1), credits: "5" } as unknown as Event;
    const single = await pedro.publish(bad).catch((e: unknown) => e);
    assert.ok(single instanceof ValidationError, String(single));
    assert.equal(single.results[0]?.status, "rejected");
    assert.match(single.detail, /^credits:/);

    const mixed = await pedro.publish([usage(`${run}-ok`, bob, 3), bad]).catch((e: unknown) => e);
    assert.ok(mixed instanceof ValidationError, String(mixed));
    assert.deepEqual(mixed.results.map((r) => [r.index, r.status]), [[0, "accepted"], [1, "rejected"]]);
    await eventually("the valid event applied", async () => ((await pedro.balance(bob)).remaining === 97 ? true : undefined));

    const badHold = await pedro.hold({ id: `${run}-h5`, clerkUserId: bob, credits: 1, ttlSeconds: 86_401 }).catch((e: unknown) => e);
    assert.ok(badHold instanceof ValidationError && badHold.code === "validation_error", String(badHold));
  });

  it("batches many publish() calls into few POSTs, and the worker applies each event once", async () => {
    const batched = new PedroClient({ baseUrl: url ?? "", token: token ?? "", batch: { size: 10, lingerMs: 50 },
      fetch: (input, init) => { posts.push(`batched ${init?.method}`); return fetch(input, init); } });
    const events = Array.from({ length: 25 }, (_, n) => usage(`${run}-b${n}`, alice, 1));
    const results = await Promise.all([...events, ...events.slice(0, 5)].map((event) => batched.publish(event)));
    await batched.close();
    assert.ok(results.every((r) => r.status === "accepted" && r.index === 0));
    assert.equal(posts.filter((p) => p === "batched POST").length, 3);
    // 80 after the holds above, minus 25 (the 5 published twice are duplicates)
    await eventually("the batch applied", async () => ((await pedro.balance(alice)).remaining === 55 ? true : undefined));
  });

  it("pages through a user's movements with the cursor", async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await pedro.movements(alice, { cursor, limit: 7 });
      assert.ok(page.movements.length <= 7);
      seen.push(...page.movements.map((m) => m.id));
      cursor = page.nextCursor;
    } while (cursor !== null);
    assert.equal(new Set(seen).size, seen.length);
    assert.ok(seen.includes(`starter/${alice}`), seen.join(" "));
    assert.ok(seen.includes(`${run}-b24`));
    assert.ok(seen.length >= 1 + 4 + 25, `${seen.length} movements`);
  });

  it("throws Unauthorized for a wrong token", async () => {
    const stranger = new PedroClient({ baseUrl: url ?? "", token: "not-a-token" });
    await assert.rejects(stranger.balance(alice), Unauthorized);
  });

  it("verifies the worker's signed notifications and returns them typed", { skip: !(port && secret) && "no webhook receiver" },
    async () => {
      const provisioned = await eventually("user.provisioned of both users", async () => {
        const found = received.filter((n) => n.type === "user.provisioned");
        return found.length >= 2 ? found : undefined;
      });
      for (const notification of provisioned) {
        if (notification.type !== "user.provisioned") continue;
        assert.ok([alice, bob].includes(notification.data.clerkUserId));
        assert.equal(notification.data.starterCredits, 100);
      }
      assert.deepEqual(refused, []);
    });
});
