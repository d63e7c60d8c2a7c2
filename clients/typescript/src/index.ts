/**
 * @pedro-ai/worker-client: the Pedro AI app's client for pedro-worker's /v1 API.
 * Types come from pedro-worker's docs/openapi.json and docs/notifications.schema.json.
 */
export { PedroClient, type PedroClientOptions } from "./client.js";
export type { BatchOptions } from "./batch.js";
export type { RetryOptions } from "./retry.js";
export {
  Conflict, InsufficientCredits, NotFound, PedroError, Unauthorized, Unavailable, ValidationError,
} from "./errors.js";
export {
  verifyWebhook, WebhookVerificationError, type HeadersLike, type VerifyOptions, type WebhookFailure,
} from "./webhooks.js";
export type * from "./types.js";
export type { components, operations, paths } from "./openapi.js";
export type * as notifications from "./notifications.js";
