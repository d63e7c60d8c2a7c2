"""Reading the app's tables through a real Prisma Client (node), as the Next.js app does.

The node project is `tests/prisma_client/` (Prisma 7's Rust-free client with `@prisma/adapter-pg`,
versions pinned by its package-lock.json). It is installed once per machine into
`$XDG_CACHE_HOME/pedro-worker/` (default `~/.cache/pedro-worker/`):

- `prisma-<hash of package.json, package-lock.json, node major>/`: `npm ci --ignore-scripts`;
- `…/client-<hash of generate.mjs, read.mjs, sql/schema.prisma>/`: the client generated from the
  app's schema (offline: nothing is fetched from binaries.prisma.sh, see generate.mjs).

A file lock serializes concurrent sessions; a marker file written last makes a half-done install
(killed session) start over. Each `read` runs `node read.mjs` (about 0.6 s): one Prisma Client,
one connection, closed at the end.

Without node ≥ 20.19 and npm the fixture skips — or fails when CI=true (`.ci/run` installs them).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import pytest

from worker.settings import SQL_DIR

PROJECT = Path(__file__).resolve().parents[1] / "prisma_client"
APP_MODELS = SQL_DIR / "schema.prisma"
DEPENDENCY_FILES = ("package.json", "package-lock.json")
SCRIPT_FILES = ("generate.mjs", "read.mjs")
READY = ".ready"  # written last: its absence means a missing or interrupted install


class PrismaUnavailable(RuntimeError):
    """No usable node/npm on this machine (a skip locally, a failure in CI)."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pedro-worker"


def node_version(node: str) -> tuple[int, int, int]:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
    match = re.match(r"v(\d+)\.(\d+)\.(\d+)", out.strip())
    if not match:
        raise PrismaUnavailable(f"cannot read the version of {node} ({out.strip()!r})")
    return int(match[1]), int(match[2]), int(match[3])


def supported(version: tuple[int, int, int]) -> bool:
    """Prisma 7's `engines`: ^20.19 || ^22.12 || >=24.0."""
    major, minor, _ = version
    return (major == 20 and minor >= 19) or (major == 22 and minor >= 12) or major >= 24


def find_node() -> tuple[str, str, tuple[int, int, int]]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        missing = " and ".join(n for n, p in (("node", node), ("npm", npm)) if not p)
        raise PrismaUnavailable(f"{missing} not found (apt-get install nodejs npm)")
    version = node_version(node)
    if not supported(version):
        raise PrismaUnavailable(
            f"node {'.'.join(map(str, version))} is too old for Prisma 7 (needs ^20.19, ^22.12 or >= 24)"
        )
    return node, npm, version


def _digest(files: Sequence[Path], *extra: str) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    for e in extra:
        h.update(e.encode() + b"\0")
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(args: list[str], cwd: Path, what: str, timeout: float) -> None:
    env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false",
           "npm_config_audit": "false", "CHECKPOINT_DISABLE": "1"}  # fmt: skip
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}) in {cwd}:\n{done.stdout}\n{done.stderr}")


def install(node: str, npm: str, version: tuple[int, int, int], root: Path | None = None) -> Path:
    """The generated client's directory (holding read.mjs), installing what is missing."""
    root = root or cache_root()
    deps = root / f"prisma-{_digest([PROJECT / f for f in DEPENDENCY_FILES], f'node{version[0]}')}"
    with _locked(deps.with_name(deps.name + ".lock")):
        if not (deps / READY).exists():
            shutil.rmtree(deps, ignore_errors=True)
            deps.mkdir(parents=True)
            for f in DEPENDENCY_FILES:
                shutil.copy2(PROJECT / f, deps / f)
            # No install scripts: @prisma/engines' postinstall would fetch a native engine from
            # binaries.prisma.sh, which the Rust-free client never uses.
            _run([npm, "ci", "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund",
                  "--loglevel=error"], deps, "npm ci", timeout=900)  # fmt: skip
            (deps / READY).touch()
        client = deps / f"client-{_digest([PROJECT / f for f in SCRIPT_FILES] + [APP_MODELS])}"
        if not (client / READY).exists():
            shutil.rmtree(client, ignore_errors=True)
            client.mkdir()
            for f in SCRIPT_FILES:
                shutil.copy2(PROJECT / f, client / f)
            _run([node, "generate.mjs", "--models", str(APP_MODELS), "--out", str(client / "generated")],
                 client, "prisma generate", timeout=300)  # fmt: skip
            (client / READY).touch()
    return client


