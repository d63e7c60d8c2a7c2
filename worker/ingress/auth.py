"""Who may hand us events: bearer tokens, Asaas's access token, Svix and Vercel signatures.

Every comparison of a secret is constant-time (`hmac.compare_digest`). A failure is a 401 that
names what failed, never what was expected. An endpoint whose secret is not configured answers
503 (fail closed: nothing is accepted without authentication).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from pydantic import SecretStr
from starlette.requests import Request
from svix.webhooks import Webhook, WebhookVerificationError

from ..errors import ConfigError
from .http import HttpError


def _same(presented: str, expected: str) -> bool:
    return hmac.compare_digest(presented.encode(), expected.encode())


def _not_configured(what: str) -> HttpError:
    return HttpError(503, "not_configured", f"{what} is not configured on this server")


def require_bearer(request: Request, tokens: Sequence[SecretStr]) -> None:
    """`Authorization: Bearer <token>` with one of the configured API tokens."""
    if not tokens:
        raise _not_configured("PEDRO_API_TOKENS")
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    matched = False
    if scheme.lower() == "bearer" and presented:
        for token in tokens:  # no early exit: the time taken does not say which token matched
            matched |= _same(presented.strip(), token.get_secret_value())
    if not matched:
        raise HttpError(401, "unauthorized", "missing or invalid bearer token",
                        headers={"WWW-Authenticate": 'Bearer realm="pedro-worker"'})  # fmt: skip


def require_asaas_token(request: Request, token: SecretStr | None) -> None:
    """Asaas sends the token configured on its webhook in the `asaas-access-token` header."""
    if token is None:
        raise _not_configured("ASAAS_WEBHOOK_TOKEN")
    if not _same(request.headers.get("asaas-access-token", ""), token.get_secret_value()):
        raise HttpError(401, "unauthorized", "missing or invalid asaas-access-token header")


def clerk_verifier(secret: SecretStr | None) -> Webhook | None:
    """Svix's verifier for the Clerk signing secret (`whsec_<base64>`); checked at start-up."""
    if secret is None:
        return None
    try:
        return Webhook(secret.get_secret_value())
    except Exception as exc:
        raise ConfigError(
            f"CLERK_WEBHOOK_SECRET is not a Svix signing secret ({type(exc).__name__})"
        ) from None


def require_svix_signature(request: Request, verifier: Webhook | None, body: bytes) -> None:
    """HMAC-SHA256 over `{svix-id}.{svix-timestamp}.{body}`; any of the space-separated `v1,…`
    signatures may match; timestamps more than 5 minutes away are refused (official library)."""
    if verifier is None:
        raise _not_configured("CLERK_WEBHOOK_SECRET")
    headers = {
        name: request.headers.get(name, "")
        for name in ("svix-id", "svix-timestamp", "svix-signature")
    }
    try:
        verifier.verify(body, headers)
    except WebhookVerificationError as exc:
        raise HttpError(
            401, "invalid_signature", f"Svix signature verification failed: {exc}"
        ) from None
    except ValueError:  # malformed signature list, bad base64, body not UTF-8
        raise HttpError(
            401, "invalid_signature", "Svix signature verification failed: malformed headers"
        ) from None


def require_vercel_signature(request: Request, token: SecretStr | None, body: bytes) -> None:
    """`x-vercel-signature` = hex HMAC-SHA256 of the raw body, keyed with the blob read-write token."""
    if token is None:
        raise _not_configured("BLOB_READ_WRITE_TOKEN")
    expected = hmac.new(token.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
    if not _same(request.headers.get("x-vercel-signature", "").strip().lower(), expected):
        raise HttpError(401, "invalid_signature", "missing or invalid x-vercel-signature header")
