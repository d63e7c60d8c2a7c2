"""Exactly-once checks run after every measurement. Any difference raises ExactlyOnceViolation.

Product paths: "UsageHistory", `worker.journal` and `worker.event_log` each hold exactly one row
per applied event, nothing was rejected, `find_balance_drift` is empty (every balance == opening +
journal), every balance equals the one computed in Python, and every balance equals the start
minus its "UsageHistory" rows; after (c) and (c) with three grants, also reconcile's grant checks
and what each grant must hold after the burn-down. The naive baseline keeps no journal: its
"UsageHistory" is checked the same way.

The chaos run's holds (`check_chaos_holds`): an independent model of what the planned holds and
the usages naming them must have done (captured credits charged, released and expired ones given
back, open ones still out), and every hold resolved exactly once, as its plan says.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from worker import db
from worker.repo.reconcile import find_balance_drift, find_grant_drift
from worker.repo.users import get_balances

from .chaos_workload import HoldCase
from .grants import grant_problems
from .workload import START_CREDITS, Expected

# Balances that differ from the start minus their "UsageHistory" rows. $1 start credits int
_HISTORY_MISMATCH = """
SELECT cb."clerkUserId" AS clerk_user_id, cb."creditsRemaining" AS actual,
       $1::bigint - coalesce(u.used, 0) AS expected
FROM "CreditBalance" cb
LEFT JOIN (SELECT "creditBalanceId", sum("creditsUsed")::bigint AS used
           FROM "UsageHistory" GROUP BY 1) u ON u."creditBalanceId" = cb.id
