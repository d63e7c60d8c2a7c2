"""`pedro-worker` command line. Exit codes: 0 ok, 1 failure/drift, 2 usage or config error,
3 schema mismatch or migration error."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from . import __version__
from .errors import ConfigError, MigrationError, SchemaMismatch, ValidationRejected, WorkerError
from .logs import configure_logging, get_logger
from .settings import ROOT, Settings, get_settings, mask_url

log = get_logger("pedro.cli")

EXIT_OK, EXIT_FAIL, EXIT_CONFIG, EXIT_SCHEMA = 0, 1, 2, 3


def _run(coro):
    return asyncio.run(coro)


# --- migrate / check ----------------------------------------------------------------------------


async def _migrate(settings: Settings, with_app_schema: bool) -> int:
    from . import db
    from .migrate import migrate

    settings.require_database_url()
    conn = await db.direct_connection(settings)  # PEDRO_DIRECT_DATABASE_URL when set (Prisma's directUrl)
    try:
        report = await migrate(conn, with_app_schema=with_app_schema)
    finally:
        await conn.close()
    if with_app_schema:
        print("app schema: " + ("created" if report.app_schema_created else "already present"))
    print(f"migrations applied: {', '.join(report.applied) or 'none'} "
          f"({len(report.already)} already applied)")  # fmt: skip
    return EXIT_OK


async def _check(settings: Settings) -> int:
    import redis

    from . import db
    from .redis_client import redis_client
    from .schema_check import schema_differences

    ok = True
    try:
        conn = await db.connect(settings.require_database_url())
    except (OSError, Exception) as exc:
        if isinstance(exc, ConfigError):
            raise
        print(f"postgres: unreachable ({_why(exc)})")
        return EXIT_FAIL
    try:
        differences = await schema_differences(conn)
    finally:
        await conn.close()
    if differences:
        ok = False
        print("postgres: schema differs:")
        for line in differences:
            print(f"  - {line}")
    else:
        print("postgres: ok, schema compatible")
    try:
        redis_client(settings, socket_timeout=5).ping()
        print("redis: ok")
    except redis.RedisError as exc:
        ok = False
        print(f"redis: unreachable ({_why(exc)})")
    return EXIT_OK if ok else (EXIT_SCHEMA if differences else EXIT_FAIL)


# --- reconcile -----------------------------------------------------------------------------------


async def _reconcile(settings: Settings, as_json: bool) -> int:
    from .ops.reconcile import run_command

    drift = await run_command(settings, as_json=as_json)
    return EXIT_FAIL if drift else EXIT_OK


# --- publish -------------------------------------------------------------------------------------


def _publish(settings: Settings, path: Path, batch_size: int) -> int:
    from .broker import build_broker
    from .publisher import Publisher

    broker = build_broker(settings, worker=False)
    publisher = Publisher(broker, batch_size=batch_size)
    sent = 0
    chunk: list[dict] = []
    with (sys.stdin if str(path) == "-" else path.open()) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                chunk.append(json.loads(line))
            except json.JSONDecodeError as exc:
                print(f"line {n}: not JSON ({exc.msg})", file=sys.stderr)
                return EXIT_FAIL
            if len(chunk) >= batch_size * 10:
                publisher.publish_many(chunk)
                sent += len(chunk)
                chunk = []
    publisher.publish_many(chunk)
    sent += len(chunk)
    print(f"published {sent} events")
    return EXIT_OK


# --- worker --------------------------------------------------------------------------------------


def _worker(settings: Settings, processes: int | None, threads: int | None) -> int:
    settings.require_database_url()
    settings.require_redis_url()
    args = [
        sys.executable, "-m", "dramatiq", "worker.app",
        "--processes", str(processes or settings.worker_processes),
        "--threads", str(threads or settings.worker_threads),
    ]  # fmt: skip
    os.execv(sys.executable, args)
    return EXIT_FAIL  # not reached


def _schema(out: str | None, notifications: bool = False, openapi: bool = False) -> int:
    from .events import json_schemas
    from .notify.payloads import json_schema as notification_schema

    if openapi:
        from .ingress.openapi import render

        text = render()
    else:
        text = json.dumps(notification_schema() if notifications else json_schemas(), indent=2) + "\n"
    if out:
        Path(out).write_text(text)
        print(f"wrote {out}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pedro-worker", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pedro-worker {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("dev", help="embedded PostgreSQL + Redis (unless URLs are set), schema, demo, worker")
    p.add_argument("--no-demo", action="store_true", help="do not seed demo users and events")

    p = sub.add_parser("migrate", help="apply worker migrations (sql/migrations)")
    p.add_argument("--with-app-schema", action="store_true",
                   help="also create the app's tables (empty dev/test databases only)")  # fmt: skip

    sub.add_parser("check", help="check Postgres schema and Redis; exit code for health checks")

    p = sub.add_parser("worker", help="run the dramatiq worker processes")
    p.add_argument("--processes", type=int)
    p.add_argument("--threads", type=int)

    sub.add_parser("ingress", help="serve the HTTP ingress: /v1/events and webhooks (docs/ingress.md)")
    sub.add_parser("notify", help="deliver notifications to the app's endpoints until SIGTERM (signed webhooks)")

    p = sub.add_parser("publish", help="publish events from a JSON-lines file ('-' for stdin)")
    p.add_argument("file", type=Path)
    p.add_argument("--batch-size", type=int, default=500)

    p = sub.add_parser("reconcile", help="check every balance against its journal; exit 1 on drift")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("user", help="one user: balance, debt, grants, holds, movements and why, waiting events")
    user = p.add_subparsers(dest="user_command", required=True)
    c = user.add_parser("show", help="balance, grants, holds, movements (newest first, paged), waiting events")
    c.add_argument("clerk_user_id", metavar="CLERK_ID")
    c.add_argument("--limit", type=_positive_int, default=20, help="movements per page (default 20)")
    c.add_argument("--cursor", help="the next page: as printed under the previous one")
    c.add_argument("--json", action="store_true")

    from .ops.commands import add_commands as add_ops_commands

    add_ops_commands(sub)  # dlq, stats, replay

    from .ops.waiting_cli import add_command as add_waiting_command

    add_waiting_command(sub)  # waiting list|show|release|drop

    from .ops.billing_cli import add_command as add_billing_command

    add_billing_command(sub)  # billing show|regrant

    from .ops.holds_cli import add_command as add_holds_command

    add_holds_command(sub)  # holds list|show|release

    from .ops.notifications_cli import add_command as add_notifications_command

    add_notifications_command(sub)  # notifications list|show|redeliver

    p = sub.add_parser("schema", help="print (or write) the events' JSON Schema")
    p.add_argument("--out", help=f"file to write, e.g. {ROOT / 'docs' / 'events.schema.json'}")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--notifications", action="store_true",
                       help="the notifications' bodies instead (docs/notifications.schema.json)")
    which.add_argument("--openapi", action="store_true",
                       help="the /v1 API's OpenAPI 3.1 document instead (docs/openapi.json)")

    from bench.cli import add_arguments as add_bench_arguments

    p = sub.add_parser("bench", help="measure every event path and verify exactly-once (docs/performance.md)")
    add_bench_arguments(p)

    from bench.chaos import add_arguments as add_chaos_arguments

    p = sub.add_parser("chaos", help="crash workers, Redis and PostgreSQL under load; verify nothing lost or doubled")
    add_chaos_arguments(p)
    return parser


def _why(exc: BaseException) -> str:
    """`SSLCertVerificationError: … certificate verify failed: Hostname mismatch …`: the error's
    type and its first line (a certificate refused and a port closed must not read alike)."""
    detail = mask_url(str(exc).strip().splitlines()[0][:300]) if str(exc).strip() else ""
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    if args.command == "dev":
        settings = settings.model_copy(update={"log_format": "console"})
    configure_logging(settings)
    from .db import set_slow_query_threshold

    set_slow_query_threshold(settings.slow_query_ms)  # pools set it too; CLI commands use connect()
    try:
        if args.command == "dev":
            from .dev import run_dev

            return run_dev(settings, demo=not args.no_demo)
        if args.command == "migrate":
            return _run(_migrate(settings, args.with_app_schema))
        if args.command == "check":
            return _run(_check(settings))
        if args.command == "worker":
            return _worker(settings, args.processes, args.threads)
        if args.command == "ingress":
            from .ingress.server import run_ingress

            run_ingress(settings)
            return EXIT_OK
        if args.command == "notify":
            from .notify.dispatch import run_notify

            return run_notify(settings)
        if args.command == "publish":
            return _publish(settings, args.file, args.batch_size)
        if args.command == "reconcile":
            return _run(_reconcile(settings, args.json))
        if args.command == "schema":
            return _schema(args.out, args.notifications, args.openapi)
        if args.command == "user":
            from .ops.user_show import run_command as show_user

            return _run(show_user(settings, args.clerk_user_id, limit=args.limit,
                                  cursor=args.cursor, as_json=args.json))  # fmt: skip
        if args.command == "waiting":
            from .ops.waiting_cli import run as run_waiting_command

            return run_waiting_command(args, settings)
        if args.command == "billing":
            from .ops.billing_cli import run as run_billing_command

            return run_billing_command(args, settings)
        if args.command == "holds":
            from .ops.holds_cli import run as run_holds_command

            return run_holds_command(args, settings)
        if args.command == "notifications":
            from .ops.notifications_cli import run as run_notifications_command

            return run_notifications_command(args, settings)
        if args.command in ("dlq", "stats", "replay"):
            from .ops.commands import run as run_ops_command

            return run_ops_command(args, settings)
        if args.command == "bench":
            from bench.cli import run_bench_command

            return run_bench_command(args, settings)
        if args.command == "chaos":
            from bench.chaos import run_command as run_chaos_command

            return run_chaos_command(args)
    except ConfigError as exc:
        print(f"pedro-worker: {exc.detail}", file=sys.stderr)
        return EXIT_CONFIG
    except (SchemaMismatch, MigrationError) as exc:
        print(f"pedro-worker: {exc.reason}: {exc.detail}", file=sys.stderr)
        return EXIT_SCHEMA
    except ValidationRejected as exc:
        print(f"pedro-worker: rejected: {exc.detail}", file=sys.stderr)
        return EXIT_FAIL
    except WorkerError as exc:
        print(f"pedro-worker: {exc.reason}: {mask_url(exc.detail)}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
