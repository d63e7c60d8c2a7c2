"""The ops commands of `pedro-worker`: dlq, stats, replay (reconcile lives in reconcile.py).

Exit codes (as every `pedro-worker` command): 0 ok; 1 failure — an id not found, an invalid
line in a replay, Redis unreachable; 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from ..redis_client import redis_client
from ..settings import Settings
from .dlq import DeadLetter, DeadLetters
from .progress import progress
from .text import format_age

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dlq", help="dead letters: list, show, requeue, purge")
    dlq = p.add_subparsers(dest="dlq_command", required=True)
    for name, help_text in (
        ("list", "list dead letters (newest first)"),
        ("show", "one dead letter in full"),
        ("requeue", "put dead letters back on their queue, retries reset"),
        ("purge", "delete dead letters"),
    ):
        c = dlq.add_parser(name, help=help_text)
        c.add_argument("--queue", help="only this queue")
        if name == "show":
            c.add_argument("id", help="message id (as in the logs) or Redis id")
            continue
        c.add_argument("--reason", help="only letters that died for this reason, e.g. unknown_user")
        if name == "list":
            c.add_argument("--limit", type=int, default=None, help="at most this many")
            c.add_argument(
                "--json", action="store_true", help="one JSON export per line (replay reads it)"
            )
        else:
            c.add_argument("ids", nargs="*", metavar="ID", help="message ids or Redis ids")
            c.add_argument(
                "--all", action="store_true", help="every letter matching --queue/--reason"
            )

    p = sub.add_parser(
        "stats",
        help="queues, workers, rates, ledger totals, waiting events by reason and age, "
        "open and overdue holds, pending and failed notifications",
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "replay", help="re-publish an export (events or `dlq list --json`), idempotently"
    )
    p.add_argument("file", type=Path)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument(
        "--no-skip",
        action="store_true",
        help="publish even events the ledger has already decided (needs no DATABASE_URL)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        if args.command == "dlq":
            return _dlq(args, settings)
        if args.command == "stats":
            return _stats(settings, args.json)
        return asyncio.run(_replay(args, settings))
    except redis.RedisError as exc:
        print(f"pedro-worker: redis unreachable ({type(exc).__name__})", file=sys.stderr)
        return EXIT_FAIL


def _client(settings: Settings) -> redis.Redis:
    return redis_client(settings, socket_timeout=10, socket_connect_timeout=5)


# --- dlq -----------------------------------------------------------------------------------------


def _age(letter: DeadLetter) -> str:
    return format_age(datetime.now(UTC).timestamp() - letter.dead_at_ms / 1000)


def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    dead = DeadLetters(_client(settings), settings.redis_namespace)
    if args.queue and args.queue.removesuffix(".DQ") not in dead.queues:
        print(
            f"pedro-worker: unknown queue {args.queue!r} (queues: {', '.join(dead.queues)})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.dlq_command == "list":
        return _dlq_list(dead, args)
    if args.dlq_command == "show":
        letter = dead.find(args.id, queue=args.queue)
        if letter is None:
            print(f"no dead letter {args.id}", file=sys.stderr)
            return EXIT_FAIL
        shown = {
            **letter.export(),
            "dead_at": datetime.fromtimestamp(letter.dead_at_ms / 1000, UTC).isoformat(),
            "detail": letter.options.get("dead_letter_detail"),
            "traceback": letter.options.get("traceback"),
        }
        print(json.dumps(shown, indent=2, default=str))
        return EXIT_OK
    return _dlq_act(dead, args)


def _dlq_list(dead: DeadLetters, args: argparse.Namespace) -> int:
    letters = dead.list(queue=args.queue, reason=args.reason, limit=args.limit)
    if args.json:
        for letter in letters:
            print(json.dumps(letter.export(), default=str))
        return EXIT_OK
    if letters:
        print(
            f"{'QUEUE':<9} {'MESSAGE ID':<36} {'ACTOR':<22} {'REASON':<22} {'AGE':>6} {'TRIES':>5} {'EVENTS':>6}  PREVIEW"
        )
    for letter in letters:
        print(
            f"{letter.queue:<9} {letter.message_id:<36} {letter.actor:<22} {letter.reason:<22} {_age(letter):>6} "
            f"{letter.options.get('retries', 0):>5} {len(letter.events):>6}  {letter.preview(60)}"
        )
    counts = {q: n for q, n in dead.counts().items() if n}
    per_queue = ", ".join(f"{q}: {n}" for q, n in counts.items()) or "none"
    print(f"{len(letters)} dead letter(s) listed; in Redis: {per_queue}")
    return EXIT_OK


def _dlq_act(dead: DeadLetters, args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.all):
        print(
            f"pedro-worker: dlq {args.dlq_command} needs message ids or --all (not both)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    letters: list[DeadLetter | None]
    missing_ids: list[str] = []
    if args.all:
        letters = list(dead.iter(queue=args.queue, reason=args.reason))
    else:
        letters = []
        for ident in args.ids:
            letter = dead.find(ident, queue=args.queue)
            if letter is None or (args.reason and args.reason not in letter.reasons):
                missing_ids.append(ident)
            else:
                letters.append(letter)
    act = dead.requeue if args.dlq_command == "requeue" else dead.purge
    done = gone = 0
    with progress(total=len(letters), desc=args.dlq_command, unit="msg") as bar:
        for letter in letters:
            if letter is not None and act(letter):
                done += 1
            else:
                gone += 1
            bar.update(1)
    verb = "requeued" if args.dlq_command == "requeue" else "purged"
    for ident in missing_ids:
        print(f"not found: {ident}", file=sys.stderr)
    print(f"{verb} {done} dead letter(s); {gone} already gone; {len(missing_ids)} not found")
    return EXIT_FAIL if missing_ids else EXIT_OK


# --- stats ---------------------------------------------------------------------------------------


async def _postgres_views(settings: Settings) -> tuple[dict[str, Any] | None, ...]:
    """What `stats` reads from PostgreSQL, as the dashboard's panels read it: waiting events,
    holds, notifications, the exact ledger totals (each None without a DATABASE_URL,
    {"error": …} when unreachable)."""
    from .holds import holds_view
    from .notifications import notifications_view
    from .outcomes import outcomes_view
    from .waiting import waiting_view

    return await asyncio.gather(
        waiting_view(settings), holds_view(settings), notifications_view(settings), outcomes_view(settings)
    )


def _stats(settings: Settings, as_json: bool) -> int:
    from .holds import stats_line as holds_line
    from .notifications import stats_line as notifications_line
    from .outcomes import apply_exact_totals
    from .stats import StatsReader, overview
    from .waiting import text_lines as waiting_lines

    view = overview(
        StatsReader(
            _client(settings),
            settings.redis_namespace,
            heartbeat_timeout_ms=settings.heartbeat_timeout_ms,
        )
    )
    view["waiting"], view["holds"], view["notifications"], outcomes = asyncio.run(_postgres_views(settings))
    apply_exact_totals(view, outcomes)
    if as_json:
        print(json.dumps(view))
        return EXIT_OK
    print(
        f"pedro-worker stats  namespace={view['namespace']}  health={view['health']['level']}"
        + "".join(f"\n  ! {p}" for p in view["health"]["problems"])
    )
    print(
        f"\n{'QUEUE':<9} {'READY':>8} {'DELAYED':>8} {'RUNNING':>8} {'DEAD':>6} {'DONE/S':>8} {'FAIL/S':>8} {'RETRY/S':>8}"
    )
    for q in view["queues"]:
        r = q["rates"]
        print(
            f"{q['name']:<9} {q['ready']:>8} {q['delayed']:>8} {q['in_progress']:>8} {q['dead']:>6} "
            f"{r['processed']:>8} {r['failed']:>8} {r['retried']:>8}"
        )
    print(
        f"\nworkers: {len(view['workers'])} live process(es)"
        + "".join(
            f"\n  {w['host']} pid={w['pid']} threads={w['threads']} processed={w['processed']}"
            for w in view["workers"]
        )
    )
    ledger = view["ledger"]
    print(
        f"\nledger: applied={ledger['applied']} duplicate={ledger['duplicate']} rejected={ledger['rejected']} "
        f"dead-lettered now={ledger['dead_lettered_now']}"
    )
    _print_reasons("rejected", ledger["rejected_by_reason"])
    _print_reasons("dead-lettered", ledger["dead_lettered_by_reason"])
    print("\n".join(waiting_lines(view["waiting"])))
    print(holds_line(view["holds"]))
    print(notifications_line(view["notifications"]))
    rec = ledger["reconcile"]
    print(
        f"reconcile: {rec['drift']} drift of {rec['checked']} balances ({rec['source']})"
        if rec
        else "reconcile: not run yet"
    )
    return EXIT_OK


def _print_reasons(what: str, reasons: dict[str, Any]) -> None:
    for reason, n in reasons.items():
        print(f"  {what:<14} {reason:<28} {n}")


# --- replay --------------------------------------------------------------------------------------


async def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from .. import db
    from ..broker import build_broker
    from ..publisher import Publisher
    from ..repo.ledger import find_event_hashes
    from .replay import replay

    if not args.file.is_file():
        print(f"pedro-worker: no such file: {args.file}", file=sys.stderr)
        return EXIT_USAGE
    publisher = Publisher(
        build_broker(settings, worker=False), batch_size=args.batch_size, validate=False
    )
    conn = None if args.no_skip else await db.connect(settings.require_database_url())
    try:
        lookup = (lambda ids: find_event_hashes(conn, ids)) if conn is not None else None
        with progress(
            total=args.file.stat().st_size, desc="replay", unit="B", unit_scale=True
        ) as bar:
            summary = await replay(args.file, publisher, lookup=lookup, on_progress=bar.update)
    finally:
        if conn is not None:
            await conn.close()
    for line in summary.lines_of_text():
        print(line)
    return EXIT_FAIL if summary.invalid else EXIT_OK
