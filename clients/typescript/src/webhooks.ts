import type { Notification } from "./types.js";

/** Headers as a `Request` has them, or as a plain object (Node's `req.headers`). */
export type HeadersLike = Headers | Record<string, string | string[] | undefined>;

export interface VerifyOptions {
  /** How far `webhook-timestamp` may be from now, in seconds (both ways). Default 300. */
  toleranceSeconds?: number;
  /** "Now", for tests: a Date or milliseconds since the epoch. */
  now?: Date | number;
}

export type WebhookFailure = "invalid_secret" | "missing_headers" | "stale_timestamp" | "invalid_signature" | "invalid_body";

/** The delivery is not one pedro-worker signed with this secret (answer it 400 or 401). */
export class WebhookVerificationError extends Error {
  readonly code: WebhookFailure;

  constructor(code: WebhookFailure, message: string) {
    super(`${code}: ${message}`);
    this.name = "WebhookVerificationError";
    this.code = code;
  }
}

const encoder = new TextEncoder();

function header(headers: HeadersLike, name: string): string | undefined {
  if (typeof (headers as Headers).get === "function") return (headers as Headers).get(name) ?? undefined;
  const record = headers as Record<string, string | string[] | undefined>;
  const key = Object.keys(record).find((k) => k.toLowerCase() === name);
  const value = key === undefined ? undefined : record[key];
  return Array.isArray(value) ? value.join(" ") : value;
}

function fromBase64(text: string) {
  try {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  } catch {
    return undefined;
  }
}

/** Constant time for equal lengths (a signature's length is no secret). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a[i]! ^ b[i]!;
  return difference === 0;
}

async function subtleCrypto(): Promise<SubtleCrypto> {
  const web = (globalThis as { crypto?: Crypto }).crypto;
  if (web?.subtle) return web.subtle;
  // Node 18 has Web Crypto without the global; edge runtimes and Node >= 19 never get here.
  const specifier = "node:crypto";
  const nodeCrypto = (await import(/* webpackIgnore: true */ specifier)) as { webcrypto: Crypto };
  return nodeCrypto.webcrypto.subtle;
}

/**
 * Check a notification delivery (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
 * `webhook-signature`) and return its body, typed. `body` must be the raw body as received
 * (`await request.text()`), not a re-serialized object: the signature is over the exact bytes.
 * `secret` is the endpoint's `whsec_…` secret. Dedupe on `webhook-id`: a delivery may come
 * again (at least once), with the same id and body.
 *
 * Throws `WebhookVerificationError` when a header is missing, the timestamp is more than
 * `toleranceSeconds` away from now (a replay), or no `v1` signature matches.
 */
export async function verifyWebhook(
  secret: string,
  body: string | Uint8Array | ArrayBuffer,
  headers: HeadersLike,
  options: VerifyOptions = {},
): Promise<Notification> {
  const key = fromBase64(secret.startsWith("whsec_") ? secret.slice("whsec_".length) : secret);
  if (key === undefined || key.length === 0) {
    throw new WebhookVerificationError("invalid_secret", "the secret is not whsec_<base64>");
  }
  const id = header(headers, "webhook-id");
  const timestamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  if (!id || !timestamp || !signatures) {
    throw new WebhookVerificationError("missing_headers", "webhook-id, webhook-timestamp and webhook-signature are required");
  }
  const now = options.now === undefined ? Date.now() : Number(options.now);
  const tolerance = options.toleranceSeconds ?? 300;
  const seconds = /^\d+$/.test(timestamp) ? Number(timestamp) : NaN;
  if (!(Math.abs(now / 1000 - seconds) <= tolerance)) {
    throw new WebhookVerificationError("stale_timestamp", `webhook-timestamp is not within ${tolerance} s of now`);
  }

  const bytes = typeof body === "string" ? encoder.encode(body) : new Uint8Array(body);
  const prefix = encoder.encode(`${id}.${timestamp}.`);
  const signed = new Uint8Array(prefix.length + bytes.length);
  signed.set(prefix);
  signed.set(bytes, prefix.length);
  const subtle = await subtleCrypto();
  const hmacKey = await subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const expected = new Uint8Array(await subtle.sign("HMAC", hmacKey, signed));

  let matched = false;
  for (const entry of signatures.split(" ")) {
    const [version, signature] = entry.split(",", 2);
    if (version !== "v1" || signature === undefined) continue;
    const candidate = fromBase64(signature);
    // no early exit: the time taken does not say which signature matched
    if (candidate !== undefined && sameBytes(candidate, expected)) matched = true;
  }
  if (!matched) throw new WebhookVerificationError("invalid_signature", "no v1 signature matches");

  try {
    return JSON.parse(typeof body === "string" ? body : new TextDecoder().decode(bytes)) as Notification;
  } catch {
    throw new WebhookVerificationError("invalid_body", "the signed body is not JSON");
  }
}
