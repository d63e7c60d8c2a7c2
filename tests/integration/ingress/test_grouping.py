"""Concurrent single-event POSTs share Redis round trips and messages (worker/ingress/grouping.py),
on the real ingress, Redis and worker: every request answered 202 only once its event is in
Redis, fewer messages than requests, and every event applied exactly once."""

from __future__ import annotations

import asyncio
import json

import httpx
import redis

from tests.integration.helpers import balance, make_user, usage, usage_rows
from tests.integration.ingress.providers import API_TOKEN
from worker.ingress.server import IngressServer
from worker.runner import InProcessWorker

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def queued_events(settings) -> tuple[int, int]:
    """(messages, events) waiting in the usage queue (nothing consumes it yet)."""
    client = redis.Redis.from_url(settings.require_redis_url())
    bodies = client.hvals(f"{settings.redis_namespace}:usage.msgs")
    return len(bodies), sum(len(json.loads(body)["args"][0]) for body in bodies)


async def test_concurrent_single_event_posts_share_messages_and_each_event_applies_once(
    conn, ingress_settings, broker
):
    await make_user(conn, "user_grouped", credits=1_000)
    settings = ingress_settings.model_copy(update={"ingress_group_linger_ms": 20})
    posts = [usage("user_grouped", id=f"grouped-{i}", credits=1) for i in range(120)]
    posts += posts[:30]  # the app sending again what it already sent: changes nothing
    with IngressServer(settings) as server:
        limits = httpx.Limits(max_connections=len(posts))
        async with httpx.AsyncClient(base_url=server.url, timeout=10, limits=limits) as client:
            answers = await asyncio.gather(*(client.post("/v1/events", json=e, headers=AUTH) for e in posts))
        groups = server.server.config.app.state.ingress.groups
        messages, events = queued_events(settings)

    assert [a.status_code for a in answers] == [202] * len(posts)
    assert all(a.json()["accepted"] == 1 for a in answers)
    assert events == len(posts) and groups.events == len(posts) and groups.requests == len(posts)
    assert messages == groups.groups < len(posts) / 2  # requests shared round trips and messages
    with InProcessWorker(broker, threads=4) as worker:
        worker.drain()
    assert await balance(conn, "user_grouped") == 1_000 - 120
    assert len(await usage_rows(conn, "user_grouped")) == 120
