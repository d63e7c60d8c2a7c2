/**
 * Generated from docs/notifications.schema.json by json-schema-to-typescript (scripts/generate.mjs): do not edit.
 * Regenerate: `npm run generate` in clients/typescript.
 */

/**
 * The body of a notification (docs/notifications.md): its `type` says what `data` holds. Signed per Standard Webhooks; dedupe on the `webhook-id` header.
 */
export type PedroWorkerNotifications =
  | CreditsLowNotification
  | CreditsDepletedNotification
  | CreditsGrantedNotification
  | CreditsReversedNotification
  | CreditsExpiringNotification
  | CreditsExpiredNotification
  | HoldExpiredNotification
  | UsageRejectedNotification
  | EventWaitingNotification
  | UserProvisionedNotification;

/**
 * The body of a `credits.low` delivery.
 */
export interface CreditsLowNotification {
  type: "credits.low";
  /**
   * When the change happened (ISO 8601, UTC): the time of the transaction that made it.
   */
  timestamp: string;
  data: CreditsLow;
}
/**
 * The type's payload.
 */
export interface CreditsLow {
  /**
   * The app's "User".id.
   */
  userId: string;
  /**
   * The user's Clerk id. A user's notifications arrive in the order they were written.
   */
  clerkUserId: string;
  /**
   * The user's balance ("CreditBalance"."creditsRemaining", open holds already out of it) once the transaction that wrote this notification committed. Below zero when the user used more than they had (overdraft policy `allow`) or a payment was reversed after its credits were spent.
   */
  balance: number;
  /**
   * The balance before that transaction.
   */
  previousBalance: number;
  /**
   * The threshold crossed, in credits (a percentage setting as it came to for this user).
   */
  threshold: number;
  /**
   * The threshold as configured (PEDRO_NOTIFY_LOW_THRESHOLDS): credits (`20`) or a percentage of the user's plan allowance (`10%`).
   */
  thresholdSetting: string;
  /**
   * The credits of the user's newest live plan allowance, which percentage thresholds are of; null when the user has none (then only credit thresholds apply).
   */
  planCredits: number | null;
  /**
   * The id of the grant that names the period: the user's newest live grant (a plan allowance, a pack, the starter credits…); `none` when the user has no grant.
   */
  period: string;
  /**
   * The key of the user's last journal movement in that transaction (a usage's event id, `hold/<hold id>`, `expire/<grant id>`, `grant_reversal/<grant id>`…): `pedro-worker user show` lists it.
   */
  cause: string;
}
/**
 * The body of a `credits.depleted` delivery.
 */
export interface CreditsDepletedNotification {
  type: "credits.depleted";
  /**
   * When the change happened (ISO 8601, UTC): the time of the transaction that made it.
   */
  timestamp: string;
  data: CreditsDepleted;
}
/**
 * The type's payload.
 */
export interface CreditsDepleted {
  /**
   * The app's "User".id.
   */
  userId: string;
  /**
   * The user's Clerk id. A user's notifications arrive in the order they were written.
   */
  clerkUserId: string;
  /**
   * The user's balance ("CreditBalance"."creditsRemaining", open holds already out of it) once the transaction that wrote this notification committed. Below zero when the user used more than they had (overdraft policy `allow`) or a payment was reversed after its credits were spent.
   */
  balance: number;
  /**
   * The balance before that transaction.
   */
  previousBalance: number;
  /**
   * The key of the user's last journal movement in that transaction (a usage's event id, `hold/<hold id>`, `expire/<grant id>`, `grant_reversal/<grant id>`…): `pedro-worker user show` lists it.
   */
  cause: string;
}
/**
 * The body of a `credits.granted` delivery.
 */
export interface CreditsGrantedNotification {
  type: "credits.granted";
  /**
   * When the change happened (ISO 8601, UTC): the time of the transaction that made it.
   */
  timestamp: string;
  data: CreditsGranted;
}
/**
 * The type's payload.
 */
