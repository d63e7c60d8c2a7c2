"""Micro-batching: concurrent messages share a transaction, yet each stands on its own."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.integration.helpers import balance, make_user, usage
from worker import db
from worker.ledger.coalesce import Coalescer
from worker.ledger.decide import APPLIED


@pytest.fixture
async def pool(database_url):
    the_pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4, init=db._init_connection)
    yield the_pool
    await the_pool.close()


async def test_concurrent_submissions_commit_in_one_transaction(conn, pool, settings):
    await make_user(conn, "u", credits=100)
    coalescer = Coalescer(pool, settings.model_copy(update={"micro_batch_linger_ms": 50}))
    results = await asyncio.gather(*(coalescer.apply([usage("u", id=f"m{n}", credits=1)]) for n in range(10)))

    assert [[(o.event_id, o.status) for o in r.outcomes] for r in results] == [
        [(f"m{n}", APPLIED)] for n in range(10)
    ]
    # now() is the transaction's start time: one value means one transaction
    assert await conn.fetchval("SELECT count(DISTINCT processed_at) FROM worker.event_log") == 1
    assert await balance(conn, "u") == 90


async def test_a_submission_that_breaks_the_shared_transaction_fails_alone(conn, pool, settings):
    user_id = await make_user(conn, "u", credits=100)
    balance_id = await conn.fetchval('SELECT id FROM "CreditBalance"')
    # a row the app wrote with the id a later event reuses: inserting that event must fail
    await conn.execute(
        """INSERT INTO "UsageHistory" (id, "userId", "creditBalanceId", "operationType", "creditsUsed")
           VALUES ('taken', $1, $2, 'AI_TEXT_CHAT', 1)""",
        user_id, balance_id,
    )  # fmt: skip
    coalescer = Coalescer(pool, settings.model_copy(update={"micro_batch_linger_ms": 50}))
    good = [coalescer.apply([usage("u", id=f"ok{n}", credits=2)]) for n in range(3)]
    bad = coalescer.apply([usage("u", id="taken", credits=2)])
    *ok, failed = await asyncio.gather(*good, bad, return_exceptions=True)

    assert isinstance(failed, asyncpg.UniqueViolationError)
    assert all(r.outcomes[0].status == APPLIED for r in ok)
    assert await balance(conn, "u") == 94
    assert await conn.fetchval("SELECT count(*) FROM worker.event_log WHERE event_id = 'taken'") == 0


async def test_what_arrives_during_a_transaction_goes_together_in_the_next_one(conn, pool, settings):
    await make_user(conn, "u", credits=100)
    coalescer = Coalescer(pool, settings.model_copy(update={
        "micro_batch_linger_ms": 0, "micro_batch_concurrency": 1, "micro_batch_max_events": 4,
    }))  # fmt: skip
    async with conn.transaction():  # hold the balance: the first transaction waits for it
        await conn.execute('SELECT 1 FROM "CreditBalance" FOR UPDATE')
        first = asyncio.ensure_future(coalescer.apply([usage("u", id="first", credits=1)]))
        await asyncio.sleep(0.2)
        rest = [asyncio.ensure_future(coalescer.apply([usage("u", id=f"m{n}", credits=1)])) for n in range(6)]
        await asyncio.sleep(0.2)
        assert not first.done() and coalescer._running == 1  # one in flight, six waiting
    await asyncio.gather(first, *rest)

    groups = await conn.fetch(
        "SELECT array_agg(event_id ORDER BY event_id) AS ids FROM worker.event_log GROUP BY processed_at"
        " ORDER BY min(processed_at)"
    )
    # no more than micro_batch_max_events per transaction, in arrival order
    assert [g["ids"] for g in groups] == [["first"], ["m0", "m1", "m2", "m3"], ["m4", "m5"]]
    assert await balance(conn, "u") == 93
