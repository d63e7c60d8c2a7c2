"""TLS everywhere (issue 22, point 4): `rediss://` to a TLS-only Redis and `sslmode=verify-full`
to a `hostssl`-only PostgreSQL, with a CA made here. A real `pedro-worker worker` and a real
ingress apply events and place holds through both; the CLIs work the same way; a server whose
certificate does not name the host, or one signed by a CA the client does not trust, is refused,
and so is a plaintext client on the TLS port.

Debian's redis-server and PostgreSQL (the embedded ones have no TLS): skipped when missing
locally, a failure in CI (tests/integration/topology/servers.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from tests.integration.helpers import balance, make_user, usage
from tests.integration.ingress.providers import API_TOKEN
from tests.integration.topology.servers import debian_postgres_bin, require_binary
from tests.integration.topology.tls import CERT_ROLE, OTHER_ADDRESS, Ca, TlsPostgres, TlsRedis, encrypt_key
from worker import db
from worker.embedded import free_port
from worker.settings import SQL_DIR, mask_url

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
WORKER_PASSWORD = "worker-pw-9"
KEY_PASSPHRASE = "key-pass-7"  # the client keys' (mutual TLS), given in the URL
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@dataclass
class Tls:
    ca: Ca
    other_ca: Ca  # a CA nobody's certificate comes from: a client trusting it must refuse the servers
    client_cert: tuple[Path, Path]  # from `ca`: mutual TLS, CN=pedro_cert; its key encrypted (KEY_PASSPHRASE)
    stranger_cert: tuple[Path, Path]  # from `other_ca`, same CN, key not encrypted
    pg: TlsPostgres
    redis: TlsRedis  # server TLS (tls-auth-clients no)
    mutual: TlsRedis  # tls-auth-clients yes
    renamed: TlsRedis  # its certificate names `db.other.example` only

    def pg_url(self, *, user: str = "postgres", password: str = "owner-pw-1", database: str = "pedro",
               ca: Ca | None = None, **params: str) -> str:  # fmt: skip
        params = params or {"sslmode": "verify-full", "sslrootcert": str((ca or self.ca).cert)}
        return self.pg.url(user=user, password=password, database=database, **params)

    def redis_url(self, server: TlsRedis | None = None, *, ca: Ca | None = None, **params: str) -> str:
        params = {"ssl_ca_certs": str((ca or self.ca).cert), "ssl_cert_reqs": "required", **params}
        return (server or self.redis).url(**params)


@pytest.fixture(scope="module")
def tls() -> Iterator[Tls]:
    redis_server = require_binary("redis-server", "/usr/bin/redis-server")
    bin_dir = debian_postgres_bin()
    require_binary("openssl")
    directory = Path(tempfile.mkdtemp(prefix="pedro-tls-"))
    directory.chmod(0o755)  # PostgreSQL's own user reads its certificate
    started: list[TlsPostgres | TlsRedis] = []
    try:
        ca, other_ca = Ca.make(directory, "ca"), Ca.make(directory, "other-ca")
        cert, key = ca.issue("server")
        renamed_cert, renamed_key = ca.issue("renamed", dns=("db.other.example",), ips=())
        pg = TlsPostgres(bin_dir, ca, cert, key).start()
        started.append(pg)
        servers = []
        for args, auth in (((cert, key), "no"), ((cert, key), "yes"), ((renamed_cert, renamed_key), "no")):
            servers.append(TlsRedis(redis_server, ca, *args, tls_auth_clients=auth).start())
            started.append(servers[-1])
        client_cert, client_key = ca.issue("client", dns=(), ips=(), cn=CERT_ROLE)
        yield Tls(ca, other_ca, (client_cert, encrypt_key(client_key, KEY_PASSPHRASE)),
                  other_ca.issue("stranger", dns=(), ips=(), cn=CERT_ROLE), pg, *servers)  # fmt: skip
    finally:
        for server in reversed(started):
            server.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


def _cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def _env(database_url: str | None, redis_url: str | None, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({"PEDRO_LOG_FORMAT": "json", **more})
    for name, value in (("PEDRO_DATABASE_URL", database_url), ("PEDRO_REDIS_URL", redis_url)):
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


@pytest.fixture(scope="module")
def schema(tls: Tls) -> str:
    """Database `pedro` with the app's tables and the worker's migrations, made by `pedro-worker
    migrate --with-app-schema` over verify-full, and the least-privilege role with a password.
    Returns the worker's URL (as pedro_worker, verify-full)."""

    async def create() -> None:
        admin = await asyncpg.connect(tls.pg_url(database="postgres"))
        try:
            await admin.execute('CREATE DATABASE "pedro"')
        finally:
            await admin.close()

    asyncio.run(create())
    done = _cli("migrate", "--with-app-schema", env=_env(tls.pg_url(), None))
    assert done.returncode == 0, done.stdout + done.stderr

    async def roles() -> None:
        conn = await asyncpg.connect(tls.pg_url())
        try:
            await conn.execute((SQL_DIR / "roles" / "least_privilege.sql").read_text())
            await conn.execute(f"ALTER ROLE pedro_worker PASSWORD '{WORKER_PASSWORD}'")
            await conn.execute(f"CREATE ROLE {CERT_ROLE} LOGIN")  # pg_hba: `cert` auth only
        finally:
            await conn.close()

    asyncio.run(roles())
    return tls.pg_url(user="pedro_worker", password=WORKER_PASSWORD)


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "worker.cli", *args], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


