"""POST /webhooks/vercel-blob: Vercel Blob's upload-completed callback -> `storage.object_created`.

The callback is signed (`x-vercel-signature`, auth.py) and carries `payload.blob` (url,
downloadUrl, pathname, contentType, contentDisposition, and with recent SDKs etag) and
`payload.tokenPayload`, the JSON string the app set when it issued the upload token: it names
the Clerk user (`clerkUserId`) and may give a `size`.

- Size: the callback's own `blob.size` if it has one, else HTTP HEAD on the blob URL (timeout,
  retries), else `tokenPayload.size` (what the app declared before the upload: a fallback),
  else none: the event is enqueued without a size and the worker reads it itself, the event
  waiting (`no_size`) until it can. The callback is never answered 503 for a missing size.
- Id: the callback has no event id. The object id is a digest of what tells one upload from
  another over the same pathname: the etag (the callback's, else the HEAD's), the upload time
  (`blob.uploadedAt`, else the HEAD's Last-Modified; also the event's `createdAt`), the size,
  content type, url, name and tokenPayload. A repeated callback is the same event (a duplicate);
  an upload over the same pathname (`allowOverwrite`) is another one, and the worker keeps one
  live row per user and pathname (docs/ingress.md, "Storage").
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ...blob_head import BlobHead, BlobHeadFailed, head_blob, valid_size
from ..auth import require_vercel_signature
from ..context import ingress
from ..http import HttpError, parse_json, read_body
from .common import accept, checked, ignore

UPLOAD_COMPLETED = "blob.upload-completed"
_FILENAME = re.compile(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', re.IGNORECASE)


def object_id(pathname: str, etag: str | None, *facts: Any) -> str:
    """Stable "StorageObject" id of one upload: the pathname, the etag and the other `facts` that
    tell this upload from another one over the same pathname (upload time, size, content type,
    url, name, tokenPayload). The same callback always gets the same id."""
    version = f"{pathname}\n{etag or ''}" + "".join(
        "\n" + json.dumps(fact, sort_keys=True, separators=(",", ":"), default=str)
        for fact in facts
    )
    return f"blob_{hashlib.sha256(version.encode()).hexdigest()[:32]}"


def _uploaded_at(value: Any) -> datetime | None:
    """The callback's `uploadedAt` (ISO-8601 with a zone), if it has a usable one."""
    try:
        if not isinstance(value, str):
            return None
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else None


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


def to_storage_event(
    blob: dict[str, Any], token: dict[str, Any], size: int | None, head: BlobHead | None = None
) -> dict[str, Any]:
    """The `storage.object_created` of a callback (`head`: what a HEAD of the blob said)."""
    pathname = blob["pathname"]
    match = _FILENAME.search(blob.get("contentDisposition") or "")
    name = (match[1] if match else PurePosixPath(pathname).name or pathname)[:512]
    etag = blob.get("etag") if isinstance(blob.get("etag"), str) else (head.etag if head else None)
    uploaded_at = _uploaded_at(blob.get("uploadedAt")) or (head.last_modified if head else None)
    created_at = uploaded_at.isoformat() if uploaded_at else None
    facts = (created_at, size, blob.get("contentType"), blob["url"], name, token)
    event = {
        "type": "storage.object_created", "id": object_id(pathname, etag, *facts),
        "clerkUserId": token["clerkUserId"], "provider": "vercel_blob", "url": blob["url"],
        "pathname": pathname, "name": name, "contentType": blob.get("contentType"),
        "size": size, "createdAt": created_at,
    }  # fmt: skip
    return checked({k: v for k, v in event.items() if v is not None or k == "contentType"})


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
    size, head = valid_size(blob.get("size")), None
    if size is None:
        if not blob["url"].startswith(("https://", "http://")):
            raise HttpError(400, "invalid_payload", "blob url must be http(s)")
        assert state.http is not None
        try:
            head = await head_blob(state.http, blob["url"], timeout_s=settings.blob_head_timeout_ms / 1000,
                                   retries=settings.blob_head_retries)  # fmt: skip
            size = head.size
        except BlobHeadFailed:  # logged by head_blob; the worker asks again (the event waits)
            size = valid_size(token.get("size"))
    return await accept(request, "vercel_blob", to_storage_event(blob, token, size, head))
