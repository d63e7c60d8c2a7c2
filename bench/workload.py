"""Generated usage events and the balances they must leave behind.

Every event is a valid `usage.recorded` with explicit credits (1-10) and small details, like the
app's chat and image events. Users start with enough credits that nothing is refused, so every
event must be applied exactly once and each balance is known in advance.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

START_CREDITS = 50_000_000
HOT_SHARE = 0.5
_T0 = datetime(2026, 11, 1, tzinfo=UTC)


def clerk_ids(users: int) -> list[str]:
    return [f"user_bench_{n:06d}" for n in range(users)]


class Workload:
    def __init__(self, users: int, seed: int) -> None:
        self.clerk_ids = clerk_ids(users)
        self.seed = seed

    def events(self, tag: str, count: int, distribution: str) -> list[dict[str, Any]]:
        """`count` new events with ids `bench-{tag}-{n}`; `hot` puts half of them on one user."""
        rng = random.Random(f"{self.seed}-{tag}")
        users = self.clerk_ids
        others = users[1:] or users
        out = []
        for n in range(count):
            if distribution == "hot" and rng.random() < HOT_SHARE:
                clerk = users[0]
            else:
                clerk = rng.choice(others if distribution == "hot" else users)
            image = rng.random() < 0.2
            out.append({
                "type": "usage.recorded",
                "id": f"bench-{tag}-{n}",
                "clerkUserId": clerk,
                "operationType": "AI_IMAGE_GENERATION" if image else "AI_TEXT_CHAT",
                "credits": rng.randint(1, 10),
                "details": {"model": "bench-image" if image else "bench-chat", "tokens": rng.randint(10, 4000)},
                "occurredAt": (_T0 + timedelta(milliseconds=n)).isoformat(),
            })  # fmt: skip
        return out


class Expected:
    """What one database must contain: balances and how many events were applied."""

    def __init__(self, clerk_ids: list[str]) -> None:
        self.balances = dict.fromkeys(clerk_ids, START_CREDITS)
        self.applied = 0

    def apply(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            self.balances[event["clerkUserId"]] -= event["credits"]
            self.applied += 1