WHERE cb."creditsRemaining" <> $1::bigint - coalesce(u.used, 0)
ORDER BY 1 LIMIT 5
"""


class ExactlyOnceViolation(Exception):
    def __init__(self, measurement: str, problems: list[str]) -> None:
        self.measurement = measurement
        self.problems = problems
        super().__init__(f"{measurement}: " + "; ".join(problems))


async def _count(conn, table: str) -> int:
    return await conn.fetchval(f"SELECT count(*) FROM {table}")


async def _common(conn, expected: Expected) -> list[str]:
    problems = []
    rows = await _count(conn, '"UsageHistory"')
    if rows != expected.applied:
        problems.append(f'"UsageHistory" has {rows} rows, expected {expected.applied}')
    actual = await get_balances(conn, list(expected.balances))
    wrong = [(c, b, actual.get(c)) for c, b in expected.balances.items() if actual.get(c) != b]
    if wrong:
        sample = ", ".join(f"{c}: expected {b}, actual {a}" for c, b, a in wrong[:5])
        problems.append(f"{len(wrong)} balances differ from the computed ones ({sample})")
    for r in await conn.fetch(_HISTORY_MISMATCH, START_CREDITS):
        problems.append(f'{r["clerk_user_id"]}: balance {r["actual"]} != start - "UsageHistory" {r["expected"]}')
    return problems


async def verify_product(dsn: str, expected: Expected, measurement: str, *, grants: bool = False,
                         grant_remaining: Mapping[tuple[str, str], int] | None = None) -> str:  # fmt: skip
    """`grants`: also reconcile's grant checks (every balance = Σ its live grants, every grant =
    its opening + what the journal moved); `grant_remaining`: what each live grant must hold,
    (clerk id, source) -> remaining (bench/grants.py)."""
    conn = await db.connect(dsn)
    try:
        problems = await _common(conn, expected)
        for table in ("worker.journal", "worker.event_log"):
            n = await _count(conn, table)
            if n != expected.applied:
                problems.append(f"{table} has {n} rows, expected {expected.applied}")
        rejected = await _count(conn, "worker.rejection")
        if rejected:
            reasons = await conn.fetch("SELECT reason, count(*) AS n FROM worker.rejection GROUP BY 1")
            problems.append("rejections: " + ", ".join(f"{r['reason']}×{r['n']}" for r in reasons))
        drift = await find_balance_drift(conn)
        if drift:
            problems.append(f"find_balance_drift: {len(drift)} users, e.g. {drift[0]}")
        if grants or grant_remaining is not None:
            grant_drift = await find_grant_drift(conn)
            if grant_drift:
                problems.append(f"find_grant_drift: {len(grant_drift)} findings, e.g. {grant_drift[0]}")
        if grant_remaining is not None:
            problems += await grant_problems(conn, grant_remaining)
    finally:
        await conn.close()
    if problems:
        raise ExactlyOnceViolation(measurement, problems)
    checked = ", grants" if grant_remaining is not None else (", grants reconciled" if grants else "")
    return f"{expected.applied} rows, {len(expected.balances)} balances, no drift{checked}"


async def verify_baseline(dsn: str, expected: Expected, measurement: str) -> str:
    conn = await db.connect(dsn)
    try:
        problems = await _common(conn, expected)
    finally:
        await conn.close()
    if problems:
        raise ExactlyOnceViolation(measurement, problems)
    return f"{expected.applied} rows, {len(expected.balances)} balances"


async def verify_untouched(dsn: str, measurement: str) -> str:
    """The no-op run must not have written anything."""
    conn = await db.connect(dsn)
    try:
        problems = [
            f"{t} has {n} rows, expected 0"
            for t in ('"UsageHistory"', "worker.journal", "worker.event_log")
            if (n := await _count(conn, t))
        ]
    finally:
        await conn.close()
    if problems:
        raise ExactlyOnceViolation(measurement, problems)
    return "nothing written"


# --- the chaos run's holds ---------------------------------------------------------------------

_CAPTURING = ("queue", "twin", "contested", "http", "race")
_ALREADY = "hold_already_captured"


@dataclass
class HoldCheck:
    """The model's totals (from the plan and the driver's answers: what the holds and the usages
    naming them must add to the books) and what the database shows of the holds."""

    balance_delta: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # clerk -> change
    usage_rows: int = 0  # "UsageHistory" rows: captures and plain usages naming a resolved hold
    movements: int = 0  # worker.journal rows: hold/, capture/ or release/, plain usages
    decided: set[str] = field(default_factory=set)  # worker.event_log keys: hold ids, usage ids
    counts: Counter[str] = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)


def hold_model(cases: Sequence[HoldCase], race_expired: set[str]) -> HoldCheck:
    """What the placed holds must add to the books. Independent of the database but for one
    bit: whether a `race` hold (ttl 1 s) was captured or expired first — either way its usage is
    charged `used` once, but an expired one's usage is a plain usage, one movement more."""
    m = HoldCheck()
    for c in cases:
        if not c.placed:
            continue
        m.decided.add(c.hold_id)
        m.decided.update(e["id"] for e in c.captures + c.after)
        m.movements += 1  # hold/<id>
        if c.kind == "open":
            m.balance_delta[c.clerk] -= c.credits
            continue
        m.movements += 1  # capture/<id> or release/<id>
        if c.kind in _CAPTURING:
            m.balance_delta[c.clerk] -= c.used
            m.usage_rows += 1
            m.movements += c.hold_id in race_expired  # its usage applied plain
        if c.kind in ("release", "expire"):  # a usage naming a released or expired hold is plain
            for e in c.after:
                m.balance_delta[c.clerk] -= e["credits"]
                m.usage_rows += 1
                m.movements += 1
    return m


