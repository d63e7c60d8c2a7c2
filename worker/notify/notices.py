"""What a change notifies: pure rules, no I/O (tests/unit/test_notices.py).

A notice has a key that names what it reports, once ever (the outbox keeps one row per key,
worker/notify/outbox.py): a movement's notice is keyed by the movement's journal key, which is
itself written once, so a redelivered event cannot notify twice. A low balance is keyed by the
user, the threshold and the period: it fires when the balance crosses the threshold downward,
at most once per threshold per period, however often the balance goes back and forth across it.

A period starts with each grant that brings credits: the user's newest live grant names it (a
plan renewal, a pack, the starter credits; one the transaction itself expired still counts). A
percentage threshold is of the user's newest live plan grant; a user with none has only the
absolute thresholds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..ledger.decide import Account, Plan
from ..ledger.grants import OVERDRAFT, Wallet
from .config import Threshold

GRANTED_KINDS = frozenset({"grant", "grant_start", "starter", "grant_restore"})
_QUIET_KINDS = frozenset({"usage", "hold", "capture", "refund"})  # never a notice of their own
HOLD_EXPIRED_REASON = "hold expired"  # the reason of a `release` movement made at a hold's expiry


@dataclass(frozen=True, slots=True)
class Notice:
    key: str  # what it reports, once ever
    type: str
    clerk_user_id: str | None  # the user it is about: its delivery lane
    data: dict[str, Any]

    @property
    def webhook_id(self) -> str:
        """Stable across every attempt and every endpoint: the receiver dedupes on it."""
        return "msg_" + hashlib.sha256(self.key.encode()).hexdigest()[:32]


def _user(account: Account) -> dict[str, Any]:
    return {"userId": account.user_id, "clerkUserId": account.clerk_user_id}


def period_of(wallet: Wallet | None) -> tuple[str, int | None]:
    """(the period: the newest live grant's id, the newest live plan grant's credits). A grant
    the transaction ended (expired) still counts: a crossing its expiry causes is its period's."""
    newest = plan = None
    grants = [*wallet.grants.values(), *wallet.ended.values()] if wallet is not None else ()
    for g in grants:
        if g.source == OVERDRAFT:
            continue
        if newest is None or g.effective >= newest.effective:
            newest = g
        if g.source == "plan" and (plan is None or g.effective >= plan.effective):
            plan = g
    return (newest.grant_id if newest is not None else "none", plan.amount if plan is not None else None)


def crossings(
    account: Account, before: int, after: int, thresholds: Sequence[Threshold], wallet: Wallet | None,
    cause: str,
) -> list[Notice]:
    """credits.low for each threshold the balance crossed downward (before > t >= after), and
    credits.depleted when it reached zero or less from above. `cause`: the journal key of the
    user's last movement in the transaction."""
    if after >= before:
        return []
    notices = []
    period: str | None = None
    plan_credits: int | None = None
    for t in thresholds:
        if period is None and t.percent:
            period, plan_credits = period_of(wallet)
        limit = t.credits(plan_credits)
        if limit is not None and before > limit >= after:
            if period is None:  # read only when something crossed: the usual batch crosses nothing
                period, plan_credits = period_of(wallet)
            notices.append(Notice(
                f"credits.low/{account.clerk_user_id}/{t.label}/{period}", "credits.low", account.clerk_user_id,
                {**_user(account), "balance": after, "previousBalance": before, "threshold": limit,
                 "thresholdSetting": t.label, "planCredits": plan_credits, "period": period, "cause": cause},
            ))  # fmt: skip
    if before > 0 >= after:
        notices.append(Notice(f"credits.depleted/{cause}", "credits.depleted", account.clerk_user_id,
                              {**_user(account), "balance": after, "previousBalance": before, "cause": cause}))
    return notices


def movement(account: Account, row: tuple, balance: int) -> Notice | None:
    """The notice of one journal movement (key, user, kind, delta, refund_of, reference, reason, …),
    if it is one the app hears of. `balance`: the user's balance after the transaction."""
    key, _, kind, delta, _, reference, reason = row[:7]
    if delta > 0 and (kind in GRANTED_KINDS or kind == "adjustment"):
        notice_type = "credits.granted"
    elif kind == "grant_reversal" and delta < 0:
        notice_type = "credits.reversed"
    elif kind == "grant_expiry" and delta < 0:
        notice_type = "credits.expired"
    elif kind == "release" and reason == HOLD_EXPIRED_REASON:
        return Notice(f"hold.expired/{reference}", "hold.expired", account.clerk_user_id,
                      {**_user(account), "holdId": reference, "credits": delta, "balance": balance})
    else:
        return None
    return Notice(f"{notice_type}/{key}", notice_type, account.clerk_user_id,
                  {**_user(account), "credits": abs(delta), "kind": kind, "reference": reference,
                   "reason": reason, "movement": key, "balance": balance})  # fmt: skip


