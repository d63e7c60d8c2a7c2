"""What the providers send: the test secrets, and signatures computed here independently of
the libraries the ingress uses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

API_TOKEN = "test-api-token-1"
ASAAS_TOKEN = "asaas-token-&-secret"
CLERK_SECRET = "whsec_" + base64.b64encode(b"clerk-signing-secret-for-tests!!").decode()
BLOB_TOKEN = "vercel_blob_rw_test_token"


def clerk_headers(body: bytes, *, msg_id: str, timestamp: int | None = None, secret: str = CLERK_SECRET,
                  extra_signatures: tuple[str, ...] = ()) -> dict[str, str]:  # fmt: skip
    """Svix headers as Clerk sends them, signed here independently of the svix library."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    signatures = " ".join([*extra_signatures, "v1," + base64.b64encode(mac).decode()])
    return {"svix-id": msg_id, "svix-timestamp": ts, "svix-signature": signatures,
            "content-type": "application/json"}  # fmt: skip


def vercel_headers(body: bytes, token: str = BLOB_TOKEN) -> dict[str, str]:
    return {"x-vercel-signature": hmac.new(token.encode(), body, hashlib.sha256).hexdigest(),
            "content-type": "application/json"}  # fmt: skip


def as_body(payload: Any) -> bytes:
    return json.dumps(payload).encode()
