"""Who may see the dashboard and /metrics, and which POSTs are the operator's own.

Credentials come from settings: `PEDRO_OPS_TOKEN` (an `Authorization: Bearer` header, or typed
once into the login form, which sets a signed session cookie — never the token itself) and/or
`PEDRO_OPS_BASIC_AUTH` (`user:password`, the browser's own prompt). With neither, the dashboard
is closed unless `PEDRO_OPS_ALLOW_ANONYMOUS` (what `pedro-worker dev` sets on loopback).

POSTs that change state need a CSRF token tied to the session (HMAC of it) in the
`X-CSRF-Token` header, and an `Origin` (when the browser sends one) of this very host: a cookie
or basic credentials that a browser attaches by itself never suffice. Bearer requests are not
sent by browsers on their own, so they need no CSRF token. Credentials are compared in
constant time and never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request

from ..settings import Settings

SESSION_COOKIE = "pedro_ops_session"
SESSION_TTL_S = 12 * 3600


@dataclass(frozen=True)
class Principal:
    kind: str  # "bearer", "basic", "session", "anonymous"
    session: str = ""  # what the CSRF token is bound to

    @property
    def needs_csrf(self) -> bool:
        return self.kind != "bearer"


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class OpsAuth:
    def __init__(self, settings: Settings) -> None:
        self.token = settings.ops_token.get_secret_value() if settings.ops_token else None
        self.basic = settings.ops_basic_auth.get_secret_value() if settings.ops_basic_auth else None
        self.anonymous = settings.ops_allow_anonymous
        material = f"pedro-ops\0{self.token or ''}\0{self.basic or ''}".encode()
        # Derived from the credentials, so every web instance agrees and rotating them logs
        # everyone out; random when there are none (anonymous dev mode).
        self.key = (
            hashlib.sha256(material).digest()
            if (self.token or self.basic)
            else secrets.token_bytes(32)
        )

    @property
    def configured(self) -> bool:
        return bool(self.token or self.basic or self.anonymous)

    @property
    def uses_login_form(self) -> bool:
        return bool(self.token) and not self.basic

    def _sign(self, purpose: str, value: str) -> str:
        return hmac.new(self.key, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()

    # --- sessions ---------------------------------------------------------------------------

    def check_token(self, candidate: str) -> bool:
        return bool(self.token) and _equal(candidate, self.token or "")

    def new_session(self, now: float | None = None) -> str:
        expires = int((now or time.time()) + SESSION_TTL_S)
        nonce = secrets.token_hex(8)
        return f"{expires}.{nonce}.{self._sign('session', f'{expires}.{nonce}')}"

    def _valid_session(self, cookie: str) -> bool:
        try:
            expires, nonce, signature = cookie.split(".")
            alive = int(expires) > time.time()
        except ValueError:
            return False
        return alive and _equal(signature, self._sign("session", f"{expires}.{nonce}"))

    # --- requests ---------------------------------------------------------------------------

    def authenticate(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self.token and _equal(value.strip(), self.token):
            return Principal("bearer")
        if scheme.lower() == "basic" and self.basic:
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            if decoded and _equal(decoded, self.basic):
                return Principal("basic", "basic")
        cookie = request.cookies.get(SESSION_COOKIE, "")
        if cookie and self.token and self._valid_session(cookie):
            return Principal("session", cookie)
        if self.anonymous:
            return Principal("anonymous", "anonymous")
        return None

    def csrf_token(self, principal: Principal) -> str:
        return self._sign("csrf", principal.session)

    def check_csrf(
        self, request: Request, principal: Principal, supplied: str | None = None
    ) -> bool:
        """`supplied`: the token from a form field; otherwise the X-CSRF-Token header."""
        if not principal.needs_csrf:
            return True
        origin = request.headers.get("origin")
        if (
            origin
            and origin != "null"
            and urlsplit(origin).netloc != request.headers.get("host", "")
        ):
            return False
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return False
        supplied = supplied or request.headers.get("x-csrf-token", "")
        return bool(supplied) and _equal(supplied, self.csrf_token(principal))
