"""Dead letters in Redis: list, show, requeue, purge.

dramatiq's RedisBroker keeps a queue's dead letters in `ns:q.XQ` (sorted set: id -> time it
died) and their bodies in `ns:q.XQ.msgs`; `DeadLetterReason` (broker.py) has written why each
died into its options. Requeue puts a message back the way `RedisBroker.enqueue` would — a
fresh `redis_message_id`, retries reset, on the canonical queue (never `.DQ`) — and moves it in
one Lua script that first checks the dead letter is still there, unchanged: two operators
clicking "requeue" at once enqueue it once. (The ledger's idempotency keys would make a second
copy harmless anyway; the script keeps the queues honest.)
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
from dramatiq import Message

from ..broker import QUEUES
from ..logs import get_logger, scrub
from .keys import Keys, canonical_queue

log = get_logger("pedro.ops.dlq")

# KEYS: dead set, dead bodies, ready list, ready bodies. ARGV: old id, old body, new id, new body.
_REQUEUE = """
if redis.call("hget", KEYS[2], ARGV[1]) ~= ARGV[2] then
    return 0
end
redis.call("zrem", KEYS[1], ARGV[1])
redis.call("hdel", KEYS[2], ARGV[1])
redis.call("hset", KEYS[4], ARGV[3], ARGV[4])
redis.call("rpush", KEYS[3], ARGV[3])
return 1
"""

# KEYS: dead set, dead bodies. ARGV: id.
_PURGE = """
local removed = redis.call("zrem", KEYS[1], ARGV[1])
redis.call("hdel", KEYS[2], ARGV[1])
return removed
"""

# Options that describe the failed attempts; a requeued message starts afresh without them.
_ATTEMPT_OPTIONS = (
    "retries",
    "traceback",
    "requeue_timestamp",
    "eta",
    "dead_letter_reason",
    "dead_letter_detail",
    "redis_message_id",
)

PREVIEW_CHARS = 240


@dataclass
class DeadLetter:
    queue: str
    redis_id: str
    dead_at_ms: int
    body: bytes
    message: dict[str, Any]

    @property
    def options(self) -> dict[str, Any]:
        return self.message.get("options") or {}

    @property
    def message_id(self) -> str:
        return str(self.message.get("message_id", ""))

    @property
    def actor(self) -> str:
        return str(self.message.get("actor_name", ""))

    @property
    def reason(self) -> str:
        return str(self.options.get("dead_letter_reason") or "unknown")

    @property
    def reasons(self) -> list[str]:
        return [r.strip() for r in self.reason.split(",") if r.strip()]

    @property
    def events(self) -> list[Any]:
        args = self.message.get("args") or []
        return args[0] if args and isinstance(args[0], list) else []

    def preview(self, limit: int = PREVIEW_CHARS) -> str:
        """The message's arguments, compact, emails masked, cut at `limit` characters."""
        text = scrub(json.dumps(self.message.get("args", []), separators=(",", ":"), default=str))
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def summary(self, now_ms: int | None = None) -> dict[str, Any]:
        now_ms = now_ms or int(time.time() * 1000)
        return {
            "queue": self.queue,
            "id": self.redis_id,
            "message_id": self.message_id,
            "actor": self.actor,
            "reason": self.reason,
            "detail": scrub(str(self.options.get("dead_letter_detail") or ""))[:300],
            "dead_at_ms": self.dead_at_ms,
            "age_s": max((now_ms - self.dead_at_ms) // 1000, 0),
            "retries": self.options.get("retries", 0),
            "events": len(self.events),
            "preview": self.preview(),
        }

    def export(self) -> dict[str, Any]:
        """What `dlq list --json` prints and `replay` reads back."""
        return {
            "queue": self.queue,
            "id": self.redis_id,
            "dead_at_ms": self.dead_at_ms,
            "reason": self.reason,
            "message": self.message,
        }

    def requeued_body(self, new_id: str) -> bytes:
        """The body to enqueue: same message id and arguments, a fresh attempt."""
        options = {k: v for k, v in self.options.items() if k not in _ATTEMPT_OPTIONS}
        options["redis_message_id"] = new_id
        options["dlq_requeues"] = int(self.options.get("dlq_requeues", 0)) + 1
        fields = {**self.message, "queue_name": self.queue, "options": options}
        fields["args"] = tuple(fields.get("args") or ())
        return Message(**fields).encode()


class DeadLetters:
    """The dead letters of a namespace's queues."""

    def __init__(
        self, client: redis.Redis, namespace: str, queues: tuple[str, ...] = QUEUES
    ) -> None:
        self.client = client
        self.keys = Keys(namespace)
        self.queues = queues
        self._requeue = client.register_script(_REQUEUE)
        self._purge = client.register_script(_PURGE)

    def _queues(self, queue: str | None) -> tuple[str, ...]:
        if queue is None:
            return self.queues
        return (canonical_queue(queue),)

    def counts(self) -> dict[str, int]:
        pipe = self.client.pipeline(transaction=False)
        for q in self.queues:
            pipe.zcard(self.keys.dead(q))
        return dict(zip(self.queues, pipe.execute()))

    def iter(
        self, *, queue: str | None = None, reason: str | None = None, page: int = 200
    ) -> Iterator[DeadLetter]:
        """Newest first within each queue; `reason` matches any of a letter's reasons."""
        for q in self._queues(queue):
            start = 0
            while True:
                ids = self.client.zrevrange(
                    self.keys.dead(q), start, start + page - 1, withscores=True
                )
                if not ids:
                    break
                start += page
                bodies = self.client.hmget(self.keys.dead_messages(q), [i for i, _ in ids])
                for (redis_id, score), body in zip(ids, bodies):
                    letter = self._letter(q, redis_id, score, body)
                    if letter is not None and (reason is None or reason in letter.reasons):
                        yield letter

    def list(
        self, *, queue: str | None = None, reason: str | None = None, limit: int | None = 100
    ) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        for letter in self.iter(queue=queue, reason=reason):
            if limit is not None and len(out) >= limit:
                break
            out.append(letter)
        return out

    def get(self, queue: str, redis_id: str) -> DeadLetter | None:
        q = canonical_queue(queue)
        if q not in self.queues:
            return None
        pipe = self.client.pipeline(transaction=False)
        pipe.zscore(self.keys.dead(q), redis_id)
        pipe.hget(self.keys.dead_messages(q), redis_id)
        score, body = pipe.execute()
        return self._letter(q, redis_id.encode(), score, body) if score is not None else None

    def find(self, ident: str, *, queue: str | None = None) -> DeadLetter | None:
        """By Redis id (exact, fast) or by dramatiq message id (what logs show)."""
        for q in self._queues(queue):
            letter = self.get(q, ident)
            if letter is not None:
                return letter
        for letter in self.iter(queue=queue):
            if letter.message_id == ident:
                return letter
        return None

    def requeue(self, letter: DeadLetter) -> bool:
        """Back onto its queue with a fresh attempt. False if it was no longer there."""
        if "undecodable" in letter.message:
            raise ValueError(
                f"dead letter {letter.redis_id} is not a dramatiq message: purge it instead"
            )
        new_id = str(uuid.uuid4())
        q = letter.queue
        moved = self._requeue(
            keys=[
                self.keys.dead(q),
                self.keys.dead_messages(q),
                self.keys.ready(q),
                self.keys.messages(q),
            ],
            args=[letter.redis_id, letter.body, new_id, letter.requeued_body(new_id)],
        )
        if moved:
            log.info(
                "dead_letter_requeued", queue=q, message_id=letter.message_id, reason=letter.reason
            )
        return bool(moved)

    def purge(self, letter: DeadLetter) -> bool:
        removed = self._purge(
            keys=[self.keys.dead(letter.queue), self.keys.dead_messages(letter.queue)],
            args=[letter.redis_id],
        )
        if removed:
            log.info(
                "dead_letter_purged",
                queue=letter.queue,
                message_id=letter.message_id,
                reason=letter.reason,
            )
        return bool(removed)

    @staticmethod
    def _letter(queue: str, redis_id: bytes, score: float, body: bytes | None) -> DeadLetter | None:
        if body is None:  # expired between the two reads
            return None
        try:
            message = json.loads(body)
        except ValueError:
            message = {"undecodable": body[:200].decode(errors="replace")}
        return DeadLetter(queue, redis_id.decode(), int(score), body, message)