async def check_chaos_holds(conn, cases: Sequence[HoldCase], *, down: float | None, up: float | None,
                            margin_s: float = 5.0) -> HoldCheck:  # fmt: skip
    """Every placed hold has its row and one `hold/` movement; every resolved one exactly one
    `capture/` or `release/` movement (none for open ones) with the right amount; none is open
    past its expiry + `margin_s`; each ended as its plan says (captured by which usage, for how
    much, its "UsageHistory" row; released; expired inside the blackout [down, up] and released
    after it); usages naming a resolved hold are plain usages or rejected `hold_already_captured`
    as the rules say. Returns the model (hold_model) with the counts and findings."""
    rows = {r["hold_id"]: r for r in await conn.fetch(
        "SELECT hold_id, user_id, credits, status, captured, usage_id, resolved_by,"
        " extract(epoch FROM expires_at)::float8 AS expires, extract(epoch FROM resolved_at)::float8 AS resolved"
        " FROM worker.credit_hold")}  # fmt: skip
    now = await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
    moves: dict[str, dict[str, int]] = defaultdict(dict)  # hold id -> kind -> delta
    strays = []
    for r in await conn.fetch(
        "SELECT event_id, kind, delta FROM worker.journal WHERE event_id LIKE 'hold/%' OR event_id LIKE"
        " 'capture/%' OR event_id LIKE 'release/%' OR event_id LIKE 'expire/capture/%'"
        " OR event_id LIKE 'expire/release/%'"):  # fmt: skip
        kind, _, hold_id = r["event_id"].partition("/")
        if kind == "expire":
            strays.append(r["event_id"])  # no grant ends in the chaos run: nothing held may expire
        moves[hold_id][kind] = r["delta"]
    events = [e for c in cases for e in c.captures + c.after]
    ids = [c.hold_id for c in cases] + [e["id"] for e in events]
    used = {r["id"]: r for r in await conn.fetch(
        'SELECT id, "userId" AS user_id, "creditsUsed" AS credits FROM "UsageHistory" WHERE id = ANY($1)', ids)}
    journal = {r["event_id"]: (r["kind"], r["delta"]) for r in await conn.fetch(
        "SELECT event_id, kind, delta FROM worker.journal WHERE event_id = ANY($1)", ids)}
    refused = {r["event_id"]: r["reason"] for r in await conn.fetch(
        "SELECT event_id, reason FROM worker.rejection WHERE event_id = ANY($1)", ids)}  # fmt: skip

    findings: list[str] = [f"a held credit expired ({e}): no grant ends in this run" for e in strays[:3]]
    counts: Counter[str] = Counter()
    placed = {c.hold_id: c for c in cases if c.placed}
    for hold_id in rows.keys() - placed.keys():
        findings.append(f"{hold_id}: a hold no 201 answered")
    for c in cases:
        findings += [f"{c.hold_id} ({c.kind}): {note}" for note in c.notes]
    race_expired = set()

    for c in placed.values():
        def bad(what: str, c: HoldCase = c) -> None:
            findings.append(f"{c.hold_id} ({c.kind}): {what}")

        row, m = rows.get(c.hold_id), moves.get(c.hold_id, {})
        if row is None:
            bad("placed (201) but no worker.credit_hold row")
            continue
        status = row["status"]
        counts["placed"] += 1
        if m.get("hold") != -c.credits or row["credits"] != c.credits:
            bad(f"hold/ movement {m.get('hold')}, row {row['credits']}, expected -{c.credits}")
        resolutions = [k for k in ("capture", "release") if k in m]
        if status == "held":
            counts["open"] += 1
            if resolutions:
                bad(f"open, yet {resolutions} movements")
            if row["expires"] < now - margin_s:
                bad(f"still open {now - row['expires']:.0f} s past its expiry")
        elif resolutions != (["capture"] if status == "captured" else ["release"]):
            bad(f"{status} with movements {resolutions or 'none'} (one capture/ or release/ expected)")
        elif status == "captured" and m["capture"] != c.credits - (row["captured"] or 0):
            bad(f"capture/ moved {m['capture']}, expected {c.credits} - {row['captured']}")
        elif status != "captured" and m["release"] != c.credits:
            bad(f"release/ moved {m['release']}, expected {c.credits}")

        def charged(usage_id: str) -> None:
            u = used.get(usage_id)
            if u is None or u["credits"] != c.used or u["user_id"] != row["user_id"]:
                bad(f'"UsageHistory" {usage_id}: {dict(u) if u else None}, expected {c.used} credits')
            if row["captured"] != c.used:
                bad(f"captured {row['captured']}, expected {c.used}")

        def plain(e: dict, tally: str = "plain usages naming a resolved hold") -> None:
            u, j = used.get(e["id"]), journal.get(e["id"])
            if u is None or u["credits"] != e["credits"] or j != ("usage", -e["credits"]) or e["id"] in refused:
                bad(f"usage {e['id']} naming it is not a plain usage of {e['credits']}: row {dict(u) if u else None},"
                    f" movement {j}, rejected {refused.get(e['id'])}")  # fmt: skip
            counts[tally] += 1

        def already(e: dict) -> None:
            if refused.get(e["id"]) != _ALREADY or e["id"] in used or e["id"] in journal:
                bad(f"usage {e['id']} naming it captured: {refused.get(e['id'])!r}, not {_ALREADY}")
            counts[_ALREADY] += 1

        if status == "captured":
            counts["captured via HTTP" if row["usage_id"] == c.hold_id else "captured via queue"] += 1
        elif status in ("released", "expired"):
            counts[status] += 1
        if c.kind == "open":
            if status != "held":
                bad(f"{status}, expected still held")
        elif c.kind == "queue":
            e = c.captures[0]
            if (status, row["usage_id"], row["resolved_by"]) != ("captured", e["id"], e["id"]):
                bad(f"{status} by {row['resolved_by']} (usage {row['usage_id']}), expected captured by {e['id']}")
            charged(e["id"])
        elif c.kind in ("twin", "contested"):
            e = c.captures[0]
            winners = [x["id"] for x in c.captures] + ([c.hold_id] if c.kind == "contested" else [])
            if status != "captured" or row["usage_id"] not in winners:
                bad(f"{status} (usage {row['usage_id']}), expected captured by one of {winners}")
            else:
                charged(row["usage_id"])
                for x in c.captures:
                    if x["id"] != row["usage_id"]:
                        already(x)
                for loser in set(winners) - {row["usage_id"]}:
                    if loser in used:
                        bad(f'"UsageHistory" has {loser} too: charged twice')
        elif c.kind == "http":
            if (status, row["usage_id"], row["resolved_by"]) != ("captured", c.hold_id, "http"):
                bad(f"{status} by {row['resolved_by']}, expected captured over HTTP")
            charged(c.hold_id)
            for e in c.after:
                already(e)
        elif c.kind == "release":
            if (status, row["resolved_by"]) != ("released", "http"):
                bad(f"{status} by {row['resolved_by']}, expected released over HTTP")
            for e in c.after:
                plain(e)
        elif c.kind == "race":
            e = c.captures[0]
            if status == "captured" and row["usage_id"] == e["id"]:
                charged(e["id"])
                counts["race: captured"] += 1
            elif status == "expired":
                race_expired.add(c.hold_id)
                plain(e, "race: expired first")
            else:
                bad(f"{status} (usage {row['usage_id']}), expected captured by {e['id']} or expired")
        elif c.kind == "expire":
            if (status, row["resolved_by"]) != ("expired", "expiry"):
                bad(f"{status} by {row['resolved_by']}, expected expired")
            if down is not None and up is not None:
                if not down < row["expires"] < up:
                    bad(f"expired at {row['expires']:.1f}, outside the blackout [{down:.1f}, {up:.1f}]")
                elif row["resolved"] is not None and row["resolved"] < up - 0.5:
                    bad(f"released at {row['resolved']:.1f}, before a worker ran again ({up:.1f})")
                else:
                    counts["expired while no worker ran"] += 1
                    if not c.after and not c.late_http:
                        counts["left to the sweep"] += 1
            for e in c.after:
                plain(e)

    check = hold_model(cases, race_expired)
    check.counts, check.findings = counts, findings
    return check
