"""Publish events onto the queues: one, or many in one Redis round trip.

Events are validated before they are sent (a bad event is refused here, not dead-lettered
later) and packed into batch messages of up to `batch_size` events per queue: one message is
one dramatiq message whose single argument is the list of events.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import redis.asyncio
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from pydantic import ValidationError
from redis.exceptions import NoScriptError

from .errors import ValidationRejected
from .events import QUEUE_OF_TYPE, describe_validation_error, validate_event
from .redis_client import ReplicaWait
from .wakeup import wake

ACTOR_OF_QUEUE = {
    "usage": "apply_usage_events",
    "users": "apply_user_events",
    "billing": "record_billing_events",
    "storage": "apply_storage_events",
}
DEFAULT_BATCH_SIZE = 500


def queue_for(event: Mapping[str, Any]) -> str:
    # a dict first: the Mapping check alone (an ABC) cost more than the rest of this function
    event_type = event.get("type") if isinstance(event, dict) or isinstance(event, Mapping) else None
    queue = QUEUE_OF_TYPE.get(event_type) if isinstance(event_type, str) else None
    if queue is None:
        raise ValidationRejected(f"unknown event type {str(event_type)[:64]!r}", reason="unknown_event_type")
    return queue


def build_message(queue: str, events: list[dict[str, Any]]) -> Message:
    return Message(
        queue_name=queue,
        actor_name=ACTOR_OF_QUEUE[queue],
        args=(events,),
        kwargs={},
        options={"published_at_ms": int(time.time() * 1000)},
    )


class Publisher:
    def __init__(
        self, broker: RedisBroker, *, batch_size: int = DEFAULT_BATCH_SIZE, validate: bool = True
    ) -> None:
        self.broker = broker
        self.batch_size = batch_size
        self.validate = validate

    def publish(self, event: Mapping[str, Any]) -> str:
        """Enqueue one event as its own message. Returns the message id."""
        return self.publish_many([event])[0]

    def publish_many(self, events: Iterable[Mapping[str, Any]]) -> list[str]:
        """Enqueue events in batch messages (per queue, up to batch_size each), pipelined.

        Returns the message ids. Raises ValidationRejected (and enqueues nothing) if an event is
        invalid; with `validate=False` only its type is checked (the worker then rejects it).
        """
        return self.enqueue_pipelined(self.messages_of(events))

    async def publish_many_async(
        self, client: redis.asyncio.Redis, events: Iterable[Mapping[str, Any]]
    ) -> list[str]:
        """`publish_many` through an asyncio client of the same Redis (the ingress's)."""
        return await self.enqueue_pipelined_async(client, self.messages_of(events))

    def messages_of(self, events: Iterable[Mapping[str, Any]]) -> list[Message]:
        """The events packed into messages: per queue, up to batch_size each (validated, unless
        `validate=False`: then only their type is checked)."""
        by_queue: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for n, event in enumerate(events):
            queue = queue_for(event)
            if self.validate:
                try:
                    validate_event(event)
                except ValidationError as exc:
                    raise ValidationRejected(f"event #{n}: {describe_validation_error(exc)}") from None
            by_queue[queue].append(event if type(event) is dict else dict(event))  # encoded before we return
        return [
            build_message(queue, batch[start : start + self.batch_size])
            for queue, batch in by_queue.items()
            for start in range(0, len(batch), self.batch_size)
        ]

    def enqueue_pipelined(self, messages: list[Message]) -> list[str]:
        """Like `broker.enqueue` for each message, in one Redis round trip.

        The broker has no batch API; this runs its enqueue script once per message inside a
        pipeline, with the same arguments `RedisBroker.enqueue` passes. By EVALSHA alone: a
        pipeline that calls a redis-py `Script` first asks the server whether it has the script
        (SCRIPT EXISTS), a second round trip on every publish, for a script the server almost
        always has. When it does not (a restart, a failover, SCRIPT FLUSH), the enqueues answer
        NOSCRIPT and nothing was stored: the script is loaded and those messages go again, under
        the same ids.
        """
        if not messages:
            return []
        broker = self.broker
        pending = self._prepared(messages)
        results = self._pipeline(broker.client, pending).execute(raise_on_error=False)
        missing = self._unscripted(pending, results)
        if missing:
            dispatch = broker.scripts["dispatch"]
            dispatch.sha = broker.client.script_load(dispatch.script)
            resent = self._pipeline(broker.client, missing).execute(raise_on_error=False)
            self._resent(missing, resent)
        return [m.message_id for m in messages]

    async def enqueue_pipelined_async(
        self, client: redis.asyncio.Redis, messages: list[Message]
    ) -> list[str]:
        """`enqueue_pipelined` through an asyncio client of the same Redis: the ingress sends on
        its event loop, with no thread hand-off (whose answer waits for the GIL behind the busy
        loop)."""
        if not messages:
            return []
        broker = self.broker
        if type(broker)._max_unpack_size_val is None:  # found once, by a (blocking) script run
            await asyncio.to_thread(broker._max_unpack_size)
        pending = self._prepared(messages)
        results = await self._pipeline(client, pending).execute(raise_on_error=False)
        missing = self._unscripted(pending, results)
        if missing:
            dispatch = broker.scripts["dispatch"]
            dispatch.sha = await client.script_load(dispatch.script)
            resent = await self._pipeline(client, missing).execute(raise_on_error=False)
            self._resent(missing, resent)
        return [m.message_id for m in messages]

    def _prepared(self, messages: list[Message]) -> list[Message]:
        """The messages with their Redis ids, after the broker's `before_enqueue` hooks."""
        pending = [message.copy(options={"redis_message_id": str(uuid.uuid4())}) for message in messages]
        for message in pending:
            self.broker.emit_before("enqueue", message, None)
        return pending

    def _pipeline(self, client: Any, messages: list[Message]) -> Any:
        """One pipeline (sync or asyncio, not yet executed): the enqueue script per message, the
        wake tokens, WAIT."""
        broker = self.broker
        sha, max_unpack = broker.scripts["dispatch"].sha, broker._max_unpack_size()
        pipe = client.pipeline(transaction=False)
        for message in messages:
            pipe.evalsha(sha, 1, broker.namespace, "enqueue", int(time.time() * 1000), message.queue_name,
                         broker.broker_id, broker.heartbeat_timeout, broker.dead_message_ttl, 0, max_unpack,
                         message.options["redis_message_id"], message.encode())  # fmt: skip
        for queue in {m.queue_name for m in messages}:
            wake(pipe, broker.namespace, queue)  # idle consumers fetch now (worker/wakeup.py)
        # WAIT last: this connection's writes, all of them, reached that many replicas (a
        # failover to one of them keeps them), or ReplicasNotAcknowledged (redis_client.py)
        replica_wait: ReplicaWait | None = getattr(broker, "replica_wait", None)
        if replica_wait is not None:
            replica_wait.add_to(pipe)
        return pipe

    def _unscripted(self, messages: list[Message], results: list[Any]) -> list[Message]:
        """The messages whose enqueue answered NOSCRIPT; any other error is raised. A failed wake
        token is not an error (the polling finds the message)."""
        for result in results[: len(messages)]:
            if isinstance(result, Exception) and not isinstance(result, NoScriptError):
                raise result
        replica_wait: ReplicaWait | None = getattr(self.broker, "replica_wait", None)
        if replica_wait is not None:
            replica_wait.check(results[-1])
        enqueued = zip(messages, results, strict=False)  # the results end with wake tokens, WAIT
        return [m for m, result in enqueued if isinstance(result, NoScriptError)]

    def _resent(self, messages: list[Message], results: list[Any]) -> None:
        """The results of sending again after loading the script: NOSCRIPT now is an error."""
        if self._unscripted(messages, results):
            raise NoScriptError("the enqueue script is missing right after it was loaded")