export interface CreditsGranted {
  /**
   * The app's "User".id.
   */
  userId: string;
  /**
   * The user's Clerk id. A user's notifications arrive in the order they were written.
   */
  clerkUserId: string;
  /**
   * The credits received (a debt the user had is paid from them first).
   */
  credits: number;
  /**
   * The journal movement's kind (docs/ledger.md, Journal and reconcile).
   */
  kind: "grant" | "grant_start" | "starter" | "grant_restore" | "adjustment";
  /**
   * What the movement refers to: its grant's id for grants, starts, reversals, restores and adjustments; the Clerk user id for starter credits; for an expiry, the grant that ended (or the refund or hold whose credits came back to it).
   */
  reference: string | null;
  /**
   * Why, in words, for a person to read: `plan <id>`, `pack <id>`, `PAYMENT_REFUNDED`, `plan credits expired`, an adjustment's `reason`…
   */
  reason: string | null;
  /**
   * The journal movement's key (`worker.journal.event_id`): unique, once ever.
   */
  movement: string;
  /**
   * The user's balance ("CreditBalance"."creditsRemaining", open holds already out of it) once the transaction that wrote this notification committed. Below zero when the user used more than they had (overdraft policy `allow`) or a payment was reversed after its credits were spent.
   */
  balance: number;
}
/**
 * The body of a `credits.reversed` delivery.
 */
export interface CreditsReversedNotification {
  type: "credits.reversed";
  /**
   * When the change happened (ISO 8601, UTC): the time of the transaction that made it.
   */
  timestamp: string;
  data: CreditsReversed;
}
/**
 * The type's payload.
 */
export interface CreditsReversed {
  /**
   * The app's "User".id.
   */
  userId: string;
  /**
   * The user's Clerk id. A user's notifications arrive in the order they were written.
   */
  clerkUserId: string;
  /**
   * The credits taken back.
   */
  credits: number;
  kind: "grant_reversal";
  /**
   * What the movement refers to: its grant's id for grants, starts, reversals, restores and adjustments; the Clerk user id for starter credits; for an expiry, the grant that ended (or the refund or hold whose credits came back to it).
   */
  reference: string | null;
  /**
   * Why, in words, for a person to read: `plan <id>`, `pack <id>`, `PAYMENT_REFUNDED`, `plan credits expired`, an adjustment's `reason`…
   */
  reason: string | null;
  /**
   * The journal movement's key (`worker.journal.event_id`): unique, once ever.
   */
  movement: string;
  /**
   * The user's balance ("CreditBalance"."creditsRemaining", open holds already out of it) once the transaction that wrote this notification committed. Below zero when the user used more than they had (overdraft policy `allow`) or a payment was reversed after its credits were spent.
   */
  balance: number;
}
/**
 * The body of a `credits.expiring` delivery.
 */
export interface CreditsExpiringNotification {
  type: "credits.expiring";
  /**
   * When the change happened (ISO 8601, UTC): the time of the transaction that made it.
   */
  timestamp: string;
  data: CreditsExpiring;
}
/**
 * The type's payload.
 */
export interface CreditsExpiring {
  /**
   * The app's "User".id.
   */
  userId: string;
  /**
   * The user's Clerk id; null only when the app's "User" row is gone.
   */
  clerkUserId: string | null;
  /**
   * The grant: `plan/<payment>/<n>`, `rollover/<grant>`, `pack/<payment>/0`, `adjustment/<event id>`…
   */
  grantId: string;
  /**
   * What gave it (docs/ledger.md, Grants).
   */
  source: string;
  /**
   * The credits left in it when this was written: what expires unless used.
   */
  credits: number;
  /**
   * When it expires (ISO 8601, UTC).
   */
  expiresAt: string;
}
/**
 * The body of a `credits.expired` delivery.
 */
export interface CreditsExpiredNotification {
  type: "credits.expired";
  /**
   * When the change happened (ISO 8601, UTC): the time of the transaction that made it.
   */
  timestamp: string;
  data: CreditsExpired;
}
/**
 * The type's payload.
 */
