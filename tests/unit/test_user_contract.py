"""The user events' contract: createdAt is optional and leaves the payload hash alone."""

from __future__ import annotations

from worker.events import validate_event

PROFILE = {
    "type": "user.created", "id": "msg_1", "clerkUserId": "user_1", "email": "ana@example.com",
    "name": "Ana", "updatedAt": "2026-11-01T12:00:00Z",
}  # fmt: skip


def test_created_at_is_optional_and_normalised_to_utc():
    assert validate_event(PROFILE).createdAt is None  # type: ignore[attr-defined]
    event = validate_event({**PROFILE, "createdAt": "2024-03-01T06:30:00-03:00"})
    assert event.createdAt.isoformat() == "2024-03-01T09:30:00+00:00"  # type: ignore[attr-defined]


def test_the_profile_hash_is_what_earlier_releases_recorded_with_or_without_created_at():
    # Profiles decided before createdAt existed keep their hash: a replay, or a Clerk retry across
    # the upgrade (now carrying created_at), stays a duplicate instead of an idempotency conflict.
    recorded = "727041fec19b2fea915ff74bcede79e6aedf9ccac1941034e524ba13d9357c68"
    assert validate_event(PROFILE).payload_hash() == recorded  # type: ignore[attr-defined]
    with_created_at = validate_event({**PROFILE, "createdAt": "2024-03-01T09:30:00Z"})
    assert with_created_at.payload_hash() == recorded  # type: ignore[attr-defined]
    renamed = validate_event({**PROFILE, "name": "Ana Silva"})
    assert renamed.payload_hash() != recorded  # type: ignore[attr-defined]
