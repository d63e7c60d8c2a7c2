"""POST /webhooks/vercel-blob: Vercel Blob's upload-completed callback -> `storage.object_created`.

The callback is signed (`x-vercel-signature`, auth.py) and carries `payload.blob` (url,
downloadUrl, pathname, contentType, contentDisposition, sometimes etag) and
`payload.tokenPayload`, the JSON string the app set when it issued the upload token: it names
the Clerk user (`clerkUserId`) and may give the `size`. The callback has no event id: the object
id is derived from the pathname (+ etag when present), so a repeated callback is the same event.
When the size is missing it is read with HTTP HEAD on the blob URL (timeout, retries); if that
fails we answer 503 so that the callback is retried, rather than store a wrong size.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import PurePosixPath
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse

from ...events import INT32_MAX
from ..auth import require_vercel_signature
from ..context import ingress
from ..http import HttpError, log, parse_json, read_body
from .common import accept, checked, ignore

UPLOAD_COMPLETED = "blob.upload-completed"
_FILENAME = re.compile(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', re.IGNORECASE)


def object_id(pathname: str, etag: str | None) -> str:
    """Stable "StorageObject" id for a blob: the same upload always gets the same id."""
    digest = hashlib.sha256(f"{pathname}\n{etag or ''}".encode()).hexdigest()
    return f"blob_{digest[:32]}"


def _valid_size(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= INT32_MAX
    return value if ok else None


def _token_payload(raw: Any) -> dict[str, Any]:
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise HttpError(400, "invalid_payload", "tokenPayload is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("clerkUserId"), str):
        raise HttpError(400, "invalid_payload", "tokenPayload must carry clerkUserId")
    return data


def parse_upload(payload: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(blob, tokenPayload) of an upload-completed callback, or None for other callbacks."""
    if not isinstance(payload, dict) or payload.get("type") != UPLOAD_COMPLETED:
        return None
    inner = payload.get("payload")
    blob = inner.get("blob") if isinstance(inner, dict) else None
    if (
        not isinstance(blob, dict)
        or not isinstance(blob.get("pathname"), str)
        or not isinstance(blob.get("url"), str)
    ):
        raise HttpError(400, "invalid_payload", "payload.blob must have url and pathname")
    return blob, _token_payload(inner.get("tokenPayload"))


def to_storage_event(blob: dict[str, Any], token: dict[str, Any], size: int) -> dict[str, Any]:
    pathname = blob["pathname"]
    match = _FILENAME.search(blob.get("contentDisposition") or "")
    event = {
        "type": "storage.object_created", "id": object_id(pathname, blob.get("etag")),
        "clerkUserId": token["clerkUserId"], "provider": "vercel_blob", "url": blob["url"],
        "pathname": pathname, "name": (match[1] if match else PurePosixPath(pathname).name or pathname)[:512],
        "contentType": blob.get("contentType"), "size": size,
    }  # fmt: skip
    return checked(event)


async def head_size(client: httpx.AsyncClient, url: str, *, timeout_s: float, retries: int) -> int:
    """Content-Length of a blob, by HTTP HEAD with retries; 503 when it cannot be had."""
    problem = "not tried"
    for attempt in range(retries + 1):
        if attempt:
            await asyncio.sleep(0.2 * 2 ** (attempt - 1))
        try:
            response = await client.head(url, timeout=timeout_s, follow_redirects=True)
        except httpx.HTTPError as exc:
            problem = type(exc).__name__
            continue
        length = response.headers.get("content-length", "")
        size = _valid_size(int(length)) if length.isdigit() else None
        if response.status_code == 200 and size is not None:
            return size
        problem = (
            f"HTTP {response.status_code}"
            if response.status_code != 200
            else "no valid Content-Length"
        )
    log.warning("blob_head_failed", problem=problem, attempts=retries + 1)
    raise HttpError(
        503, "blob_size_unavailable", f"could not read the blob's size ({problem}); retry later"
    )


async def vercel_blob_webhook(request: Request) -> JSONResponse:
    state = ingress(request)
    settings = state.settings
    body = await read_body(request, settings.ingress_max_body_bytes)
    require_vercel_signature(request, settings.blob_read_write_token, body)
    payload = parse_json(body)
    parsed = parse_upload(payload)
    if parsed is None:
        return ignore(
            request, "vercel_blob", payload.get("type") if isinstance(payload, dict) else None
        )
    blob, token = parsed
    size = _valid_size(token.get("size"))
    if size is None:
        if not blob["url"].startswith(("https://", "http://")):
            raise HttpError(400, "invalid_payload", "blob url must be http(s)")
        assert state.http is not None
        size = await head_size(state.http, blob["url"], timeout_s=settings.blob_head_timeout_ms / 1000,
                               retries=settings.blob_head_retries)  # fmt: skip
    return await accept(request, "vercel_blob", to_storage_event(blob, token, size))
