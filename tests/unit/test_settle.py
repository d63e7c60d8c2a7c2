"""The settler's bookkeeping (worker/settle.py), on dramatiq's StubBroker and a recording
consumer: when a deferred message is acknowledged, and what happens when settling it fails.
The real path (Redis, PostgreSQL, a worker) is tests/integration/test_settle.py."""

from __future__ import annotations

import asyncio
import threading

import dramatiq
import pytest
from dramatiq import Message
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Retries

from worker.settle import Settler, hand_off, is_deferred


class RecordingConsumer:
    def __init__(self, fail_acks: int = 0) -> None:
        self.acked: list[str] = []
        self.nacked: list[str] = []
        self.abandoned: list[str] = []
        self.fail_acks = fail_acks
        self.changed = threading.Condition()

    def ack_many(self, messages) -> None:
        with self.changed:
            if self.fail_acks:
                self.fail_acks -= 1
                raise RuntimeError("a bug in the ack")
            self.acked += [m.message_id for m in messages]
            self.changed.notify_all()

    def nack_now(self, message) -> None:
        with self.changed:
            self.nacked.append(message.message_id)
            self.changed.notify_all()

    def abandon(self, message) -> None:
        with self.changed:
            self.abandoned.append(message.message_id)
            self.changed.notify_all()


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def settler():
    broker = StubBroker(middleware=[Retries(max_retries=0)])
    dramatiq.actor(lambda events: None, broker=broker, actor_name="a", queue_name="usage")
    settler = Settler(broker)
    yield settler
    settler.stop()


def message(n: int) -> MessageProxy:
    return MessageProxy(Message(queue_name="usage", actor_name="a", args=([],), kwargs={}, options={},
                                message_id=f"m{n}"))  # fmt: skip


def settled(loop, future, result=None, error=None) -> None:
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
    loop.run_until_complete(asyncio.sleep(0))  # the done-callbacks run on the loop


def test_a_message_is_acknowledged_once_both_its_commit_and_its_ack_are_in(loop, settler) -> None:
    consumer, seen = RecordingConsumer(), []
    first, second = message(1), message(2)
    futures = [loop.create_future(), loop.create_future()]
    settler.defer(first, futures[0], lambda m, result: seen.append((m.message_id, result)))
    settler.defer(second, futures[1], lambda m, result: seen.append((m.message_id, result)))
    assert is_deferred(first)

    assert hand_off(first, consumer)  # dramatiq acks when the actor returns: handed over, not sent
    settled(loop, futures[1], "committed")  # the other one commits before its ack is handed over
    assert settler.wait_idle(0.2) is False and consumer.acked == []

    settled(loop, futures[0], "committed")
    hand_off(second, consumer)
    assert settler.wait_idle(5)
    assert sorted(consumer.acked) == ["m1", "m2"]
    assert sorted(seen) == [("m1", "committed"), ("m2", "committed")]
    assert not is_deferred(first) and not hand_off(first, consumer)  # settled: acks go straight on


def test_a_failed_transaction_goes_through_the_retry_middleware(loop, settler) -> None:
    consumer, failed = RecordingConsumer(), message(1)
    future = loop.create_future()
    settler.defer(failed, future, lambda m, result: None)
    hand_off(failed, consumer)
    settled(loop, future, error=ConnectionResetError("database went away"))
    assert settler.wait_idle(5)
    assert consumer.nacked == ["m1"] and consumer.acked == []  # Retries(max_retries=0) gave up


def test_an_ack_that_fails_for_no_known_reason_does_not_stop_the_settler(loop, settler) -> None:
    consumer = RecordingConsumer(fail_acks=1)
    for n in range(2):
        m, future = message(n), loop.create_future()
        settler.defer(m, future, lambda m, result: None)
        hand_off(m, consumer)
        settled(loop, future, "committed")
        assert settler.wait_idle(5)
    assert consumer.acked == ["m1"]  # m0's ack failed: left to be redelivered; m1 goes on


def test_a_message_that_cannot_be_settled_is_abandoned_and_the_rest_go_on(loop, settler) -> None:
    consumer = RecordingConsumer()
    broken, fine = message(1), message(2)
    futures = [loop.create_future(), loop.create_future()]
    settler.defer(broken, futures[0], lambda m, result: None)
    settler.defer(fine, futures[1], lambda m, result: None)
    consumer.nack_now = lambda m: (_ for _ in ()).throw(RuntimeError("a bug in the nack"))
    hand_off(broken, consumer)
    settled(loop, futures[0], error=ValueError("the transaction failed"))  # dead: nack raises
    hand_off(fine, consumer)
    settled(loop, futures[1], "committed")
    assert settler.wait_idle(5)
    assert consumer.abandoned == ["m1"] and consumer.acked == ["m2"]
