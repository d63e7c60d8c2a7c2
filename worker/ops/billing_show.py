"""`pedro-worker billing show PAYMENT_ID`: one Asaas payment as the worker knows it, for ops.

Its facts (worker.billing_payment), its grant and the journal movements that carry it, its
"SubscriptionEvent" rows, its events that waited or wait in worker.waiting, the rejections of
those events, its subscription's state and plan history, and its user's balance and debt. A
payment is unknown when none of these mention it (an event that waits has no facts stored yet,
but it is shown: it is often why an operator looks). Emails are masked as the logs mask them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from .. import clock
from ..repo import billing_ops as repo
from ..repo.accounts import find_user_account
from ..repo.waiting_ops import OPEN_STATES
from .text import cell, format_age, utc_time
from .waiting import age_seconds


def _json(row: asyncpg.Record | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in dict(row).items()}


def _first(*values: str | None) -> str | None:
    return next((v for v in values if v), None)


async def payment_view(conn: asyncpg.Connection, payment_id: str) -> dict[str, Any] | None:
    """What `billing show` prints, as JSON values; None when nothing mentions the payment."""
    facts = await repo.find_payment_facts(conn, payment_id)
    waiting = await repo.list_payment_waiting(conn, payment_id)
    ids = repo.grant_ids(payment_id, facts["installment_id"] if facts else None)
    grants = await repo.list_payment_grants(conn, ids)
    events = await repo.list_payment_subscription_events(
        conn, payment_id, [w["event_id"] for w in waiting]
    )
    if facts is None and not grants and not waiting and not events:
        return None
    clerk = _first(
        facts["clerk_user_id"] if facts else None, *(g["clerk_user_id"] for g in grants),
        *(w["clerk_user_id"] for w in waiting), *(e["clerk_user_id"] for e in events),
    )  # fmt: skip
    account = await find_user_account(conn, clerk) if clerk else None
    user_ids = {g["user_id"] for g in grants} | ({account.user_id} if account else set())
    movements = await repo.list_grant_movements(conn, ids, sorted(user_ids)) if user_ids else []
    event_ids = list(dict.fromkeys(r["event_id"] for r in [*events, *waiting]))
    customer_id = facts["customer_id"] if facts else None
    subscription_id = facts["subscription_id"] if facts else None
    now = clock.now()
    return {
        "payment_id": payment_id,
        "payment": _json(facts),
        "clerk_user_id": clerk,
        "user": None if account is None else {
            "id": account.user_id, "is_active": account.is_active, "balance": account.balance,
            "debt": account.debt,
        },
        "customer": _json(await repo.find_customer(conn, customer_id)) if customer_id else None,
        "grants": [_json(g) for g in grants],
        "allowances": [_json(a) for a in await repo.list_payment_allowances(conn, ids)],
        "movements": [_json(m) for m in movements],
        "subscription_events": [_json(e) for e in events],
        "waiting": [_waiting(w, now) for w in waiting],
        "rejections": [_json(r) for r in await repo.list_event_rejections(conn, event_ids)],
        "subscription": await _subscription(conn, subscription_id) if subscription_id else None,
    }  # fmt: skip


async def _subscription(conn: asyncpg.Connection, subscription_id: str) -> dict[str, Any] | None:
    """The subscription's state now and its plan history."""
    state = _json(await repo.find_subscription(conn, subscription_id))
    if state is not None:
        plans = await repo.list_subscription_plans(conn, subscription_id)
        state["plans"] = [_json(p) for p in plans]
    return state


def _waiting(row: asyncpg.Record, now: datetime) -> dict[str, Any]:
    shown = _json(row)
    assert shown is not None
    open_ = row["state"] in OPEN_STATES
    shown["age_s"] = age_seconds(row["first_waited_at"], now) if open_ else None  # None: decided
    return shown


def open_waiting_ids(view: dict[str, Any]) -> list[str]:
    """The payment's events still waiting (or released, not yet decided): what regrant releases."""
    return [w["event_id"] for w in view["waiting"] if w["state"] in OPEN_STATES]


# --- text --------------------------------------------------------------------------------------


def money(cents: int | None) -> str:
    """Cents as `49.90` (Asaas values are in reais)."""
    if cents is None:
        return "-"
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def _time(iso: str | None) -> str:
    return "-" if iso is None else utc_time(iso)