async def _until(probe, timeout: float = 40.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


# --- end to end ----------------------------------------------------------------------------------


async def test_worker_ingress_and_clis_apply_events_and_holds_over_tls_only(tls: Tls, schema: str, tmp_path: Path):
    redis_url = tls.redis_url()
    namespace = f"pedro-tls-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = _env(schema, redis_url, PEDRO_REDIS_NAMESPACE=namespace, PEDRO_INGRESS_PORT=str(port),
               PEDRO_API_TOKENS=API_TOKEN, PEDRO_WAITING_SWEEP_MS="200")  # fmt: skip
    conn = await db.connect(tls.pg_url())
    worker = _start(["worker", "--processes", "1", "--threads", "2"], env, tmp_path / "worker.log")
    ingress = _start(["ingress"], env, tmp_path / "ingress.log")
    try:
        await make_user(conn, "user_tls", credits=100)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=10) as api:

            async def up() -> bool:
                try:
                    return (await api.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            assert await _until(up), (tmp_path / "ingress.log").read_text()
            ready = await api.get("/readyz")
            assert ready.status_code == 200 and ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}

            # events: ingress -> rediss:// -> worker -> verify-full -> PostgreSQL
            posted = await api.post("/v1/events", json=[usage("user_tls", id="tls-1", credits=5),
                                                          usage("user_tls", id="tls-2", credits=10)])  # fmt: skip
            assert posted.status_code in (200, 202), posted.text

            async def applied() -> bool:
                return await balance(conn, "user_tls") == 85

            assert await _until(applied), (tmp_path / "worker.log").read_text()[-4000:]

            # the credit API: answered from PostgreSQL by the ingress's own pool (verify-full)
            hold = await api.post("/v1/holds", json={"id": "hold-tls", "clerkUserId": "user_tls",
                                                     "operationType": "AI_TEXT_CHAT", "credits": 20})  # fmt: skip
            assert hold.status_code == 201, hold.text
            assert await balance(conn, "user_tls") == 65
            captured = await api.post("/v1/holds/hold-tls/capture", json={"credits": 15})
            assert captured.status_code == 200, captured.text
            assert captured.json()["balance"]["remaining"] == 70
            read = await api.get("/v1/users/user_tls/balance")
            assert read.status_code == 200 and read.json()["remaining"] == 70, read.text

        # every session the worker and the ingress opened is encrypted (pg_hba has hostssl only)
        sessions = await conn.fetch(
            "SELECT s.usename, x.ssl, x.version FROM pg_stat_activity s JOIN pg_stat_ssl x USING (pid) "
            "WHERE s.datname = 'pedro' AND s.usename = 'pedro_worker'")  # fmt: skip
        assert sessions and all(r["ssl"] and r["version"] in ("TLSv1.2", "TLSv1.3") for r in sessions), sessions
    finally:
        _stop(ingress)
        _stop(worker)
        await conn.close()
    for name in ("worker.log", "ingress.log"):
        text = (tmp_path / name).read_text()
        assert WORKER_PASSWORD not in text, f"{name} shows the database password"

    # the CLIs, over the same URLs
    check = _cli("check", env=env)
    assert check.returncode == 0 and "postgres: ok" in check.stdout and "redis: ok" in check.stdout, check.stdout
    reconcile = _cli("reconcile", "--json", env=env)
    assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr
    assert json.loads(reconcile.stdout.strip().splitlines()[-1])["drift"] == []
    stats = _cli("stats", "--json", env=env)
    assert stats.returncode == 0, stats.stdout + stats.stderr
    report = json.loads(stats.stdout)
    assert report["ledger"]["reconcile"] is not None, report  # reconcile stored it in Redis over TLS


# --- what is refused -----------------------------------------------------------------------------


