"""A real PgBouncer in transaction mode in front of a PostgreSQL server, for the bench
(`--pgbouncer`), the chaos run (`chaos --pgbouncer`) and the topology tests.

It listens on a free loopback port and sends every database name to the same-named database of
the server (`* = host=… port=…`), so the per-test and per-measurement databases need no entry
of their own. Clients are trusted (`auth_type = trust`, as the embedded PostgreSQL trusts its
loopback clients); PgBouncer still wants every user name it accepts in its `auth_file`.

PgBouncer refuses to run as root: as root it drops to `nobody` (`-u`), which is why its files
are world-readable (they hold no secret: no passwords). It logs to stderr, which goes to
`pgbouncer.log` in its directory. It is started in a session of its own and stopped with
`os.killpg`, so nothing of it outlives the test or the run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from worker.embedded import _wait_for_port, free_port

BINARY_CANDIDATES = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")


def find_pgbouncer() -> str | None:
    for path in (shutil.which("pgbouncer"), *BINARY_CANDIDATES):
        if path and os.access(path, os.X_OK):
            return path
    return None


class PgBouncer:
    """`with PgBouncer(pg_url, users=[…]) as bouncer: bouncer.url_for(database_url)`."""

    def __init__(self, pg_url: str, *, users: tuple[str, ...] = ("postgres",), pool_size: int = 20,
                 binary: str | None = None, settings: dict[str, str] | None = None) -> None:  # fmt: skip
        """`pool_size`: server connections per (database, user) pair (`default_pool_size`);
        `settings`: more `[pgbouncer]` lines, which win."""
        found = binary or find_pgbouncer()
        if found is None:
            raise RuntimeError("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
        self.binary = found
        server = urlsplit(pg_url)
        self.server_host = server.hostname or "127.0.0.1"
        self.server_port = server.port or 5432
        self.users = users
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pedro-pgbouncer-"))
        self.settings = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(self.dir / "users.txt"),
            "pool_mode": "transaction",
            "default_pool_size": str(pool_size),
            "min_pool_size": "0",
            "reserve_pool_size": "0",
            "max_client_conn": "2000",
            "max_db_connections": "0",
            "server_lifetime": "3600",
            "server_idle_timeout": "600",
            # after a failed server login (PostgreSQL restarting) try again in 1 s, not the
            # default 15 s: a crash test would otherwise measure PgBouncer's back-off
            "server_login_retry": "1",
            "log_connections": "0",
            "log_disconnections": "0",
            **(settings or {}),
        }
        self.proc: subprocess.Popen | None = None
        self._log = None

    def url_for(self, url: str) -> str:
        """`url` (a database on the server behind it) as reached through this PgBouncer."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{self.port}"))

    def _write_config(self) -> Path:
        self.dir.chmod(0o755)
        users = self.dir / "users.txt"
        users.write_text("".join(f'"{user}" ""\n' for user in self.users))
        config = self.dir / "pgbouncer.ini"
        lines = ["[databases]", f"* = host={self.server_host} port={self.server_port}", "", "[pgbouncer]"]
        lines += [f"{key} = {value}" for key, value in self.settings.items()]
        config.write_text("\n".join(lines) + "\n")
        for path in (users, config):
            path.chmod(0o644)
        return config

    def start(self) -> PgBouncer:
        config = self._write_config()
        command = [self.binary]
        if os.name == "posix" and os.geteuid() == 0:
            command += ["-u", "nobody"]  # it will not run as root
        self._log = open(self.dir / "pgbouncer.log", "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen([*command, str(config)], stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        try:
            _wait_for_port(self.port, self.proc, 10, "pgbouncer")
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{exc}: {self.log_tail()}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # its session: nothing of it is left
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None

    def version(self) -> str:
        """`1.18.0`, from `pgbouncer --version`."""
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True, timeout=10).stdout
        first = out.splitlines()[0] if out else ""
        return first.split()[-1] if first.startswith("PgBouncer") else "?"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.dir / "pgbouncer.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
