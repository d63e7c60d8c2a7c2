"""HTTP HEAD on a stored blob's URL: its size (Content-Length), ETag and Last-Modified.

Used by the Vercel Blob webhook (the upload-completed callback carries no size) and by the
storage worker for a `storage.object_created` that arrived without one (worker/domain/storage.py).
No credentials are sent: the URL comes from the event.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from .errors import WorkerError
from .events import INT32_MAX
from .logs import get_logger

log = get_logger("pedro.blob")


class BlobHeadFailed(WorkerError):
    """The blob's size could not be read (`detail` says why; never the URL)."""

    reason = "no_size"


@dataclass(frozen=True)
class BlobHead:
    size: int
    etag: str | None  # the ETag header, verbatim
    last_modified: datetime | None  # aware UTC, whole seconds


def valid_size(value: object) -> int | None:
    """A size "StorageObject".size can hold (0..2^31-1), else None."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= INT32_MAX
    return value if ok else None  # type: ignore[return-value]


def _last_modified(value: str | None) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None
    return parsed.astimezone(UTC) if parsed is not None and parsed.tzinfo else None


async def head_blob(
    client: httpx.AsyncClient, url: str, *, timeout_s: float, retries: int
) -> BlobHead:
    """HEAD `url` (following redirects), retrying with backoff; BlobHeadFailed when no attempt
    answered 200 with a valid Content-Length."""
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
        size = valid_size(int(length)) if length.isdigit() else None
        if response.status_code == 200 and size is not None:
            return BlobHead(size, response.headers.get("etag") or None,
                            _last_modified(response.headers.get("last-modified")))  # fmt: skip
        problem = (
            f"HTTP {response.status_code}"
            if response.status_code != 200
            else "no valid Content-Length"
        )
    log.warning("blob_head_failed", problem=problem, attempts=retries + 1)
    raise BlobHeadFailed(f"could not read the blob's size ({problem})")
