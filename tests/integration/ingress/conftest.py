"""The ingress on a real uvicorn server (publishing to the test's Redis namespace, so the
`worker` fixture applies what it accepts) and a local stand-in for blob storage."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from pydantic import SecretStr

from tests.integration.ingress.providers import API_TOKEN, ASAAS_TOKEN, BLOB_TOKEN, CLERK_SECRET
from worker.ingress.server import IngressServer
from worker.settings import Settings


@pytest.fixture
def ingress_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={
        "api_tokens": [SecretStr("another-token"), SecretStr(API_TOKEN)],
        "asaas_webhook_token": SecretStr(ASAAS_TOKEN),
        "clerk_webhook_secret": SecretStr(CLERK_SECRET),
        "blob_read_write_token": SecretStr(BLOB_TOKEN),
        "blob_head_timeout_ms": 1000, "blob_head_retries": 1,
        "ingress_max_body_bytes": 512 * 1024,
    })  # fmt: skip


@pytest.fixture
def ingress(ingress_settings: Settings) -> Iterator[httpx.Client]:
    """An HTTP client on the real ingress (uvicorn, loopback), publishing to the test's Redis
    namespace, so the `worker` fixture applies what it accepts."""
    with (
        IngressServer(ingress_settings) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        yield client


class BlobServer:
    """A local stand-in for blob storage: HEAD answers Content-Length, and the `headers` set
    for the path (ETag, Last-Modified), or fails on purpose."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.failures_left = 0
        self.heads: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                server.heads.append(self.path)
                if server.failures_left > 0 or self.path not in server.sizes:
                    server.failures_left -= 1
                    self.send_response(503 if self.path in server.sizes else 404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(server.sizes[self.path]))
                for name, value in server.headers.get(self.path, {}).items():
                    self.send_header(name, value)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def blob_server() -> Iterator[BlobServer]:
    server = BlobServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()
