"""Builders and readers for the user, billing and storage event families."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import redis

from tests.integration.helpers import T0
from worker.settings import Settings

_seq = itertools.count()


def at(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def user_created(clerk: str, *, t: int = 0, email: str | None = None, name: str | None = None,
                 id: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {"type": "user.created", "id": id or f"msg_c{next(_seq)}", "clerkUserId": clerk,
            "email": email, "name": name, "updatedAt": at(t)}  # fmt: skip


def user_updated(clerk: str, *, t: int, email: str | None = None, name: str | None = None,
                 id: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {**user_created(clerk, t=t, email=email, name=name, id=id or f"msg_u{next(_seq)}"),
            "type": "user.updated"}  # fmt: skip


def user_deleted(clerk: str, *, t: int, id: str | None = None) -> dict[str, Any]:
    return {
        "type": "user.deleted",
        "id": id or f"msg_d{next(_seq)}",
        "clerkUserId": clerk,
        "deletedAt": at(t),
    }


def billing(event_type: str, *, id: str | None = None, clerk: str | None = "user_pay", t: int = 0,
            payment: str | None = "pay_1", subscription: str | None = "sub_1", plan: str | None = "plan_pro",
            status: str = "RECEIVED") -> dict[str, Any]:  # fmt: skip
    event = {"type": "billing.event", "id": id or f"evt_{next(_seq)}&{next(_seq)}", "eventType": event_type,
             "status": status, "occurredAt": at(t), "paymentId": payment, "subscriptionId": subscription,
             "planId": plan, "clerkUserId": clerk, "metadata": {"event": event_type}}  # fmt: skip
    return {k: v for k, v in event.items() if v is not None}


def object_created(object_id: str, clerk: str, *, size: int = 1000, t: int = 0) -> dict[str, Any]:
    return {"type": "storage.object_created", "id": object_id, "clerkUserId": clerk,
            "url": f"https://blob.example/{object_id}.png", "pathname": f"uploads/{object_id}.png",
            "name": f"{object_id}.png", "contentType": "image/png", "size": size, "createdAt": at(t)}  # fmt: skip


def object_deleted(object_id: str, clerk: str, *, t: int = 60) -> dict[str, Any]:
    return {
        "type": "storage.object_deleted",
        "id": object_id,
        "clerkUserId": clerk,
        "deletedAt": at(t),
    }


async def user_row(conn: asyncpg.Connection, clerk: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        'SELECT u."clerkId", u.email, u.name, u."isActive", cb."creditsRemaining" AS credits '
        'FROM "User" u LEFT JOIN "CreditBalance" cb ON cb."userId" = u.id WHERE u."clerkId" = $1', clerk,
    )  # fmt: skip
    return dict(row) if row else None


async def plan(
    conn: asyncpg.Connection, plan_id: str, credits: int, *, asaas_id: str | None = None,
    billing_source: str = "manual", monthly_cents: int | None = None, yearly_cents: int | None = None,
) -> None:
    await conn.execute(
        'INSERT INTO "Plan" (id, "asaasId", name, credits, "billingSource", "priceMonthlyCents", '
        '"priceYearlyCents", "updatedAt") VALUES ($1, $2, $1, $3, $4, $5, $6, now())',
        plan_id, asaas_id, credits, billing_source, monthly_cents, yearly_cents,
    )  # fmt: skip


async def journal(conn: asyncpg.Connection) -> list[tuple[str, str, int]]:
    rows = await conn.fetch(
        "SELECT event_id, kind, delta FROM worker.journal ORDER BY created_at, event_id"
    )
    return [(r["event_id"], r["kind"], r["delta"]) for r in rows]


def dead_letters(settings: Settings, queue: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(settings.require_redis_url())
    return [json.loads(m) for m in client.hvals(f"{settings.redis_namespace}:{queue}.XQ.msgs")]


def queued_messages(settings: Settings) -> int:
    """Messages waiting in any queue of the test's namespace (nothing consumes them)."""
    client = redis.Redis.from_url(settings.require_redis_url())
    return sum(
        client.hlen(f"{settings.redis_namespace}:{q}.msgs")
        for q in ("usage", "users", "billing", "storage")
    )


def naive(value: datetime) -> datetime:
    return value.replace(tzinfo=None)
