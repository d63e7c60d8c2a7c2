"""Path (cn): (c) with notifications on — an endpoint and low-balance thresholds configured
(issue 20), and what the outbox must hold after it.

The (cn) fleet is (c)'s worker app with `PEDRO_NOTIFY_URL` (a port nothing listens on: no
dispatcher runs in the bench, the outbox rows just accumulate), a fresh `PEDRO_NOTIFY_SECRET` and
`PEDRO_NOTIFY_LOW_THRESHOLDS` chosen from the run's own events, so that a realistic share of the
users cross them while measured:

- `START_CREDITS - max(1, median use // 2)`: most users who spend at all cross it;
- `START_CREDITS - max(2, median use)`: about half the users cross it too (two credits.low);
- `10%`: of the user's newest plan grant. The bench users hold one `legacy/…` grant and no plan
  grant, so it never applies; it still costs its check for every user of every batch.

Every bench event is a `usage.recorded` taking 1-10 credits, so a balance only goes down, from
`START_CREDITS` to its expected end: whatever the batching, a user crosses an absolute threshold
`t` — and gets exactly one `credits.low` for it (one per user, threshold and period) — iff
`START_CREDITS > t >= end`. No balance reaches 0: no `credits.depleted`.

The other fleets run with notifications off whatever the environment or `.env` says
(`NOTIFY_OFF`): (c) is the figure "without them".
"""

from __future__ import annotations

import base64
import secrets
import statistics
from collections.abc import Iterable, Mapping, Sequence

from worker import db

from .verify import ExactlyOnceViolation
from .workload import START_CREDITS

ENDPOINT_URL = "http://127.0.0.1:9/unused"  # never called: no dispatcher runs in the bench
PERCENT_THRESHOLD = "10%"

# Blank values win over a .env file (pydantic-settings reads the environment first).
NOTIFY_OFF = {"PEDRO_NOTIFY_URL": "", "PEDRO_NOTIFY_ENDPOINTS": "", "PEDRO_NOTIFY_LOW_THRESHOLDS": ""}

# Every notification, with its delivery rows. Read after the run, not measured.
_NOTIFICATIONS_SQL = """
SELECT n.type, n.clerk_user_id, n.data->>'thresholdSetting' AS setting,
       (n.data->>'threshold')::bigint AS threshold, (n.data->>'balance')::bigint AS balance,
       (n.data->>'previousBalance')::bigint AS previous,
       count(d.seq) AS deliveries, count(d.seq) FILTER (WHERE d.endpoint = 'app' AND d.status = 'pending') AS pending
FROM worker.notification n LEFT JOIN worker.notification_delivery d ON d.seq = n.seq
GROUP BY n.seq
"""


def thresholds(used: Mapping[str, int], clerk_ids: Iterable[str]) -> list[str]:
    """The thresholds of a run (module docstring), as PEDRO_NOTIFY_LOW_THRESHOLDS' items."""
    median = int(statistics.median(used.get(c, 0) for c in clerk_ids))
    return [str(START_CREDITS - max(1, median // 2)), str(START_CREDITS - max(2, median)), PERCENT_THRESHOLD]


def fleet_env(items: Sequence[str]) -> dict[str, str]:
    """A worker's environment with notifications on: one endpoint (`app`) and these thresholds."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    return {"PEDRO_NOTIFY_URL": ENDPOINT_URL, "PEDRO_NOTIFY_SECRET": secret, "PEDRO_NOTIFY_ENDPOINTS": "",
            "PEDRO_NOTIFY_LOW_THRESHOLDS": ",".join(items)}  # fmt: skip


def expected_lows(events: Iterable[Mapping], balances: Mapping[str, int], items: Sequence[str]) -> dict[str, set[str]]:
    """Absolute threshold -> the Clerk ids whose balance crosses it, from START_CREDITS down to
    `balances` (the expected ends). Refuses a workload that could give credits back."""
    if any(e["type"] != "usage.recorded" or e["credits"] <= 0 for e in events):
        raise ValueError("(cn)'s crossings assume usages that only take credits")
    absolute = [t for t in items if not t.endswith("%")]
    return {t: {c for c, end in balances.items() if START_CREDITS > int(t) >= end} for t in absolute}


async def verify_notifications(dsn: str, lows: Mapping[str, set[str]], measurement: str) -> str:
    """The outbox holds exactly one credits.low per user and absolute threshold crossed (none for
    the percentage, nothing else), each consistent with its crossing and with one pending
    delivery to `app`."""
    conn = await db.connect(dsn)
    try:
        rows = await conn.fetch(_NOTIFICATIONS_SQL)
    finally:
        await conn.close()
    problems = []
    others = sorted({r["type"] for r in rows} - {"credits.low"})
    if others:
        problems.append(f"unexpected notification types {others}")
    written: dict[str, list[str]] = {}
    for r in rows:
        if r["type"] == "credits.low":
            written.setdefault(r["setting"], []).append(r["clerk_user_id"])
    for setting, clerks in sorted(written.items()):
        if setting not in lows:
            problems.append(f"{len(clerks)} credits.low for threshold {setting}, expected none")
    for setting, crossed in lows.items():
        clerks = written.get(setting, [])
        if len(clerks) != len(crossed) or set(clerks) != crossed:
            missing, extra = sorted(crossed - set(clerks)), sorted(set(clerks) - crossed)
            problems.append(f"threshold {setting}: {len(clerks)} credits.low for {len(crossed)} users crossing "
                            f"(missing {missing[:3]}, unexpected {extra[:3]})")  # fmt: skip
    inconsistent = [r for r in rows if r["type"] == "credits.low" and not (
        r["previous"] > r["threshold"] >= r["balance"] and str(r["threshold"]) == r["setting"])]  # fmt: skip
    if inconsistent:
        problems.append(f"{len(inconsistent)} credits.low whose balances did not cross their threshold, "
                        f"e.g. {dict(inconsistent[0])}")  # fmt: skip
    undelivered = [r for r in rows if r["deliveries"] != 1 or r["pending"] != 1]
    if undelivered:
        problems.append(f"{len(undelivered)} notifications without exactly one pending delivery to 'app', "
                        f"e.g. {dict(undelivered[0])}")  # fmt: skip
    if problems:
        raise ExactlyOnceViolation(measurement, problems)
    per = ", ".join(f"{len(lows[t]):,} below {t}" for t in lows)
    crossed = sum(len(c) for c in lows.values())
    return (f"users crossed: {per} ({crossed:,} crossings; {PERCENT_THRESHOLD}: no plan grant), "
            f"{len(rows):,} credits.low written")
