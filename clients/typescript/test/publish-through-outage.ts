// Acceptance (issue 21): publish 10,000 events, 10 % of them duplicates, through the real ingress
// while tests/integration/test_typescript_client.py takes Redis away for 5 s in the middle.
// Events are published one publish() call each, at a steady pace, batched by the client; every
// call must resolve `accepted` (the client retries the ingress's 503s). Not a node --test file:
// the pytest reads its progress lines ({"published": n}) to know when to stop Redis, then its
// summary ({"done": true, ...}), and checks the database.
//   PEDRO_URL, PEDRO_TOKEN   the ingress
//   OUTAGE_USERS             comma-separated Clerk ids; unique event n is user n % users, n % 5 + 1 credits
//   OUTAGE_EVENTS            events in all (default 10000): every 10th is a duplicate of an earlier one
import { PedroClient, type Event } from "@pedro-ai/worker-client";

const users = (process.env.OUTAGE_USERS ?? "").split(",").filter(Boolean);
const total = Number(process.env.OUTAGE_EVENTS ?? 10_000);
const perTick = 10; // events published every 10 ms: about 1,000 per second, so the stream spans the outage

function unique(n: number): Event {
  return { type: "usage.recorded", id: `outage-${n}`, clerkUserId: users[n % users.length]!, operationType: "AI_TEXT_CHAT",
    credits: (n % 5) + 1, occurredAt: new Date(Date.UTC(2026, 10, 1, 12, 0, 0, n)).toISOString() };
}

// Every 10th event of the stream is the unique event published 4 before, again: same id, same payload.
const stream: Event[] = [];
for (let n = 0; stream.length < total; n++) {
  stream.push(unique(n));
  if (n % 9 === 8 && stream.length < total) stream.push(unique(n - 4));
}

const statuses: Record<string, number> = {};
let networkErrors = 0;
const pedro = new PedroClient({
  baseUrl: process.env.PEDRO_URL ?? "", token: process.env.PEDRO_TOKEN ?? "",
  retry: { retries: 10, minDelayMs: 100, maxDelayMs: 2_000 },
  batch: { size: 100, lingerMs: 20, maxInFlight: 4 },
  fetch: async (input, init) => {
    try {
      const response = await fetch(input, init);
      statuses[response.status] = (statuses[response.status] ?? 0) + 1;
      return response;
    } catch (error) {
      networkErrors++;
      throw error;
    }
  },
});

const started = Date.now();
const failures: string[] = [];
let accepted = 0;
const calls: Promise<void>[] = [];
for (let i = 0; i < stream.length; i += perTick) {
  for (const event of stream.slice(i, i + perTick)) {
    calls.push(pedro.publish(event).then(
      (result) => { if (result.status === "accepted") accepted++; },
      (error: unknown) => { failures.push(`${event.id}: ${String(error)}`); },
    ));
  }
  const published = Math.min(i + perTick, stream.length);
  if (published % 500 === 0) console.log(JSON.stringify({ published }));
  await new Promise((resolve) => setTimeout(resolve, 10));
}
await Promise.all(calls);
await pedro.close();
console.log(JSON.stringify({ done: true, published: stream.length, accepted, failures: failures.slice(0, 10),
  failed: failures.length, statuses, networkErrors, seconds: (Date.now() - started) / 1000 }));
process.exitCode = failures.length === 0 && accepted === stream.length ? 0 : 1;
