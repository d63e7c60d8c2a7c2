"""How the ingress groups concurrent requests' events into one Redis round trip
(worker/ingress/grouping.py), with a stand-in publisher: when a group leaves, what it holds,
and what each waiting request is told. The real round trip: tests/integration/ingress."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from worker.errors import ValidationRejected
from worker.ingress.grouping import EnqueueGroups
from worker.settings import Settings


class Publisher:
    """Records each group it is given; a group's round trip ends when the test says so."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.sent_at: list[float] = []
        self.release = asyncio.Event()
        self.release.set()
        self.failing: dict[int, Exception] = {}  # group number -> what its round trip raises

    async def publish_many_async(self, _client: Any, events: list[dict[str, Any]]) -> list[str]:
        self.groups.append([e["id"] for e in events])
        self.sent_at.append(asyncio.get_running_loop().time())
        number = len(self.groups) - 1
        await self.release.wait()
        if number in self.failing:
            raise self.failing[number]
        return []


def groups_of(publisher: Publisher, *, linger_ms: float = 0, max_batch: int = 1_000) -> EnqueueGroups:
    settings = Settings(redis_url="redis://unused", ingress_group_linger_ms=linger_ms, ingress_max_batch=max_batch)
    return EnqueueGroups(publisher, settings, client=object())  # type: ignore[arg-type]


async def a_group_out(publisher: Publisher, groups: EnqueueGroups) -> asyncio.Task[None]:
    """Event "a" sent, its round trip held open until `publisher.release` is set."""
    publisher.release.clear()
    first = asyncio.create_task(groups.enqueue(events("a")))
    await asyncio.sleep(0)
    return first


def events(*ids: str) -> list[dict[str, Any]]:
    return [{"id": i, "type": "usage.recorded"} for i in ids]


async def test_an_idle_ingress_sends_a_lone_request_at_once_whatever_the_linger():
    publisher = Publisher()
    groups = groups_of(publisher, linger_ms=50)
    asked = asyncio.get_running_loop().time()
    await groups.enqueue(events("a"))
    assert publisher.groups == [["a"]]
    assert publisher.sent_at[0] - asked < 0.05  # it did not wait for the linger


async def test_requests_arriving_while_a_group_is_out_go_together_in_the_next_one():
    publisher = Publisher()
    groups = groups_of(publisher)
    first = await a_group_out(publisher, groups)
    rest = [asyncio.create_task(groups.enqueue(events(f"b{i}", f"c{i}"))) for i in range(5)]
    await asyncio.sleep(0.01)
    assert publisher.groups == [["a"]]  # the others wait for the group in flight
    publisher.release.set()
    await asyncio.gather(first, *rest)
    assert publisher.groups == [["a"], [f"{x}{i}" for i in range(5) for x in "bc"]]
    assert (groups.groups, groups.requests, groups.events) == (2, 6, 11)


async def test_a_busy_ingress_sends_a_group_at_most_every_linger():
    publisher = Publisher()
    groups = groups_of(publisher, linger_ms=30)
    await groups.enqueue(events("a"))
    await asyncio.gather(*(groups.enqueue(events(f"b{i}")) for i in range(3)))
    assert publisher.groups == [["a"], ["b0", "b1", "b2"]]
    assert publisher.sent_at[1] - publisher.sent_at[0] >= 0.03 - 0.002  # loop clock resolution


async def test_a_group_never_exceeds_the_batch_limit_and_a_full_one_does_not_linger():
    publisher = Publisher()
    groups = groups_of(publisher, linger_ms=100, max_batch=4)
    await groups.enqueue(events("a"))  # the last group left just now: the next one would linger
    waiting = [asyncio.create_task(groups.enqueue(events(f"{i}x", f"{i}y"))) for i in range(3)]
    await asyncio.gather(*waiting[:2])
    assert publisher.groups[1] == ["0x", "0y", "1x", "1y"]
    assert publisher.sent_at[1] - publisher.sent_at[0] < 0.1  # full: gone without the linger
    for task in waiting:
        task.cancel()


async def test_a_failed_round_trip_fails_every_request_of_its_group_and_the_next_group_goes():
    publisher = Publisher()
    groups = groups_of(publisher)
    first = await a_group_out(publisher, groups)
    publisher.failing[1] = redis.ConnectionError("Redis went away")
    failing = [asyncio.create_task(groups.enqueue(events(f"b{i}"))) for i in range(3)]
    await asyncio.sleep(0)
    publisher.release.set()
    results = await asyncio.gather(first, *failing, return_exceptions=True)
    assert results[0] is None  # "a" was in the group before, which Redis acknowledged
    assert publisher.groups[1] == ["b0", "b1", "b2"]
    assert all(isinstance(r, redis.ConnectionError) for r in results[1:])
    await groups.enqueue(events("c"))  # the ingress goes on: the next request has its own group
    assert publisher.groups[-1] == ["c"]


async def test_a_caller_that_went_away_leaves_its_group_answered():
    publisher = Publisher()
    groups = groups_of(publisher)
    first = await a_group_out(publisher, groups)
    gone = asyncio.create_task(groups.enqueue(events("gone")))
    stays = asyncio.create_task(groups.enqueue(events("stays")))
    await asyncio.sleep(0)
    gone.cancel()
    publisher.release.set()
    await asyncio.gather(first, stays)
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert publisher.groups == [["a"], ["gone", "stays"]]  # sent all the same: a retry is harmless


async def test_an_event_without_a_queue_fails_its_own_request_not_its_group():
    publisher = Publisher()
    groups = groups_of(publisher)
    first = await a_group_out(publisher, groups)
    fine = asyncio.create_task(groups.enqueue([{"id": "fine", "type": "usage.recorded"}]))
    with pytest.raises(ValidationRejected):
        await groups.enqueue([{"id": "odd", "type": "no.such.type"}])
    publisher.release.set()
    await asyncio.gather(first, fine)
    assert publisher.groups == [["a"], ["fine"]]
