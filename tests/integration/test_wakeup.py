"""Consumers woken by publishes (worker/wakeup.py), on a real Redis.

Each consumer below is given a back-off of 30-60 s, so a call that returns in time was woken,
not timed out."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from tests.integration.helpers import usage
from worker.broker import build_broker
from worker.publisher import Publisher
from worker.runner import InProcessWorker
from worker.wakeup import WAKE_TOKENS_KEPT, WakeableConsumer, wake_key

_PATIENT_MS = 60_000  # a consumer's idle timeout: its back-off would sleep 30-60 s


@pytest.fixture
def consumer(broker) -> Iterator[WakeableConsumer]:
    consumer = broker.consume("usage", prefetch=1, timeout=_PATIENT_MS)
    consumer.misses = 20  # long idle: the next empty fetch backs off for the whole timeout
    yield consumer
    consumer.close()


def next_in_thread(consumer) -> tuple[threading.Thread, list]:
    got: list = []
    thread = threading.Thread(target=lambda: got.append(next(consumer)), daemon=True)
    thread.start()
    return thread, got


def test_an_idle_consumer_fetches_as_soon_as_an_event_is_published(broker, consumer) -> None:
    thread, got = next_in_thread(consumer)  # empty queue: waits on the wake list
    thread.join(0.3)
    assert thread.is_alive()

    Publisher(broker).publish(usage("u", id="wake-me"))
    thread.join(10)  # woken, not the 30-60 s back-off
    assert not thread.is_alive() and got == [None]
    message = next(consumer)
    assert message.args[0][0]["id"] == "wake-me"


def test_a_full_consumer_fetches_again_as_soon_as_a_message_is_acknowledged(broker, consumer) -> None:
    publisher = Publisher(broker)
    publisher.publish(usage("u", id="first"))
    publisher.publish(usage("u", id="second"))
    first = next(consumer)
    thread, got = next_in_thread(consumer)  # prefetch 1, one outstanding: waits for an ack
    thread.join(0.3)
    assert thread.is_alive()

    consumer.ack(first)
    thread.join(10)
    assert not thread.is_alive() and got == [None]
    assert next(consumer).args[0][0]["id"] == "second"


def test_publishes_leave_a_bounded_number_of_wake_tokens(broker, settings) -> None:
    client = redis.Redis.from_url(settings.require_redis_url())
    key = wake_key(settings.redis_namespace, "usage")
    publisher = Publisher(broker)
    publisher.publish(usage("u"))
    assert client.llen(key) == 1
    for _ in range(WAKE_TOKENS_KEPT + 10):
        publisher.publish(usage("u"))
    assert client.llen(key) == WAKE_TOKENS_KEPT

    usage_actor = broker.get_actor("apply_usage_events")
    client.delete(key)
    broker.enqueue(usage_actor.message([usage("u")]))  # dramatiq's own enqueue: a retry, an eta reached
    assert client.llen(key) == 1
    client.delete(key)
    broker.enqueue(usage_actor.message([usage("u")]), delay=60_000)
    assert client.llen(key) == 0  # a delayed message waits for its eta: no need to wake anyone


def test_a_server_that_refuses_the_blocking_wait_is_polled_as_dramatiq_does(broker, settings) -> None:
    client = redis.Redis.from_url(settings.require_redis_url())
    client.set(wake_key(settings.redis_namespace, "usage"), "not a list")  # BLPOP: WRONGTYPE
    consumer = broker.consume("usage", prefetch=1, timeout=50)
    try:
        assert next(consumer) is None  # no error: it slept instead
        assert consumer._blocking_wait is False
    finally:
        consumer.close()


def test_a_wake_token_that_cannot_be_pushed_does_not_fail_the_publish(broker, settings) -> None:
    """The message is stored by then: raising would make the caller publish it again."""
    client = redis.Redis.from_url(settings.require_redis_url())
    client.set(wake_key(settings.redis_namespace, "usage"), "not a list")  # LPUSH: WRONGTYPE
    Publisher(broker).publish(usage("nobody-yet", id="published-anyway"))
    broker.enqueue(broker.get_actor("apply_usage_events").message([usage("nobody-yet", id="enqueued-anyway")]))
    assert client.hlen(f"{settings.redis_namespace}:usage.msgs") == 2


def take_all(consumer, limit: int = 1_000) -> list:
    """Every message the consumer hands out before it is full (a `None`: nothing more for now)."""
    taken = []
    while len(taken) < limit and (message := next(consumer)) is not None:
        taken.append(message)
    return taken


def test_a_consumer_holds_at_most_prefetch_events_of_batch_messages(broker) -> None:
    broker.prefetch_events = 250
    Publisher(broker, batch_size=100).publish_many([usage("u", id=f"b{n}") for n in range(1_000)])  # 10 messages
    consumer = broker.consume("usage", prefetch=100, timeout=50)
    try:
        held = take_all(consumer)
        assert [len(m.args[0]) for m in held] == [100, 100]  # a third would pass 250 events
        consumer.ack(held[0])
        assert len(take_all(consumer)) == 1  # room for one more
    finally:
        consumer.close()


def test_a_consumer_holds_up_to_its_prefetch_of_single_event_messages(broker) -> None:
    broker.prefetch_events = 8_000
    publisher = Publisher(broker)
    for n in range(150):
        publisher.publish(usage(f"u{n}", id=f"s{n}"))  # a message each
    consumer = broker.consume("usage", prefetch=100, timeout=50)
    try:
        assert len(take_all(consumer)) == 100  # the message prefetch binds, not the events
    finally:
        consumer.close()


def test_the_worker_prefetches_what_the_settings_say(settings) -> None:
    broker = build_broker(settings.model_copy(update={"worker_prefetch": 37, "worker_prefetch_events": 900}))
    try:
        with InProcessWorker(broker, threads=2) as running:
            consumers = running.worker.consumers
            assert consumers["usage"].prefetch == 37  # not dramatiq's 2 × threads
            assert broker.prefetch_events == 900
    finally:
        broker.close()


@pytest.mark.parametrize("linger_ms", [0, 1_000])
def test_a_shallow_queue_is_fetched_at_most_every_linger_so_lone_messages_go_together(broker, linger_ms) -> None:
    broker.fetch_linger_ms = linger_ms
    publisher = Publisher(broker)
    consumer = broker.consume("usage", prefetch=100, timeout=_PATIENT_MS)
    fetches = []
    do_fetch = broker.do_fetch
    broker.do_fetch = lambda queue, room: fetches.append(room) or do_fetch(queue, room)
    try:
        publisher.publish(usage("u", id="alone"))
        assert next(consumer).args[0][0]["id"] == "alone"  # fetched at once: nothing was shallow before
        fetches.clear()

        def one_at_a_time() -> None:  # each of these alone would wake the consumer
            for n in range(5):
                time.sleep(0.01)
                publisher.publish(usage("u", id=f"later-{n}"))

        sender = threading.Thread(target=one_at_a_time)
        sender.start()
        got = []
        while len(got) < 5:
            message = next(consumer)
            if message is not None:
                got.append(message.args[0][0]["id"])
        sender.join()
    finally:
        broker.do_fetch = do_fetch
        consumer.close()
    assert got == [f"later-{n}" for n in range(5)]
    if linger_ms:
        assert len(fetches) <= 2  # they waited for company: one fetch (two on a very slow machine)
    else:
        assert len(fetches) >= 5  # a fetch per wake
