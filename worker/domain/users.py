"""Queue `users`: Clerk's user.created / user.updated / user.deleted, in any arrival order.

`worker.user_state` keeps, per Clerk user, the version (`updatedAt`) of the profile last applied
and when the user was deleted; it is locked first, so one user's events are decided one at a
time. Rules:

- created or updated: the user and its balance (starter credits) exist afterwards; email and
  name are written only if this profile is newer than the stored one;
- deleted: "User".isActive = false, for good; before the user exists it is remembered, and the
  user is then created inactive;
- an email that belongs to another user rolls everything back and waits (`email_conflict`):
  that user's own update often frees the address; if not, the message is dead-lettered with
  that reason and nothing was written.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from ..errors import RetryLater
from ..events import UserDeleted, user_event_adapter
from ..ledger.decide import APPLIED, Outcome
from ..repo import users as repo
from ..settings import Settings
from .each import Family

_EMAIL_UNIQUE = "User_email_key"


async def _delete(conn: asyncpg.Connection, event: UserDeleted, state: repo.UserState) -> Outcome:
    if state.deleted_at is None or event.deletedAt < state.deleted_at:
        await repo.save_user_state(conn, event.clerkUserId, deleted_at=event.deletedAt)
    if await repo.deactivate_user(conn, event.clerkUserId):
        return Outcome(event.id, APPLIED)
    known = state.profile_updated_at is not None or await repo.find_user_id(conn, event.clerkUserId)
    return Outcome(event.id, APPLIED, "already_inactive" if known else "deleted_before_created")


async def _upsert(
    conn: asyncpg.Connection, event: Any, state: repo.UserState, settings: Settings
) -> Outcome:
    newer = state.profile_updated_at is None or event.updatedAt > state.profile_updated_at
    try:
        await repo.upsert_user_profile(
            conn, event.clerkUserId, email=event.email, name=event.name, apply_profile=newer,
            active=state.deleted_at is None, starter_credits=settings.starter_credits,
        )  # fmt: skip
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != _EMAIL_UNIQUE:
            raise
        raise RetryLater(["email_conflict"]) from None
    if newer:
        await repo.save_user_state(conn, event.clerkUserId, profile_updated_at=event.updatedAt)
    return Outcome(event.id, APPLIED, None if newer else "older_profile_ignored")


async def apply_user_event(conn: asyncpg.Connection, event: Any, settings: Settings) -> Outcome:
    state = await repo.lock_user_state(conn, event.clerkUserId)
    if isinstance(event, UserDeleted):
        return await _delete(conn, event, state)
    return await _upsert(conn, event, state, settings)


USERS = Family("users", user_event_adapter, apply_user_event)