async def test_postgres_verify_full_refuses_a_name_not_in_the_certificate_and_an_untrusted_ca(tls: Tls, schema: str):
    # by a name the certificate does not carry (127.0.0.2 reaches the same server)
    wrong_host = tls.pg.url(host=OTHER_ADDRESS, database="pedro", sslmode="verify-full", sslrootcert=str(tls.ca.cert))
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        await asyncpg.connect(wrong_host)
    # verify-ca checks the chain only: the same name is accepted (why verify-full is the one to use)
    conn = await asyncpg.connect(wrong_host.replace("verify-full", "verify-ca"))
    await conn.close()
    # a client that trusts another CA
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        await asyncpg.connect(tls.pg_url(ca=tls.other_ca))
    # no TLS at all: pg_hba has hostssl lines only
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await asyncpg.connect(tls.pg_url(sslmode="disable"))
    # the operator's view: `check` says which server and that the certificate was refused
    done = _cli("check", env=_env(tls.pg_url(ca=tls.other_ca), tls.redis_url()))
    assert done.returncode == 1 and "postgres: unreachable (SSLCertVerificationError: " in done.stdout and "certificate verify failed" in done.stdout, done.stdout


def _ping(url: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
    try:
        client.ping()
    finally:
        client.close()


def test_rediss_refuses_a_certificate_for_another_host_an_untrusted_ca_and_plaintext(tls: Tls):
    _ping(tls.redis_url())
    with pytest.raises(redis.ConnectionError, match="Hostname mismatch"):
        _ping(tls.redis_url(tls.renamed))
    with pytest.raises(redis.ConnectionError, match="IP address mismatch"):
        _ping(tls.redis_url().replace("localhost", OTHER_ADDRESS))
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        _ping(tls.redis_url(ca=tls.other_ca))
    # `rediss://` alone verifies too (redis-py: ssl_cert_reqs=required, hostname checked), against
    # the system's CAs: a managed Redis with a public certificate needs no parameter at all
    with pytest.raises(redis.ConnectionError, match="self-signed certificate in certificate chain"):
        _ping(tls.redis.url())
    # plaintext to the TLS port: the server drops it (port 0: there is no plaintext port)
    with pytest.raises(redis.ConnectionError):
        _ping(f"redis://localhost:{tls.redis.port}/0")
    done = _cli("stats", env=_env(None, f"redis://localhost:{tls.redis.port}/0"), timeout=60)
    assert done.returncode == 1 and "redis unreachable" in done.stderr, done.stdout + done.stderr


def test_mutual_tls_redis_takes_the_client_certificate_from_the_url(tls: Tls):
    cert, key = tls.client_cert
    mutual = tls.redis_url(tls.mutual, ssl_certfile=str(cert), ssl_keyfile=str(key), ssl_password=KEY_PASSPHRASE)
    _ping(mutual)
    with pytest.raises(redis.ConnectionError):
        _ping(tls.redis_url(tls.mutual))  # no client certificate
    stranger_cert, stranger_key = tls.stranger_cert
    with pytest.raises(redis.ConnectionError):
        _ping(tls.redis_url(tls.mutual, ssl_certfile=str(stranger_cert), ssl_keyfile=str(stranger_key)))
    done = _cli("stats", "--json", env=_env(None, mutual))
    assert done.returncode == 0, done.stdout + done.stderr


async def test_postgres_client_certificate_logs_in_by_its_cn_with_the_key_passphrase_in_the_url(tls: Tls, schema: str):
    cert, key = tls.client_cert
    with_cert = tls.pg.url(user=CERT_ROLE, password=None, database="pedro", sslmode="verify-full",
                           sslrootcert=str(tls.ca.cert), sslcert=str(cert), sslkey=str(key),
                           sslpassword=KEY_PASSPHRASE)  # fmt: skip
    conn = await db.connect(with_cert)
    try:
        assert await conn.fetchval("SELECT current_user") == CERT_ROLE
        assert await conn.fetchval("SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == f"/CN={CERT_ROLE}"
    finally:
        await conn.close()
    assert KEY_PASSPHRASE not in mask_url(with_cert) and "sslpassword=***" in mask_url(with_cert)
    # pg_hba's `cert` line: no certificate, no login (and no password fallback)
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="certificate"):
        await asyncpg.connect(tls.pg.url(user=CERT_ROLE, password=None, database="pedro", sslmode="verify-full",
                                         sslrootcert=str(tls.ca.cert)))  # fmt: skip
    # a certificate from another CA, same CN: refused in the handshake
    stranger_cert, stranger_key = tls.stranger_cert
    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        await asyncpg.connect(tls.pg.url(user=CERT_ROLE, password=None, database="pedro", sslmode="verify-full",
                                         sslrootcert=str(tls.ca.cert), sslcert=str(stranger_cert),
                                         sslkey=str(stranger_key)))  # fmt: skip


def test_a_worker_whose_database_certificate_fails_verification_does_not_boot(tls: Tls, schema: str, tmp_path: Path):
    env = _env(tls.pg_url(user="pedro_worker", password=WORKER_PASSWORD, ca=tls.other_ca), tls.redis_url(),
               PEDRO_REDIS_NAMESPACE=f"pedro-tls-{uuid.uuid4().hex[:8]}")  # fmt: skip
    worker = _start(["worker", "--processes", "1", "--threads", "1"], env, tmp_path / "worker.log")
    try:
        code = worker.wait(60)
    finally:
        _stop(worker)
    log = (tmp_path / "worker.log").read_text()
    assert code != 0 and "WorkerBootError" in log and "certificate verify failed" in log, log[-3000:]
    assert WORKER_PASSWORD not in log


def test_a_worker_whose_redis_certificate_fails_verification_does_not_boot(tls: Tls, schema: str, tmp_path: Path):
    """A refused certificate is a configuration error, not an outage: the worker exits non-zero
    and says why (before, it booted and each consumer logged it every 3 s, consuming nothing).
    `pedro-worker check` exits 1 on it too: the health check to gate a deploy on."""
    env = _env(schema, tls.redis_url(ca=tls.other_ca), PEDRO_REDIS_NAMESPACE=f"pedro-tls-{uuid.uuid4().hex[:8]}")
    log = tmp_path / "worker.log"
    worker = _start(["worker", "--processes", "1", "--threads", "1"], env, log)
    try:
        assert worker.wait(60) != 0, log.read_text()[-3000:]
    finally:
        _stop(worker)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    failed = [line for line in lines if line["event"] == "worker_boot_failed"]
    assert failed and failed[0]["reason"] == "redis_certificate_refused", log.read_text()[-3000:]
    assert "self-signed certificate in certificate chain" in failed[0]["detail"]
    check = _cli("check", env=env)
    assert check.returncode == 1 and "redis: unreachable (ConnectionError: " in check.stdout and "certificate verify failed" in check.stdout, check.stdout


def test_mask_url_keeps_the_tls_parameters_and_hides_the_password(tls: Tls):
    url = tls.pg_url(user="pedro_worker", password=WORKER_PASSWORD)
    masked = mask_url(url)
    assert WORKER_PASSWORD not in masked and "pedro_worker:***@" in masked
    assert masked.endswith(f"?sslmode=verify-full&sslrootcert={tls.ca.cert}")
    assert mask_url("rediss://:s3cret@localhost:6380/0?ssl_cert_reqs=required") == \
        "rediss://:***@localhost:6380/0?ssl_cert_reqs=required"  # fmt: skip
    assert mask_url("rediss://localhost:6380/0?ssl_keyfile=/k.key&ssl_password=kp&ssl_cert_reqs=required") == \
        "rediss://localhost:6380/0?ssl_keyfile=/k.key&ssl_password=***&ssl_cert_reqs=required"  # fmt: skip


async def test_the_apps_prisma_client_reads_through_the_same_verify_full_url(tls: Tls, schema: str, prisma_reader):
    """Prisma 7 with @prisma/adapter-pg parses the URL with node-postgres: `sslmode=verify-full`
    and `sslrootcert` (a file path) mean what they mean to asyncpg and libpq."""
    assert isinstance(prisma_reader.read(tls.pg_url(), "creditBalance"), list)
    with pytest.raises(RuntimeError, match="self-signed certificate in certificate chain"):
        prisma_reader.read(tls.pg_url(ca=tls.other_ca), "creditBalance")
    with pytest.raises(RuntimeError, match="IP: 127.0.0.2 is not in the cert's list"):
        prisma_reader.read(tls.pg.url(host=OTHER_ADDRESS, database="pedro", sslmode="verify-full",
                                      sslrootcert=str(tls.ca.cert)), "creditBalance")  # fmt: skip
    # `sslmode=require` without a CA differs: node-postgres (pg-connection-string 2.x) verifies it
    # as verify-full, asyncpg (like libpq) encrypts without checking who answers
    require = tls.pg_url(sslmode="require")
    with pytest.raises(RuntimeError, match="self-signed certificate in certificate chain"):
        prisma_reader.read(require, "creditBalance")
    conn = await asyncpg.connect(require)
    await conn.close()
