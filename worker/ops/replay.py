"""`pedro-worker replay FILE.jsonl`: publish an export again, safely.

A line is an event (what `publish` takes), an exported dead letter (`dlq list --json`:
`{"queue": …, "message": {…}}`) or a raw dramatiq message (`{"args": [[events…]], …}`); the
events inside are what gets published. Replay is idempotent twice over: events carry their
idempotency key, so the worker applies each at most once however often it is replayed; and
with a database at hand, events the ledger has already decided (same id, same payload hash)
are not even sent — a second run of the same file publishes nothing. An event whose id was
decided with a different payload is a conflict: reported, not sent (it could only be rejected).
Invalid lines are reported by line number and skipped; the rest still goes out.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel, ValidationError

from ..errors import ValidationRejected
from ..events import describe_validation_error, validate_event
from ..publisher import Publisher, queue_for

CHUNK = 2_000  # events looked up and published per round trip

Lookup = Callable[[list[str]], Awaitable[dict[str, str]]]  # event ids -> recorded payload hash


@dataclass
class ReplaySummary:
    lines: int = 0
    events: int = 0
    published: int = 0
    already_decided: int = 0
    conflicts: int = 0
    repeated_in_file: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)

    def lines_of_text(self) -> list[str]:
        out = [
            f"replay: {self.lines} lines, {self.events} events: {self.published} published, "
            f"{self.already_decided} already decided (skipped), {self.conflicts} conflicting ids (skipped), "
            f"{self.repeated_in_file} repeated in the file, {len(self.invalid)} invalid"
        ]
        out += [f"  line {n}: {error}" for n, error in self.invalid[:20]]
        if len(self.invalid) > 20:
            out.append(f"  … and {len(self.invalid) - 20} more invalid lines")
        return out


def events_of(obj: Any) -> list[Any]:
    """The events a line carries: itself, or the batch inside an exported message."""
    if isinstance(obj, dict) and "type" in obj and "args" not in obj:
        return [obj]
    message = (
        obj.get("message")
        if isinstance(obj, dict) and isinstance(obj.get("message"), dict)
        else obj
    )
    if isinstance(message, dict):
        args = message.get("args")
        if isinstance(args, list) and args and isinstance(args[0], list):
            return args[0]
    raise ValueError("neither an event nor an exported message")


def _lines(f: BinaryIO) -> Iterator[tuple[int, int, bytes]]:
    """(line number, bytes consumed, line) for the progress bar."""
    for n, line in enumerate(f, 1):
        yield n, len(line), line


async def replay(
    path: Path,
    publisher: Publisher,
    *,
    lookup: Lookup | None,
    on_progress: Callable[[int], None] = lambda _: None,
) -> ReplaySummary:
    summary = ReplaySummary()
    pending: dict[str, tuple[dict[str, Any], str]] = {}  # id -> (event, payload hash)

    async def flush() -> None:
        if not pending:
            return
        recorded = await lookup(list(pending)) if lookup else {}
        send = []
        for event_id, (event, digest) in pending.items():
            if event_id not in recorded:
                send.append(event)
            elif recorded[event_id] == digest:
                summary.already_decided += 1
            else:
                summary.conflicts += 1
        publisher.publish_many(send)
        summary.published += len(send)
        pending.clear()

    with path.open("rb") as f:
        for n, size, raw in _lines(f):
            on_progress(size)
            if not raw.strip():
                continue
            summary.lines += 1
            try:
                events = events_of(json.loads(raw))
            except ValueError as exc:
                summary.invalid.append(
                    (n, f"not JSON ({exc})" if isinstance(exc, json.JSONDecodeError) else str(exc))
                )
                continue
            for event in events:
                summary.events += 1
                try:
                    queue_for(event)
                    model: BaseModel = validate_event(event)
                except ValidationRejected as exc:
                    summary.invalid.append((n, exc.detail))
                    continue
                except ValidationError as exc:
                    summary.invalid.append((n, describe_validation_error(exc)))
                    continue
                event_id = event["id"]
                if event_id in pending:
                    summary.repeated_in_file += 1
                    continue
                pending[event_id] = (event, model.payload_hash())  # type: ignore[attr-defined]
            if len(pending) >= CHUNK:
                await flush()
    await flush()
    return summary
