/**
 * Names for the generated types (src/openapi.ts, src/notifications.ts): aliases, never copies.
 */
import type { components } from "./openapi.js";
import type { PedroWorkerNotifications } from "./notifications.js";

type Schemas = components["schemas"];

/** Any event of the contract, by its `type`. Its `id` is its idempotency key. */
export type Event = Schemas["Event"];
export type UsageRecorded = Schemas["UsageRecorded"];
export type UsageRefunded = Schemas["UsageRefunded"];
export type CreditsAdjusted = Schemas["CreditsAdjusted"];
export type UserCreated = Schemas["UserCreated"];
export type UserUpdated = Schemas["UserUpdated"];
export type UserDeleted = Schemas["UserDeleted"];
export type BillingEvent = Schemas["BillingEvent"];
export type StorageObjectCreated = Schemas["StorageObjectCreated"];
export type StorageObjectDeleted = Schemas["StorageObjectDeleted"];
/** An event's `type`: `"usage.recorded"`, `"user.created"`, … */
export type EventType = Event["type"];

/** One event's result, by `status`. `index` is the event's position in its `publish()` call. */
export type EventResult = Schemas["EventResult"];
export type EventAccepted = Schemas["EventAccepted"];
export type EventRejected = Schemas["EventRejected"];

export type HoldRequest = Schemas["HoldRequest"];
export type CaptureRequest = Schemas["CaptureRequest"];
export type HoldView = Schemas["HoldView"];
export type BalanceView = Schemas["BalanceView"];
export type Movement = Schemas["Movement"];

/** A hold as it is now and its user's balance; `replayed`: the request changed nothing. */
export type HoldResult = Schemas["HoldResponse"] & { replayed: boolean };
export type Balance = Schemas["BalanceResponse"];
export type MovementsPage = Schemas["MovementsResponse"];

/** Every error answer: `{error, detail, requestId}`, and what some add. */
export type ErrorBody = Schemas["ErrorBody"];
export type InsufficientCreditsBody = Schemas["InsufficientCredits"];
export type OverCaptureBody = Schemas["OverCapture"];
export type HoldExpiredBody = Schemas["HoldExpired"];
export type EventsRefusedBody = Schemas["EventsRefused"];

/** The body of a notification (a Standard Webhooks delivery), by its `type`. */
export type Notification = PedroWorkerNotifications;
export type NotificationType = Notification["type"];
/** The notification of one type: `NotificationOf<"credits.low">`. */
export type NotificationOf<T extends NotificationType> = Extract<Notification, { type: T }>;
