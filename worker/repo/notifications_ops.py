"""What ops read and change of the outbox (`sql/queries/notifications_ops.sql`): notifications
listed and shown (`pedro-worker notifications …`), deliveries sent again, one user's latest
(`user show`), and the pending, failed and delivered counts (dashboard, `/metrics`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .. import db


@dataclass(frozen=True)
class Delivery:
    """One notification's delivery to one endpoint."""

    seq: int
    endpoint: str
    status: str  # pending, delivered, failed
    attempts: int
    next_at: datetime  # due; while in flight, when the dispatcher's lease ends
    in_flight: bool
    last_attempt_at: datetime | None
    last_status: int | None  # the receiver's HTTP status (None: no answer)
    last_error: str | None
    delivered_at: datetime | None
    failed_at: datetime | None


@dataclass(frozen=True)
class Notification:
    seq: int
    webhook_id: str
    type: str
    clerk_user_id: str | None
    created_at: datetime
    key: str | None = None  # `get_notification` only
    data: str | None = None  # JSON text (`get_notification` only)


@dataclass(frozen=True)
class Listed:
    """A line of `notifications list`: a notification and one of its deliveries (None: no
    endpoint took it)."""

    notification: Notification
    delivery: Delivery | None


@dataclass(frozen=True)
class PendingNotifications:
    endpoint: str
    pending: int
    due: int  # due now: waiting for a dispatcher or behind their lane's head
    in_flight: int
    oldest: datetime | None  # when the oldest pending notification was written


@dataclass(frozen=True)
class FailedNotifications:
    endpoint: str
    failed: int  # failed for good, now
    recent: int  # of which the last attempt was since the date asked


def _delivery(r: asyncpg.Record) -> Delivery:
    return Delivery(
        r["seq"], r["endpoint"], r["status"], r["attempts"], r["next_at"], r["in_flight"],
        r["last_attempt_at"], r["last_status"], r["last_error"], r["delivered_at"], r["failed_at"],
    )  # fmt: skip


def _notification(r: asyncpg.Record) -> Notification:
    return Notification(r["seq"], r["webhook_id"], r["type"], r["clerk_user_id"], r["created_at"],
                        r.get("key"), r.get("data"))  # fmt: skip


def _listed(r: asyncpg.Record) -> Listed:
    return Listed(_notification(r), None if r["endpoint"] is None else _delivery(r))


async def list_notifications(
    conn: asyncpg.Connection, *, status: str | None, notice_type: str | None, clerk_user_id: str | None,
    endpoint: str | None, limit: int, count_up_to: int,
) -> tuple[list[Listed], int]:  # fmt: skip
    """Deliveries newest first (matching every filter given), and how many match, counted up
    to `count_up_to`."""
    rows = await db.fetch(conn, "list_ops_notifications", status, notice_type, clerk_user_id, endpoint,
                          limit, count_up_to)  # fmt: skip
    return [_listed(r) for r in rows], rows[0]["matching"] if rows else 0


async def get_notification(conn: asyncpg.Connection, ref: str) -> Notification | None:
    """By seq (digits), webhook id (`msg_…`) or key."""
    seq = int(ref) if ref.isdigit() and len(ref) < 19 else None
    row = await db.fetchrow(conn, "get_ops_notification", seq, ref)
    return None if row is None else _notification(row)


async def list_deliveries(conn: asyncpg.Connection, seq: int) -> list[Delivery]:
    """A notification's deliveries, by endpoint name."""
    return [_delivery(r) for r in await db.fetch(conn, "list_ops_notification_deliveries", seq)]


async def list_deliveries_of(conn: asyncpg.Connection, seqs: Sequence[int]) -> list[Delivery]:
    return [_delivery(r) for r in await db.fetch(conn, "list_ops_deliveries_of", list(seqs))]


async def list_failed_deliveries(
    conn: asyncpg.Connection, *, endpoint: str | None, since: datetime | None
) -> list[Listed]:
    """Failed deliveries (to this endpoint, last tried since then), oldest first."""
    rows = await db.fetch(conn, "list_failed_notification_deliveries", endpoint, since)
    return [_listed(r) for r in rows]


async def redeliver(conn: asyncpg.Connection, keys: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    """These (seq, endpoint) deliveries back to pending, due now, unless pending already.
    Returns those that were."""
    if not keys:
        return []
    seqs, endpoints = (list(c) for c in zip(*keys, strict=True))
    rows = await db.fetch(conn, "redeliver_notification_deliveries", seqs, endpoints)
    return [(r["seq"], r["endpoint"]) for r in rows]


async def list_user_notifications(
    conn: asyncpg.Connection, clerk_user_id: str, limit: int
) -> tuple[list[Notification], int]:
    """The user's last `limit` notifications, newest first, and how many it has."""
    rows = await db.fetch(conn, "list_user_notifications", clerk_user_id, limit)
    return [_notification(r) for r in rows], rows[0]["total"] if rows else 0


async def summarize_pending(conn: asyncpg.Connection, now: datetime) -> list[PendingNotifications]:
    """Pending deliveries per endpoint (endpoints with none left out)."""
    rows = await db.fetch(conn, "summarize_pending_notifications", now)
    return [PendingNotifications(r["endpoint"], r["pending"], r["due"], r["in_flight"], r["oldest"])
            for r in rows]  # fmt: skip


async def summarize_failed(conn: asyncpg.Connection, since: datetime) -> list[FailedNotifications]:
    """Failed deliveries per endpoint (endpoints with none left out)."""
    rows = await db.fetch(conn, "summarize_failed_notifications", since)
    return [FailedNotifications(r["endpoint"], r["failed"], r["recent"]) for r in rows]


async def list_latest_failures(conn: asyncpg.Connection, limit: int) -> list[Listed]:
    """The last `limit` failed deliveries, the latest attempt first."""
    return [_listed(r) for r in await db.fetch(conn, "list_latest_notification_failures", limit)]


async def count_delivered(conn: asyncpg.Connection, since: datetime) -> dict[str, int]:
    """Deliveries delivered since `since`, per notification type (types with none left out)."""
    return {r["type"]: r["delivered"] for r in await db.fetch(conn, "count_delivered_notifications", since)}
