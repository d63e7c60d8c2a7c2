"""Queue `users`: Clerk's user.created / user.updated / user.deleted, in any arrival order.

`worker.user_state` keeps, per Clerk user, the version (`updatedAt`) of the profile last applied
and when the user was deleted; it is locked first, so one user's events are decided one at a
time. Rules:

- created or updated: the user and its balance exist afterwards; email and name are written
  only if this profile is newer than the stored one and the user was not deleted;
- starter credits once per Clerk user id: the balance opens at 0 and the credits are the
  journal movement `starter/<clerkUserId>`, whose key allows one, ever;
- deleted: "User".isActive = false for good, email and name cleared (the address is free for a
  new sign-up); before the user exists it is remembered, and the user is then created inactive,
  without email or name; a profile arriving after the delete never writes them back;
- billing events recorded before the user existed ("SubscriptionEvent"."userId" NULL) get the
  user's id when a created or updated event makes sure it exists;
- an email another user holds never blocks an account: the user is created without it (an
  existing one keeps its previous email), the event applies with the note `email_conflict`, and
  a `worker.rejection` row of that reason lets ops see it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import asyncpg

from ..events import UserDeleted, user_event_adapter
from ..ledger.decide import APPLIED, Outcome
from ..repo import users as repo
from ..notify import notices, outbox
from ..settings import Settings
from .each import Family, reject

_EMAIL_UNIQUE = "User_email_key"
EMAIL_CONFLICT = "email_conflict"
STARTER_ALREADY_GRANTED = "starter_already_granted"


async def _delete(conn: asyncpg.Connection, event: UserDeleted, state: repo.UserState) -> Outcome:
    if state.deleted_at is None or event.deletedAt < state.deleted_at:
        await repo.save_user_state(conn, event.clerkUserId, deleted_at=event.deletedAt)
    if await repo.deactivate_user(conn, event.clerkUserId):
        return Outcome(event.id, APPLIED)
    known = state.profile_updated_at is not None or await repo.find_user_id(conn, event.clerkUserId)
    return Outcome(event.id, APPLIED, "already_inactive" if known else "deleted_before_created")


async def _write_profile(
    conn: asyncpg.Connection, event: Any, profile: repo.Profile
) -> tuple[str, str | None, bool]:
    """Upsert the user; an email another user holds is left out instead of failing the event.
    Returns (user id, balance created now, whether the email conflicted)."""
    try:
        # A savepoint: the unique violation undoes this statement only, not the event's claim.
        # Concurrent sign-ups with one address wait on each other's row here; the loser lands
        # in this same branch once the winner commits.
        async with conn.transaction():
            user_id, balance_id = await repo.upsert_user_profile(conn, event.clerkUserId, profile)
        return user_id, balance_id, False
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != _EMAIL_UNIQUE:
            raise
    existed = await repo.find_user_id(conn, event.clerkUserId) is not None
    without_email = dataclasses.replace(profile, email=None, write_email=False)
    user_id, balance_id = await repo.upsert_user_profile(conn, event.clerkUserId, without_email)
    detail = (
        f"the email of Clerk user {event.clerkUserId} belongs to another user: "
        + ("its previous email was kept" if existed else "the user was created without an email")
    )  # the address itself stays in the stored payload, never in a log line
    await reject(conn, event, event.id, EMAIL_CONFLICT, detail)
    return user_id, balance_id, True


async def _upsert(
    conn: asyncpg.Connection, event: Any, state: repo.UserState, settings: Settings
) -> Outcome:
    newer = state.profile_updated_at is None or event.updatedAt > state.profile_updated_at
    deleted = state.deleted_at is not None
    write = newer and not deleted
    profile = repo.Profile(
        email=event.email, name=event.name, write_email=write, write_name=write,
        active=not deleted, created_at=event.createdAt,
    )  # fmt: skip
    user_id, balance_id, conflict = await _write_profile(conn, event, profile)
    # billing events recorded before the user existed (or before the app created it) get its id
    await repo.link_subscription_events(conn, event.clerkUserId, user_id)
    starter_granted = True
    granted_now = False
    if balance_id is not None and settings.starter_credits:
        starter_granted = granted_now = await repo.grant_starter_credits(
            conn, event.clerkUserId, user_id, balance_id, settings.starter_credits
        )
    if balance_id is not None:  # written once per Clerk id (the notice's key)
        starter_key = f"starter/{event.clerkUserId}" if granted_now else None
        await outbox.record(conn, settings, notices.provisioned(
            user_id, event.clerkUserId, event.email, settings.starter_credits, starter_key,
            settings.starter_credits if granted_now else 0, active=not deleted))  # fmt: skip
    if newer:
        await repo.save_user_state(conn, event.clerkUserId, profile_updated_at=event.updatedAt)
    if conflict:
        note: str | None = EMAIL_CONFLICT
    elif not starter_granted:
        note = STARTER_ALREADY_GRANTED  # a new balance for a Clerk id that had them: it stays 0
    elif deleted:
        note = "user_deleted"
    else:
        note = None if newer else "older_profile_ignored"
    return Outcome(event.id, APPLIED, note)


async def apply_user_event(conn: asyncpg.Connection, event: Any, settings: Settings) -> Outcome:
    state = await repo.lock_user_state(conn, event.clerkUserId)
    if isinstance(event, UserDeleted):
        return await _delete(conn, event, state)
    return await _upsert(conn, event, state, settings)


def releases(raw: Any) -> list[str]:
    """A user that now exists releases what waited for it (worker/waiting.py)."""
    if raw.get("type") in ("user.created", "user.updated"):
        return [f"user:{raw['clerkUserId']}"]
    return []


USERS = Family(
    "users", user_event_adapter, apply_user_event,
    warnings=frozenset({EMAIL_CONFLICT, STARTER_ALREADY_GRANTED}), releases=releases,
)  # fmt: skip
