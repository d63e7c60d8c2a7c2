/**
 * Generated from docs/openapi.json by openapi-typescript (scripts/generate.mjs): do not edit.
 * Regenerate: `npm run generate` in clients/typescript.
 */
export interface paths {
    "/v1/events": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Publish events
         * @description Queue one event or a batch for the worker, which applies each exactly once (its `id` is its idempotency key: publishing it again is harmless, so retry freely). The answer comes once Redis has the valid events; `accepted` means queued, not applied.
         */
        post: operations["publishEvents"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/holds": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Hold credits
         * @description Set credits aside before the AI call, in one transaction under the user's balance lock: two concurrent requests never spend the same credits. The held credits leave `"CreditBalance".creditsRemaining` at once. The same `id` again answers the hold as it is now (201, `Idempotent-Replayed`); an unused hold is released at `ttlSeconds`.
         */
        post: operations["placeHold"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/holds/{holdId}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Read a hold
         * @description The hold as it is now, and its user's balance.
         */
        get: operations["getHold"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/holds/{holdId}/capture": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Capture a hold
         * @description Charge what the work used against the hold (a `"UsageHistory"` row whose id is the hold's) and give back the rest. A hold resolved already answers its resolution (200, `Idempotent-Replayed`).
         */
        post: operations["captureHold"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/holds/{holdId}/release": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Release a hold
         * @description Give everything held back (the work did not happen). A hold resolved already answers its resolution (200, `Idempotent-Replayed`).
         */
        post: operations["releaseHold"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/users/{clerkUserId}/balance": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Read a user's balance
         * @description `remaining` is `"CreditBalance".creditsRemaining` (open holds already out of it), `available` what a new hold may take, `waiting` the user's events the worker keeps until they can apply.
         */
        get: operations["getBalance"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/users/{clerkUserId}/movements": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * List a user's movements
         * @description The user's journal movements (usage, refunds, grants, holds, expiries…), newest first, one page at a time: pass `nextCursor` as `cursor` for the next (older) page; null on the last.
         */
        get: operations["listMovements"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
}
export type webhooks = Record<string, never>;
export interface components {
    schemas: {
        /**
         * BalanceResponse
         * @description A user's balance (holds past their expiry counted as released).
         */
        BalanceResponse: {
            /** @description "CreditBalance".creditsRemaining: open holds already taken out. */
            remaining: number;
            /** @description Credits in open holds. */
            held: number;
            /** @description What a new hold or a usage may take now without going into debt. */
            available: number;
            /** @description The user's events waiting in the worker (worker.waiting). */
            waiting: number;
            /** @description The request's id, as in the `x-request-id` header: the caller's own when it sent a sane one (`[A-Za-z0-9._:-]{1,128}`), else one made up. Every log line of the request carries it. */
            requestId: string;
        };
        /** BalanceView */
        BalanceView: {
            /** @description "CreditBalance".creditsRemaining: open holds already taken out. */
            remaining: number;
            /** @description Credits in open holds. */
            held: number;
            /** @description What a new hold or a usage may take now without going into debt. */
            available: number;
        };
        /**
         * BillingEvent
         * @description A billing provider's webhook event, parsed by the ingress (docs/ingress.md): one
         *     "SubscriptionEvent" row; a confirmed or received subscription payment grants its plan's
         *     credits once, a refund or chargeback reverses that grant once.
         */
        BillingEvent: {
            /**
             * @default 1
             * @constant
             */
            version?: 1;
            /** @description The provider's event id, verbatim (Asaas ids contain '&'): idempotency key. */
            id: string;
            /**
             * @description From externalReference, when it names one.
             * @default null
             */
            clerkUserId?: string | null;
            /**
             * @description discriminator enum property added by openapi-typescript
             * @enum {string}
             */
            type: "billing.event";
            /**
             * @default asaas
             * @constant
             */
            provider?: "asaas";
            eventType: string;
            status: string;
            /**
             * Format: date-time
             * @description ISO-8601 with a time zone; stored as UTC.
             */
            occurredAt: string;
            /** @default null */
            paymentId?: string | null;
            /** @default null */
            subscriptionId?: string | null;
            /** @default null */
            paymentLinkId?: string | null;
            /**
             * @description The plan externalReference names ("Plan".id, or an Asaas id in "Plan".asaasId).
             * @default null
             */
            planId?: string | null;
            /**
             * @description The Asaas customer (cus_...).
             * @default null
             */
            customerId?: string | null;
            /**
             * @description The installment plan a payment belongs to.
             * @default null
             */
            installmentId?: string | null;
            /** @default null */
            installmentNumber?: number | null;
            /**
             * @description How many installments the plan has (externalReference, else the description).
             * @default null
             */
            installmentCount?: number | null;
            /**
             * @description The payment's value (a SUBSCRIPTION_ event: the subscription's), in cents.
             * @default null
             */
            valueCents?: number | null;
            /**
             * @description What has been refunded of the payment so far (its refunds that are not cancelled).
             * @default null
             */
            refundedCents?: number | null;
            /**
             * @description payment.chargeback.status: REQUESTED, IN_DISPUTE, DISPUTE_LOST, REVERSED, DONE.
             * @default null
             */
            chargebackStatus?: string | null;
            /**
             * @description When Asaas created the payment: payment.dateCreated, the start of that São Paulo day.
             * @default null
             */
            paymentCreatedAt?: string | null;
            /**
             * @description The subscription's billing cycle.
             * @default null
             */
            cycle?: ("WEEKLY" | "BIWEEKLY" | "MONTHLY" | "BIMONTHLY" | "QUARTERLY" | "SEMIANNUALLY" | "YEARLY") | null;
            /**
             * @description The subscription's next due date.
             * @default null
             */
            nextDueDate?: string | null;
            /**
             * @description The provider's payload, stored as SubscriptionEvent.metadata.
             * @default null
             */
            metadata?: {
                [key: string]: unknown;
            } | null;
        };
        /**
         * CaptureRequest
         * @description Charge the usage against the hold; what was held beyond it comes back.
         */
        CaptureRequest: {
            /**
             * @description Credits used; absent -> the whole hold.
             * @default null
             */
            credits?: number | null;
            /**
             * @description Absent -> the hold's (one of them is required).
             * @default null
             */
            operationType?: string | null;
            /**
             * @description Absent -> the hold's.
             * @default null
             */
            details?: {
                [key: string]: unknown;
            } | null;
        };
        /**
         * CreditsAdjusted
         * @description An admin grant (positive) or correction (negative).
         */
        CreditsAdjusted: {
            /**
             * @default 1
             * @constant
             */
            version?: 1;
            /** @description Idempotency key: 1-191 characters of [A-Za-z0-9_:.-]. */
            id: string;
            clerkUserId: string;
            /**
             * @description discriminator enum property added by openapi-typescript
             * @enum {string}
             */
            type: "credits.adjusted";
            delta: number;
            reason: string;
            /** @default null */
            occurredAt?: string | null;
            /**
             * @description A positive adjustment's credits expire then (default: never).
             * @default null
             */
            expiresAt?: string | null;
            /**
             * @description A positive adjustment's grant priority, lower used first (default 15).
             * @default null
             */
            priority?: number | null;
        };
        /**
         * ErrorBody
         * @description Every 4xx/5xx answer. `error` is for programs, `detail` for people; neither echoes a
         *     secret or the input. Some errors add fields: EventsRefused, InsufficientCredits,
         *     OverCapture, HoldExpired.
         */
        ErrorBody: {
            /** @description What went wrong, for programs: `unauthorized`, `unknown_hold`, … */
            error: string;
            /** @description What went wrong, for people. */
            detail: string;
            /** @description The request's id, as in the `x-request-id` header: the caller's own when it sent a sane one (`[A-Za-z0-9._:-]{1,128}`), else one made up. Every log line of the request carries it. */
            requestId: string;
        };
        /**
         * Event
         * @description Any event of the contract (worker/events.py), by its `type`. Its `id` is its idempotency
         *     key: the same id again is a duplicate, applied once.
         */
        Event: components["schemas"]["UsageRecorded"] | components["schemas"]["UsageRefunded"] | components["schemas"]["CreditsAdjusted"] | components["schemas"]["UserCreated"] | components["schemas"]["UserUpdated"] | components["schemas"]["UserDeleted"] | components["schemas"]["BillingEvent"] | components["schemas"]["StorageObjectCreated"] | components["schemas"]["StorageObjectDeleted"];
        /**
         * EventAccepted
         * @description Durably queued (in Redis): the worker applies it exactly once, or records why it refused
         *     it (docs/ledger.md). Publishing it again is harmless: its `id` is its idempotency key.
         */
        EventAccepted: {
            /** @description The event's position in the request, from 0. */
            index: number;
            /** @description The event's `id` as sent (null when it sent no string). */
            id: string | null;
            /**
             * @description discriminator enum property added by openapi-typescript
             * @enum {string}
             */
            status: "accepted";
        };
        /**
         * EventBatch
         * @description `{"events": [...]}`: the same as a bare array.
         */
        EventBatch: {
            /** @description At most `PEDRO_INGRESS_MAX_BATCH` (1000) events. */
            events: components["schemas"]["Event"][];
        };
        /**
         * EventRejected
         * @description Not queued: it breaks the contract. Fix it and publish it again.
         */
        EventRejected: {
            /** @description The event's position in the request, from 0. */
            index: number;
            /** @description The event's `id` as sent (null when it sent no string). */
            id: string | null;
            /**
             * @description discriminator enum property added by openapi-typescript
             * @enum {string}
             */
            status: "rejected";
            /** @enum {string} */
            reason: "validation_error" | "unknown_event_type";
            /** @description Which fields are wrong and why (never their values). */
            detail: string;
        };
        /**
         * EventResult
         * @description One event's result, by `status`.
         */
        EventResult: components["schemas"]["EventAccepted"] | components["schemas"]["EventRejected"];
        /**
         * EventsAccepted
         * @description 202: at least one event of the request is queued; `results` has every event, in order.
         */
        EventsAccepted: {
            accepted: number;
            rejected: number;
            results: components["schemas"]["EventResult"][];
            /** @description The request's id, as in the `x-request-id` header: the caller's own when it sent a sane one (`[A-Za-z0-9._:-]{1,128}`), else one made up. Every log line of the request carries it. */
            requestId: string;
        };
        /**
         * EventsRefused
         * @description 422 from POST /v1/events: no event of the request is valid, none was queued. `error` is
         *     the one event's reason, or `validation_error` for a batch.
         */
        EventsRefused: {
            /** @enum {string} */
            error: "validation_error" | "unknown_event_type";
            /** @description What went wrong, for people. */
            detail: string;
            /** @description The request's id, as in the `x-request-id` header: the caller's own when it sent a sane one (`[A-Za-z0-9._:-]{1,128}`), else one made up. Every log line of the request carries it. */
            requestId: string;
            /** @constant */
            accepted: 0;
            rejected: number;
            results: components["schemas"]["EventResult"][];
        };
        /** @description One event, an array of at most `PEDRO_INGRESS_MAX_BATCH` (1000) events, or `{"events": [...]}`. Each event is validated on its own: the valid ones are queued even when others are not. */
        EventsRequest: components["schemas"]["Event"] | components["schemas"]["Event"][] | components["schemas"]["EventBatch"];
        /**
         * HoldExpired
         * @description 409 from a capture of a hold past its expiry: its credits were released (by this request
         *     or before), nothing was charged. `hold` and `balance` are as they are now.
         */
        HoldExpired: {
            /** @constant */
            error: "hold_expired";
            /** @description What went wrong, for people. */
            detail: string;
            /** @description The request's id, as in the `x-request-id` header: the caller's own when it sent a sane one (`[A-Za-z0-9._:-]{1,128}`), else one made up. Every log line of the request carries it. */
            requestId: string;
            hold: components["schemas"]["HoldView"];
            balance: components["schemas"]["BalanceView"];
        };
        /**
         * HoldRequest
         * @description Set credits aside for an AI call in progress: `credits`, or the cost of `operationType`.
         */
        HoldRequest: {
            /** @description The hold's idempotency key (shares the namespace of event ids). */
            id: string;
            clerkUserId: string;
            /**
             * @description Credits to hold; absent -> the cost of operationType.
             * @default null
             */
            credits?: number | null;
            /**
             * @description What the credits are for: the capture's "UsageHistory" operationType.
             * @default null
             */
            operationType?: string | null;
            /**
             * @description The hold expires (is released) after this many seconds.
             * @default 900
             */
            ttlSeconds?: number;
            /**
             * @description A capture above the hold: reject it (409), cap it at the hold, or charge it all (overflow: the balance may go below zero).
             * @default overflow
             * @enum {string}
             */
            overCapture?: "reject" | "cap" | "overflow";
            /** @default null */
            details?: {
                [key: string]: unknown;
            } | null;
        };
        /**
         * HoldResponse
         * @description A hold as it is now, and its user's balance. `Idempotent-Replayed: true` when the request
         *     changed nothing (the same hold placed again, a capture or release of a resolved hold).
         */
        HoldResponse: {
            hold: components["schemas"]["HoldView"];
            balance: components["schemas"]["BalanceView"];
            /** @description The request's id, as in the `x-request-id` header: the caller's own when it sent a sane one (`[A-Za-z0-9._:-]{1,128}`), else one made up. Every log line of the request carries it. */
            requestId: string;
        };
        /** HoldView */
        HoldView: {
            id: string;
            clerkUserId: string;
            credits: number;
            /** @enum {string} */
            status: "held" | "captured" | "released" | "expired";
            /** Format: date-time */
            expiresAt: string;
            /** Format: date-time */
            createdAt: string;
            /** @default null */
            captured: number | null;
            /**
             * @description The capture's "UsageHistory" id.
             * @default null
             */
            usageId: string | null;
            /** @default null */
            resolvedAt: string | null;
            /** @default null */
            resolvedBy: string | null;
        };
        /**
         * InsufficientCredits
         * @description 402 from POST /v1/holds: the user has fewer credits available than asked. Nothing held:
         *     don't start the work.
         */
        InsufficientCredits: {
            /** @constant */
            error: "insufficient_credits";
            /** @description What went wrong, for people. */
            detail: string;
            /** @description The request's id, as in the `x-request-id` header: the caller's own when it sent a sane one (`[A-Za-z0-9._:-]{1,128}`), else one made up. Every log line of the request carries it. */
            requestId: string;
            /** @description What a hold may take now. */
            available: number;
        };
        /** Movement */
        Movement: {
            /** @description The journal key (the event id, or hold/…, capture/…, grant/…). */
            id: string;
            kind: string;
            /** @description The balance change: negative spent, positive given. */
            credits: number;
            /** @default null */
            reference: string | null;
            /** @default null */
            reason: string | null;
            /** Format: date-time */
            at: string;
        };
        /**
         * MovementsResponse
         * @description One page of a user's journal movements, newest first.
         */
        MovementsResponse: {
            movements: components["schemas"]["Movement"][];
            /**
             * @description Pass as ?cursor= for the next (older) page.
             * @default null
             */
            nextCursor: string | null;
            /** @description The request's id, as in the `x-request-id` header: the caller's own when it sent a sane one (`[A-Za-z0-9._:-]{1,128}`), else one made up. Every log line of the request carries it. */
            requestId: string;
        };
        /**
         * OverCapture
         * @description 409 from a capture above the hold when the hold's `overCapture` is `reject`. The hold is
         *     still open: capture at most `held`, or release it.
         */
        OverCapture: {
            /** @constant */
            error: "over_capture";
            /** @description What went wrong, for people. */
            detail: string;
            /** @description The request's id, as in the `x-request-id` header: the caller's own when it sent a sane one (`[A-Za-z0-9._:-]{1,128}`), else one made up. Every log line of the request carries it. */
            requestId: string;
            held: number;
            requested: number;
        };
        /**
         * StorageObjectCreated
         * @description A file was uploaded: insert its "StorageObject" once (`id` is the row's id). It is then
         *     the one live row of its user and pathname: an upload over the same pathname (a new id)
         *     soft-deletes the previous one.
         */
        StorageObjectCreated: {
            /**
             * @default 1
             * @constant
             */
            version?: 1;
            /** @description Idempotency key: 1-191 characters of [A-Za-z0-9_:.-]. */
            id: string;
            clerkUserId: string;
            /**
             * @description discriminator enum property added by openapi-typescript
             * @enum {string}
             */
            type: "storage.object_created";
            /** @default vercel_blob */
            provider?: string;
            url: string;
            pathname: string;
            name: string;
            /** @default null */
            contentType?: string | null;
            /**
             * @description Bytes. Absent -> the worker reads it with HTTP HEAD on `url`, and the event waits (no_size) until it can.
             * @default null
             */
            size?: number | null;
            /**
             * @description When it was uploaded. Absent -> when the worker inserts it.
             * @default null
             */
            createdAt?: string | null;
        };
        /**
         * StorageObjectDeleted
         * @description Soft-delete a "StorageObject" of this user (`id` is the object's id): once per object and
         *     user, whatever `deletedAt` a retry carries; another user's delete is refused (`not_owner`).
         *     A delete that arrives before its create is kept and applied when the create lands.
         */
        StorageObjectDeleted: {
            /**
             * @default 1
             * @constant
             */
            version?: 1;
            /** @description Idempotency key: 1-191 characters of [A-Za-z0-9_:.-]. */
            id: string;
            clerkUserId: string;
            /**
             * @description discriminator enum property added by openapi-typescript
             * @enum {string}
             */
            type: "storage.object_deleted";
            /**
             * Format: date-time
             * @description ISO-8601 with a time zone; stored as UTC.
             */
            deletedAt: string;
        };
        /**
         * UsageRecorded
         * @description An AI operation happened: debit its cost and write a "UsageHistory" row.
         */
        UsageRecorded: {
            /**
             * @default 1
             * @constant
             */
            version?: 1;
            /** @description Idempotency key: 1-191 characters of [A-Za-z0-9_:.-]. */
            id: string;
            clerkUserId: string;
            /**
             * @description discriminator enum property added by openapi-typescript
             * @enum {string}
             */
            type: "usage.recorded";
            /**
             * @description A label of the app's "OperationType" enum, as the database has it now: a label the database lacks waits (unknown_operation_type) until a migration adds it.
             * @example AI_TEXT_CHAT
             * @example AI_IMAGE_GENERATION
             */
            operationType: string;
            /**
             * @description Cost; absent -> "AdminSettings".featureCosts, then code defaults.
             * @default null
             */
            credits?: number | null;
            /** @default null */
            details?: {
                [key: string]: unknown;
            } | null;
            /**
             * Format: date-time
             * @description ISO-8601 with a time zone; stored as UTC.
             */
            occurredAt: string;
            /**
             * @description The hold (POST /v1/holds) this usage captures: the usage is charged against it and the rest of the hold is released. A hold that expired or was released meanwhile: recorded as a plain usage.
             * @default null
             */
            holdId?: string | null;
        };
        /**
         * UsageRefunded
         * @description Give back some or all of a usage's credits (a negative "UsageHistory" row).
         */
        UsageRefunded: {
            /**
             * @default 1
             * @constant
             */
            version?: 1;
            /** @description Idempotency key: 1-191 characters of [A-Za-z0-9_:.-]. */
            id: string;
            clerkUserId: string;
            /**
             * @description discriminator enum property added by openapi-typescript
             * @enum {string}
             */
            type: "usage.refunded";
            /** @description Idempotency key: 1-191 characters of [A-Za-z0-9_:.-]. */
            refundOf: string;
            /**
             * @description Credits to give back; absent -> everything not yet refunded.
             * @default null
             */
            credits?: number | null;
            /** @default null */
            occurredAt?: string | null;
        };
        /**
         * UserCreated
         * @description A Clerk user signed up: "User" + "CreditBalance", and the starter credits once per Clerk
         *     user id (a journal movement `starter/<clerkUserId>`).
         */
        UserCreated: {
            /**
             * @default 1
             * @constant
             */
            version?: 1;
            /** @description Idempotency key: 1-191 characters of [A-Za-z0-9_:.-]. */
            id: string;
            clerkUserId: string;
            /**
             * @description The primary email address.
             * @default null
             */
            email?: string | null;
            /** @default null */
            name?: string | null;
            /**
             * Format: date-time
             * @description The profile's version (Clerk's updated_at): older never overwrites newer.
             */
            updatedAt: string;
            /**
             * @description When the Clerk user was created (Clerk's created_at): "User".createdAt when the worker creates the row; absent -> when it inserts it. Not part of the payload hash.
             * @default null
             */
            createdAt?: string | null;
            /**
             * @description discriminator enum property added by openapi-typescript
             * @enum {string}
             */
            type: "user.created";
        };
        /**
         * UserDeleted
         * @description A Clerk user was deleted: "User".isActive = false for good, email and name cleared (the
         *     address is free for a new sign-up); no row is deleted.
         */
        UserDeleted: {
            /**
             * @default 1
             * @constant
             */
            version?: 1;
            /** @description Idempotency key: 1-191 characters of [A-Za-z0-9_:.-]. */
            id: string;
            clerkUserId: string;
            /**
             * @description discriminator enum property added by openapi-typescript
             * @enum {string}
             */
            type: "user.deleted";
            /**
             * Format: date-time
             * @description ISO-8601 with a time zone; stored as UTC.
             */
            deletedAt: string;
        };
        /**
         * UserUpdated
         * @description A Clerk user's email or name changed (creates the user too if its create is late).
         */
        UserUpdated: {
            /**
             * @default 1
             * @constant
             */
            version?: 1;
            /** @description Idempotency key: 1-191 characters of [A-Za-z0-9_:.-]. */
            id: string;
            clerkUserId: string;
            /**
             * @description The primary email address.
             * @default null
             */
            email?: string | null;
            /** @default null */
            name?: string | null;
            /**
             * Format: date-time
             * @description The profile's version (Clerk's updated_at): older never overwrites newer.
             */
            updatedAt: string;
            /**
             * @description When the Clerk user was created (Clerk's created_at): "User".createdAt when the worker creates the row; absent -> when it inserts it. Not part of the payload hash.
             * @default null
             */
            createdAt?: string | null;
            /**
             * @description discriminator enum property added by openapi-typescript
             * @enum {string}
             */
            type: "user.updated";
        };
    };
    responses: never;
    parameters: {
        /** @description The hold's id (its idempotency key). */
        holdId: string;
        /** @description The user's Clerk id. */
        clerkUserId: string;
        /** @description The previous page's `nextCursor`; absent: the newest movements. */
        cursor: string;
        /** @description Movements per page. */
        limit: number;
    };
    requestBodies: never;
    headers: {
        /** @description The request's id (also `requestId` in every JSON body). */
        RequestId: string;
        /** @description Seconds to wait before retrying. */
        RetryAfter: number;
        /** @description `true` when the request changed nothing: the hold was placed, captured or released already, and this is its state now. */
        IdempotentReplayed: "true";
        /** @description Bearer realm="pedro-worker" */
        WWWAuthenticate: string;
    };
    pathItems: never;
}
export type $defs = Record<string, never>;
export interface operations {
    publishEvents: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["EventsRequest"];
            };
        };
        responses: {
            /** @description At least one event is queued; `results` has every event's result, in input order. */
            202: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["EventsAccepted"];
                };
            };
            /** @description `invalid_json`: the body is not JSON; `invalid_body`: not an event, an array or `{"events": [...]}`, or an empty batch. */
            400: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `unauthorized`: the bearer token is missing or not one of `PEDRO_API_TOKENS`. */
            401: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    "WWW-Authenticate": components["headers"]["WWWAuthenticate"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `payload_too_large`: the body is over `PEDRO_INGRESS_MAX_BODY_BYTES` (4 MiB); `batch_too_large`: more than `PEDRO_INGRESS_MAX_BATCH` (1000) events. */
            413: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description No event of the request is valid: nothing was queued. `results` says why, per event. */
            422: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["EventsRefused"];
                };
            };
            /** @description `internal_error`: an unexpected error (logged with the request id). */
            500: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `queue_unavailable` (`Retry-After`): Redis is unreachable, or fewer of its replicas than `PEDRO_REDIS_WAIT_REPLICAS` acknowledged in time; nothing was accepted — retry (the same ids: a copy that did reach Redis is then a duplicate); `not_configured`: the server has no `PEDRO_API_TOKENS`. */
            503: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    "Retry-After": components["headers"]["RetryAfter"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    placeHold: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["HoldRequest"];
            };
        };
        responses: {
            /** @description The hold (placed now, or before with the same request). */
            201: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    "Idempotent-Replayed": components["headers"]["IdempotentReplayed"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HoldResponse"];
                };
            };
            /** @description `invalid_json`: the body is not JSON. */
            400: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `unauthorized`: the bearer token is missing or not one of `PEDRO_API_TOKENS`. */
            401: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    "WWW-Authenticate": components["headers"]["WWWAuthenticate"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `insufficient_credits`: fewer credits available than asked; nothing held. */
            402: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["InsufficientCredits"];
                };
            };
            /** @description `unknown_user`: no such user (its `user.created` may not be in yet). */
            404: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `idempotency_conflict`: the id was used already for another request or event. */
            409: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `payload_too_large`: the body is over the limit. */
            413: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `validation_error`: the body breaks the contract; `unknown_operation_type`: the database's `"OperationType"` has no such label; `no_cost` / `bad_feature_cost`: no `credits` given and no usable cost configured for `operationType`. */
            422: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `internal_error`: an unexpected error (logged with the request id). */
            500: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `not_configured`: the server has no `PEDRO_API_TOKENS`, or no database for the credit API; `database_unavailable` (`Retry-After`): PostgreSQL is unreachable; `balance_busy` (`Retry-After`): another transaction holds the user's balance longer than `PEDRO_LOCK_WAIT_MS`. Retry after `Retry-After` seconds. */
            503: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    "Retry-After": components["headers"]["RetryAfter"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    getHold: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The hold's id (its idempotency key). */
                holdId: components["parameters"]["holdId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The hold and the user's balance. */
            200: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HoldResponse"];
                };
            };
            /** @description `unauthorized`: the bearer token is missing or not one of `PEDRO_API_TOKENS`. */
            401: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    "WWW-Authenticate": components["headers"]["WWWAuthenticate"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `unknown_hold`: no hold has this id; `not_found`: not a hold id at all. */
            404: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `internal_error`: an unexpected error (logged with the request id). */
            500: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `not_configured`: the server has no `PEDRO_API_TOKENS`, or no database for the credit API; `database_unavailable` (`Retry-After`): PostgreSQL is unreachable. Retry after `Retry-After` seconds. */
            503: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    "Retry-After": components["headers"]["RetryAfter"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    captureHold: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The hold's id (its idempotency key). */
                holdId: components["parameters"]["holdId"];
            };
            cookie?: never;
        };
        requestBody?: {
            content: {
                "application/json": components["schemas"]["CaptureRequest"];
            };
        };
        responses: {
            /** @description The hold as it is now and the user's balance. */
            200: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    "Idempotent-Replayed": components["headers"]["IdempotentReplayed"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HoldResponse"];
                };
            };
            /** @description `invalid_json`: the body is not JSON. */
            400: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `unauthorized`: the bearer token is missing or not one of `PEDRO_API_TOKENS`. */
            401: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    "WWW-Authenticate": components["headers"]["WWWAuthenticate"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `unknown_hold`: no hold has this id; `not_found`: not a hold id at all. */
            404: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `hold_expired`: the hold is past its expiry, its credits are back and nothing was charged; `over_capture`: more than held under `overCapture: reject` (the hold stays open); `balance_out_of_range`: the balance would leave PostgreSQL's integer range. */
            409: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HoldExpired"] | components["schemas"]["OverCapture"] | components["schemas"]["ErrorBody"];
                };
            };
            /** @description `payload_too_large`: the body is over the limit. */
            413: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `validation_error`: the body breaks the contract; `operation_type_required`: neither the hold nor the capture names an `operationType`; `unknown_operation_type`. */
            422: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `internal_error`: an unexpected error (logged with the request id). */
            500: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `not_configured`: the server has no `PEDRO_API_TOKENS`, or no database for the credit API; `database_unavailable` (`Retry-After`): PostgreSQL is unreachable; `balance_busy` (`Retry-After`): another transaction holds the user's balance longer than `PEDRO_LOCK_WAIT_MS`. Retry after `Retry-After` seconds. */
            503: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    "Retry-After": components["headers"]["RetryAfter"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    releaseHold: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The hold's id (its idempotency key). */
                holdId: components["parameters"]["holdId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The hold as it is now and the user's balance. */
            200: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    "Idempotent-Replayed": components["headers"]["IdempotentReplayed"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HoldResponse"];
                };
            };
            /** @description `unauthorized`: the bearer token is missing or not one of `PEDRO_API_TOKENS`. */
            401: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    "WWW-Authenticate": components["headers"]["WWWAuthenticate"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `unknown_hold`: no hold has this id; `not_found`: not a hold id at all. */
            404: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `internal_error`: an unexpected error (logged with the request id). */
            500: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `not_configured`: the server has no `PEDRO_API_TOKENS`, or no database for the credit API; `database_unavailable` (`Retry-After`): PostgreSQL is unreachable; `balance_busy` (`Retry-After`): another transaction holds the user's balance longer than `PEDRO_LOCK_WAIT_MS`. Retry after `Retry-After` seconds. */
            503: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    "Retry-After": components["headers"]["RetryAfter"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    getBalance: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The user's Clerk id. */
                clerkUserId: components["parameters"]["clerkUserId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The balance. */
            200: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["BalanceResponse"];
                };
            };
            /** @description `unauthorized`: the bearer token is missing or not one of `PEDRO_API_TOKENS`. */
            401: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    "WWW-Authenticate": components["headers"]["WWWAuthenticate"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `unknown_user`: no such user (its `user.created` may not be in yet); `not_found`: not a Clerk user id at all. */
            404: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `internal_error`: an unexpected error (logged with the request id). */
            500: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `not_configured`: the server has no `PEDRO_API_TOKENS`, or no database for the credit API; `database_unavailable` (`Retry-After`): PostgreSQL is unreachable. Retry after `Retry-After` seconds. */
            503: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    "Retry-After": components["headers"]["RetryAfter"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    listMovements: {
        parameters: {
            query?: {
                /** @description The previous page's `nextCursor`; absent: the newest movements. */
                cursor?: components["parameters"]["cursor"];
                /** @description Movements per page. */
                limit?: components["parameters"]["limit"];
            };
            header?: never;
            path: {
                /** @description The user's Clerk id. */
                clerkUserId: components["parameters"]["clerkUserId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description One page of movements. */
            200: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MovementsResponse"];
                };
            };
            /** @description `invalid_cursor`: not a cursor this API gave; `invalid_limit`: not 1..200. */
            400: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `unauthorized`: the bearer token is missing or not one of `PEDRO_API_TOKENS`. */
            401: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    "WWW-Authenticate": components["headers"]["WWWAuthenticate"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `unknown_user`: no such user (its `user.created` may not be in yet); `not_found`: not a Clerk user id at all. */
            404: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `internal_error`: an unexpected error (logged with the request id). */
            500: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description `not_configured`: the server has no `PEDRO_API_TOKENS`, or no database for the credit API; `database_unavailable` (`Retry-After`): PostgreSQL is unreachable. Retry after `Retry-After` seconds. */
            503: {
                headers: {
                    "x-request-id": components["headers"]["RequestId"];
                    "Retry-After": components["headers"]["RetryAfter"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
}