def from_plan(plan: Plan, accounts: Iterable[Account], thresholds: Sequence[Threshold]) -> list[Notice]:
    """Every notice of a ledger plan: its movements', then its balances' crossings. `accounts`:
    the locked balances the plan changes, as they were before it."""
    if not plan.journal_rows:
        return []
    by_user = {a.user_id: a for a in accounts}
    delta: dict[str, int] = {}
    last: dict[str, str] = {}  # user -> its last movement's key
    moved: list[tuple] = []  # the movements that may notify (not the usual usage, hold, capture, refund)
    for row in plan.journal_rows:
        user_id = row[1]
        delta[user_id] = delta.get(user_id, 0) + row[3]
        last[user_id] = row[0]
        if row[2] not in _QUIET_KINDS:
            moved.append(row)
    after = {u: (by_user[u].balance if u in by_user else 0) + d for u, d in delta.items()}
    notices = []
    for row in moved:
        account = by_user.get(row[1])
        if account is not None:
            notice = movement(account, row, after[row[1]])
            if notice is not None:
                notices.append(notice)
    for user_id, balance in after.items():
        account = by_user.get(user_id)
        if account is not None and balance < account.balance:
            notices += crossings(account, account.balance, balance, thresholds,
                                 plan.wallets.get(account.clerk_user_id), last[user_id])  # fmt: skip
    return notices


def rejected(rejections: Sequence[tuple]) -> list[Notice]:
    """usage.rejected for stored rejections (event_id, event_type, reason, detail, payload JSON)."""
    notices = []
    for event_id, event_type, reason, detail, payload in rejections:
        try:
            raw = json.loads(payload)
        except ValueError:
            raw = None
        clerk = raw.get("clerkUserId") if isinstance(raw, dict) else None
        clerk = clerk if isinstance(clerk, str) else None
        ref = event_id if event_id is not None else "sha256:" + hashlib.sha256(payload.encode()).hexdigest()
        notices.append(Notice(f"usage.rejected/{ref}/{reason}", "usage.rejected", clerk,
                              {"eventId": event_id, "eventType": event_type, "clerkUserId": clerk,
                               "reason": reason, "detail": detail}))  # fmt: skip
    return notices


def provisioned(user_id: str, clerk_user_id: str, email: str | None, starter: int, starter_key: str | None,
                balance: int, active: bool = True) -> list[Notice]:  # fmt: skip
    """user.provisioned (unless the user was deleted before it was created), and credits.granted
    for the starter credits when they were granted (even then: they are in its balance)."""
    account = Account("", user_id, clerk_user_id, balance)
    notices = [Notice(f"user.provisioned/{clerk_user_id}", "user.provisioned", clerk_user_id,
                      {**_user(account), "email": email, "starterCredits": starter if starter_key else 0})]
    if not active:
        notices = []
    if starter_key and starter > 0:
        notices.append(Notice(f"credits.granted/{starter_key}", "credits.granted", clerk_user_id,
                              {**_user(account), "credits": starter, "kind": "starter", "reference": clerk_user_id,
                               "reason": "starter credits", "movement": starter_key, "balance": balance}))
    return notices


def expiring(grant_id: str, user_id: str, clerk_user_id: str | None, source: str, credits: int,
             expires_at: datetime) -> Notice:  # fmt: skip
    """credits.expiring: a live grant with credits left expires soon (once per grant)."""
    return Notice(f"credits.expiring/{grant_id}", "credits.expiring", clerk_user_id,
                  {"userId": user_id, "clerkUserId": clerk_user_id, "grantId": grant_id, "source": source,
                   "credits": credits, "expiresAt": expires_at.isoformat()})  # fmt: skip


def waited(event_id: str, family: str, event_type: str, clerk_user_id: str | None, reason: str,
           waits_for: str, detail: str | None, since: datetime) -> Notice:  # fmt: skip
    """event.waiting: an event has waited longer than the setting (once per event)."""
    return Notice(f"event.waiting/{event_id}", "event.waiting", clerk_user_id,
                  {"eventId": event_id, "family": family, "eventType": event_type, "clerkUserId": clerk_user_id,
                   "reason": reason, "waitsFor": waits_for, "detail": detail, "since": since.isoformat()})


def for_endpoints(notices: Sequence[Notice], takes: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(notice key, endpoint name) for every endpoint whose filter takes the notice."""
    return [(n.key, name) for n in notices for name, endpoint in takes.items() if endpoint.takes(n.type)]