def node_database_url(url: str) -> str:
    """A libpq-style URL that node-postgres (WHATWG URL parsing) reads the same way.

    - a unix-socket directory as the host (`postgresql://%2Ftmp%2Fpg/db`) moves to `?host=`;
    - an empty host (`postgresql://user@:5433/db?host=/tmp/pg`, `postgresql:///db`) gets the
      placeholder `localhost`, which `?host=` overrides (without it: localhost, not libpq's
      default socket directory)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    host, port = hostport, ""
    if not hostport.startswith("[") and ":" in hostport:
        host, port = hostport.rsplit(":", 1)
    if unquote(host).startswith("/"):
        query = [(k, v) for k, v in query if k != "host"] + [("host", unquote(host))]
        host = ""
    if not host:
        host = "localhost"
    netloc = (userinfo + "@" if userinfo else "") + host + (":" + port if port else "")
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, quote_via=quote, safe="/")))


def _encode(value: Any) -> Any:
    """Arguments (e.g. a `where` on a DateTime) as Prisma takes them: ISO-8601 strings; a naive
    datetime is taken as UTC, like the app's timestamp(3) columns."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot pass {type(value).__name__} to Prisma")


_TAGS = {
    "$date": datetime.fromisoformat,  # aware, UTC (Prisma reads timestamp(3) as UTC)
    "$bigint": int,
    "$decimal": Decimal,
    "$bytes": base64.b64decode,
}


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        [(key, value)] = obj.items()
        if key in _TAGS and isinstance(value, str):
            return _TAGS[key](value)
    return obj


@dataclass(frozen=True)
class PrismaReader:
    """`findMany` through Prisma Client 7 + @prisma/adapter-pg, one node process per call."""

    node: str
    client_dir: Path  # holds read.mjs and generated/client/

    def read(self, database_url: str, model: str, where: dict[str, Any] | None = None,
             **args: Any) -> list[dict[str, Any]]:  # fmt: skip
        """`prisma[model].findMany({where, **args})` — `model` is the delegate name
        (`creditBalance`, `usageHistory`, `user`…), `args` other findMany arguments as Prisma
        spells them (`orderBy=`, `include=`, `select=`, `take=`). DateTime values come back as
        aware UTC datetimes, Json fields as parsed JSON, BigInt as int, Decimal as Decimal."""
        request = {"model": model, **({"where": where} if where is not None else {}), **args}
        return self.read_many(database_url, [request])[0]

    def read_many(self, database_url: str, requests: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """Several `{"model": …, **findMany args}` requests on one client and connection."""
        done = subprocess.run(
            [self.node, str(self.client_dir / "read.mjs"), node_database_url(database_url)],
            input=json.dumps(list(requests), default=_encode), capture_output=True, text=True,
            timeout=120, cwd=self.client_dir,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"read.mjs failed (exit {done.returncode}):\n{done.stderr}")
        return json.loads(done.stdout, object_hook=_untag)


def make_reader() -> PrismaReader:
    node, npm, version = find_node()
    return PrismaReader(node=node, client_dir=install(node, npm, version))


@pytest.fixture(scope="session")
def prisma_reader() -> PrismaReader:
    """A Prisma Client reader (see `PrismaReader.read`), installed once per machine."""
    try:
        return make_reader()
    except PrismaUnavailable as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{e}: CI must run the Prisma Client tests (.ci/run installs node and npm)")
        pytest.skip(str(e))