export interface CreditsExpired {
  /**
   * The app's "User".id.
   */
  userId: string;
  /**
   * The user's Clerk id. A user's notifications arrive in the order they were written.
   */
  clerkUserId: string;
  /**
   * The credits that expired.
   */
  credits: number;
  kind: "grant_expiry";
  /**
   * What the movement refers to: its grant's id for grants, starts, reversals, restores and adjustments; the Clerk user id for starter credits; for an expiry, the grant that ended (or the refund or hold whose credits came back to it).
   */
  reference: string | null;
  /**
   * Why, in words, for a person to read: `plan <id>`, `pack <id>`, `PAYMENT_REFUNDED`, `plan credits expired`, an adjustment's `reason`…
   */
  reason: string | null;
  /**
   * The journal movement's key (`worker.journal.event_id`): unique, once ever.
   */
  movement: string;
  /**
   * The user's balance ("CreditBalance"."creditsRemaining", open holds already out of it) once the transaction that wrote this notification committed. Below zero when the user used more than they had (overdraft policy `allow`) or a payment was reversed after its credits were spent.
   */
  balance: number;
}
/**
 * The body of a `hold.expired` delivery.
 */
export interface HoldExpiredNotification {
  type: "hold.expired";
  /**
   * When the change happened (ISO 8601, UTC): the time of the transaction that made it.
   */
  timestamp: string;
  data: HoldExpired;
}
/**
 * The type's payload.
 */
export interface HoldExpired {
  /**
   * The app's "User".id.
   */
  userId: string;
  /**
   * The user's Clerk id. A user's notifications arrive in the order they were written.
   */
  clerkUserId: string;
  /**
   * The hold's id.
   */
  holdId: string;
  /**
   * The credits the hold gave back.
   */
  credits: number;
  /**
   * The user's balance ("CreditBalance"."creditsRemaining", open holds already out of it) once the transaction that wrote this notification committed. Below zero when the user used more than they had (overdraft policy `allow`) or a payment was reversed after its credits were spent.
   */
  balance: number;
}
/**
 * The body of a `usage.rejected` delivery.
 */
export interface UsageRejectedNotification {
  type: "usage.rejected";
  /**
   * When the change happened (ISO 8601, UTC): the time of the transaction that made it.
   */
  timestamp: string;
  data: UsageRejected;
}
/**
 * The type's payload.
 */
export interface UsageRejected {
  /**
   * The event's id; null when it had no readable one (then each distinct payload is notified once).
   */
  eventId: string | null;
  /**
   * The event's `type` as sent; null when it had none.
   */
  eventType: string | null;
  /**
   * The `clerkUserId` the event named, as sent: not checked (a rejected event may name no user, or one that does not exist).
   */
  clerkUserId: string | null;
  /**
   * Why (docs/ledger.md, Rejection reasons).
   */
  reason: string;
  /**
   * More, for a developer: the fields that failed validation (never their values), the balance and change that did not fit…
   */
  detail: string | null;
}
/**
 * The body of a `event.waiting` delivery.
 */
export interface EventWaitingNotification {
  type: "event.waiting";
  /**
   * When the change happened (ISO 8601, UTC): the time of the transaction that made it.
   */
  timestamp: string;
  data: EventWaiting;
}
/**
 * The type's payload.
 */
export interface EventWaiting {
  /**
   * The waiting event's id.
   */
  eventId: string;
  /**
   * Its queue: `usage`, `users`, `billing` or `storage`.
   */
  family: string;
  /**
   * The event's `type`.
   */
  eventType: string;
  /**
   * The user it is about, when it names one.
   */
  clerkUserId: string | null;
  /**
   * Why it waits (docs/ledger.md, Waiting).
   */
  reason: string;
  /**
   * What releases it: `user:<clerk id>`, `cost:<label>`, `plan:<id>`, `usage:<id>`…
   */
  waitsFor: string;
  /**
   * A sentence for whoever fixes it.
   */
  detail: string | null;
  /**
   * When it first waited (ISO 8601, UTC).
   */
  since: string;
}
/**
 * The body of a `user.provisioned` delivery.
 */
export interface UserProvisionedNotification {
  type: "user.provisioned";
  /**
   * When the change happened (ISO 8601, UTC): the time of the transaction that made it.
   */
  timestamp: string;
  data: UserProvisioned;
}
/**
 * The type's payload.
 */
export interface UserProvisioned {
  /**
   * The app's "User".id.
   */
  userId: string;
  /**
   * The user's Clerk id. A user's notifications arrive in the order they were written.
   */
  clerkUserId: string;
  /**
   * The email the Clerk event carried; null when none.
   */
  email: string | null;
  /**
   * The starter credits given now (0: none configured, or this Clerk id had them before).
   */
  starterCredits: number;
}