def _table(columns: Sequence[tuple[str, int]], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Indented table lines: a width per column (negative: right-aligned, 0: the last, free)."""

    def line(values: Sequence[Any]) -> str:
        cells = []
        for (_, width), value in zip(columns, values, strict=True):
            text = cell(value, abs(width) or 200)
            cells.append(text.rjust(-width) if width < 0 else text.ljust(width))
        return ("  " + "  ".join(cells)).rstrip()

    return [line([title for title, _ in columns])] + [line(r) for r in rows] if rows else ["  none"]


def _fact(name: str, value: Any) -> str:
    return f"  {name:<14} {'-' if value is None or value == '' else value}"


def _user(view: dict[str, Any]) -> str | None:
    user, clerk = view["user"], view["clerk_user_id"]
    if user is None:
        return None if clerk is None else f'{clerk}  (no "User" yet)'
    balance = "no CreditBalance row" if user["balance"] is None else user["balance"]
    state = "active" if user["is_active"] else "inactive"
    return f"{clerk}  id={user['id']}  {state}  balance {balance}  debt {user['debt']}"


def _facts_lines(view: dict[str, Any]) -> list[str]:
    p = view["payment"]
    lines = [f"payment {view['payment_id']}", _fact("user", _user(view))]
    if p is None:
        return lines + ["  no facts stored (none of its events was applied yet)"]
    customer, t = view["customer"], _time
    owner = f"  (user {customer['clerk_user_id']})" if customer else ""
    installment = p["installment_id"] and (
        f"{p['installment_id']}  ({p['installment_number'] or '?'} of "
        f"{p['installment_count'] or '?'})"
    )  # fmt: skip
    value = p["value_cents"] is not None and f"{money(p['value_cents'])}  (at {t(p['value_at'])})"
    paid = p["paid_at"] and t(p["paid_at"]) + (
        f"  (last {t(p['paid_last_at'])})" if p["paid_last_at"] not in (None, p["paid_at"]) else ""
    )  # fmt: skip
    refunded = "; ".join(
        ([money(p["refunded_cents"])] if p["refunded_cents"] is not None else [])
        + ([f"in full at {t(p['refunded_full_at'])}"] if p["refunded_full_at"] else [])
    )  # fmt: skip
    chargeback = p["chargeback_at"] and (
        f"{'open' if p['chargeback_open'] else 'closed'} (latest signal {t(p['chargeback_at'])})"
    )  # fmt: skip
    return lines + [
        _fact("customer", p["customer_id"] and p["customer_id"] + owner),
        _fact("subscription", p["subscription_id"]), _fact("installment", installment),
        _fact("payment link", p["payment_link_id"]), _fact("plan ref", p["plan_ref"]),
        _fact("plan override", p["plan_override"]),  # billing regrant --plan
        _fact("value", value or None), _fact("created", t(p["created_at"])),
        _fact("paid", paid), _fact("refunded", refunded),
        _fact("chargeback", chargeback),
        _fact("cash undone", t(p["cash_undone_at"])),
        _fact("updated", t(p["updated_at"])),
    ]  # fmt: skip


def text_lines(view: dict[str, Any]) -> list[str]:
    lines = _facts_lines(view) + ["", "grant"]
    lines += _table(
        [("GRANT ID", 24), ("KIND", 12), ("OUTCOME", 8), ("PLAN", 16), ("CYCLE", 10),
         ("CREDITS", -7), ("REVERSED", -8), ("DEBT", -6), ("GRANTED AT", 24), ("NOTE", 0)],
        [[g["grant_id"], g["kind"], g["outcome"], g["plan_id"], g["cycle"], g["credits"],
          g["reversed_credits"], g["debt_recorded"], _time(g["granted_at"]), g["note"]]
         for g in view["grants"]],
    )  # fmt: skip
    lines += ["", "allowances (credit grants)"]
    lines += _table(
        [("STATE", 8), ("REMAINING", -9), ("AMOUNT", -7), ("EXPIRED", -7), ("EFFECTIVE", 24),
         ("EXPIRES", 24), ("GRANT ID", 0)],
        [[a["state"], a["remaining"], a["amount"], a["expired"], _time(a["effective_at"]),
          _time(a["expires_at"]) if a["expires_at"] else "never", a["grant_id"]]
         for a in view["allowances"]],
    )  # fmt: skip
    lines += ["", "movements (oldest first)"]
    lines += _table(
        [("AT", 24), ("KIND", 14), ("DELTA", -8), ("REASON", 40), ("EVENT ID", 0)],
        [[_time(m["created_at"]), m["kind"], f"{m['delta']:+d}", m["reason"], m["event_id"]]
         for m in view["movements"]],
    )  # fmt: skip
    lines += ["", "subscription events (oldest first)"]
    lines += _table(
        [("OCCURRED AT", 24), ("EVENT TYPE", 34), ("STATUS", 12), ("PLAN KEY", 16), ("ID", 0)],
        [[_time(e["occurred_at"]), e["event_type"], e["status"], e["plan_key"], e["event_id"]]
         for e in view["subscription_events"]],
    )  # fmt: skip
    lines += ["", f"waiting events ({len(open_waiting_ids(view))} open)"]
    lines += _table(
        [("SINCE", 24), ("AGE", -7), ("STATE", 8), ("REASON", 20), ("WAITS FOR", 28),
         ("EVENT ID", 0)],
        [[_time(w["first_waited_at"]), None if w["age_s"] is None else format_age(w["age_s"]),
          w["state"], w["reason"], w["waits_for"], w["event_id"]] for w in view["waiting"]],
    )  # fmt: skip
    lines += ["", "rejections"]
    lines += _table(
        [("AT", 24), ("REASON", 28), ("EVENT ID", 28), ("DETAIL", 0)],
        [[_time(r["created_at"]), r["reason"], r["event_id"], r["detail"]]
         for r in view["rejections"]],
    )  # fmt: skip
    return lines + _subscription_lines(view["subscription"])


def _subscription_lines(s: dict[str, Any] | None) -> list[str]:
    if s is None:
        return []
    lines = [
        "", f"subscription {s['subscription_id']}",
        _fact("status", s["status"]), _fact("plan ref", s["plan_ref"]), _fact("cycle", s["cycle"]),
        _fact("value", None if s["value_cents"] is None else money(s["value_cents"])),
        _fact("next due", _time(s["next_due_date"])), _fact("as of", _time(s["state_at"])),
        "  plan history (oldest first)",
    ]  # fmt: skip
    return lines + [
        "  " + line
        for line in _table(
            [("EFFECTIVE AT", 24), ("PLAN REF", 16), ("CYCLE", 10), ("VALUE", -10),
             ("EVENT ID", 0)],
            [[_time(p["effective_at"]), p["plan_ref"], p["cycle"], money(p["value_cents"]),
              p["event_id"]] for p in s["plans"]],
        )
    ]  # fmt: skip
