// verifyWebhook against signatures made here with node:crypto (an implementation of its own).
import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { describe, it } from "node:test";

import { verifyWebhook, WebhookVerificationError } from "@pedro-ai/worker-client";

const key = randomBytes(24);
const secret = `whsec_${key.toString("base64")}`;
const body = JSON.stringify({ type: "credits.low", timestamp: "2026-11-01T12:00:00Z",
  data: { userId: "u1", clerkUserId: "user_a", balance: 5, previousBalance: 25, threshold: 10, cause: "use-1" } });

function sign(id: string, timestamp: number, payload: string, withKey: Buffer = key): string {
  return "v1," + createHmac("sha256", withKey).update(`${id}.${timestamp}.${payload}`).digest("base64");
}

function headers(id: string, timestamp: number, signature: string): Record<string, string> {
  return { "webhook-id": id, "webhook-timestamp": String(timestamp), "webhook-signature": signature };
}

const now = () => Math.floor(Date.now() / 1000);

async function failure(promise: Promise<unknown>): Promise<string> {
  const error = await promise.catch((e: unknown) => e);
  assert.ok(error instanceof WebhookVerificationError, String(error));
  return error.code;
}

describe("verifyWebhook", () => {
  it("returns the typed notification of a good delivery (Headers, a plain object, bytes)", async () => {
    const t = now();
    const notification = await verifyWebhook(secret, body, new Headers(headers("msg_1", t, sign("msg_1", t, body))));
    assert.equal(notification.type, "credits.low");
    if (notification.type === "credits.low") assert.equal(notification.data.balance, 5);
    const fromRecord = await verifyWebhook(secret, new TextEncoder().encode(body), {
      "Webhook-Id": "msg_1", "Webhook-Timestamp": String(t), "Webhook-Signature": sign("msg_1", t, body) });
    assert.deepEqual(fromRecord, notification);
  });

  it("accepts any matching one of several signatures, and ignores other versions", async () => {
    const t = now();
    const other = sign("msg_2", t, body, randomBytes(24));
    const many = `v1a,abc ${other} ${sign("msg_2", t, body)} v1,!!notbase64`;
    assert.equal((await verifyWebhook(secret, body, headers("msg_2", t, many))).type, "credits.low");
  });

  it("refuses a changed body, another id, another secret, or no signature", async () => {
    const t = now();
    const good = sign("msg_3", t, body);
    assert.equal(await failure(verifyWebhook(secret, body.replace("5", "6"), headers("msg_3", t, good))), "invalid_signature");
    assert.equal(await failure(verifyWebhook(secret, body, headers("msg_4", t, good))), "invalid_signature");
    assert.equal(await failure(verifyWebhook(`whsec_${randomBytes(24).toString("base64")}`, body, headers("msg_3", t, good))),
      "invalid_signature");
    assert.equal(await failure(verifyWebhook(secret, body, headers("msg_3", t, "v2,xyz"))), "invalid_signature");
    assert.equal(await failure(verifyWebhook(secret, body, { "webhook-id": "msg_3" })), "missing_headers");
    assert.equal(await failure(verifyWebhook("whsec_", body, headers("msg_3", t, good))), "invalid_secret");
  });

  it("refuses a timestamp more than 5 minutes away, either way", async () => {
    const t = now();
    for (const skew of [-301, 301]) {
      const at = t + skew;
      assert.equal(await failure(verifyWebhook(secret, body, headers("m", at, sign("m", at, body)))), "stale_timestamp");
    }
    const at = t - 299;
    assert.equal((await verifyWebhook(secret, body, headers("m", at, sign("m", at, body)))).type, "credits.low");
    assert.equal(await failure(verifyWebhook(secret, body, headers("m", t, sign("m", t, body)), { now: (t + 600) * 1000 })),
      "stale_timestamp");
  });
});
