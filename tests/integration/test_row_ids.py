"""The ids of the app's rows the worker creates are what the README says ("The app's schema")."""

from __future__ import annotations

import re

from tests.integration.family_helpers import billing, object_created, plan, user_created
from tests.integration.helpers import refund, usage
from worker.domain.billing import BILLING
from worker.domain.each import apply_each
from worker.domain.storage import STORAGE
from worker.domain.users import USERS
from worker.ledger.apply import apply_usage_batch

CUID = re.compile(r"^c[a-z0-9]{24}$")  # Prisma's cuid(): 25 characters starting with `c`


async def test_rows_the_worker_creates_have_the_documented_ids(conn, settings):
    created = user_created("user_ids", email="ids@example.com")
    await apply_each(conn, [created], USERS, settings)
    use, give_back = usage("user_ids", id="chat-7f3a", credits=5), refund("user_ids", of="chat-7f3a", id="refund-7f3a")
    await apply_usage_batch(conn, [use, give_back], settings)
    await plan(conn, "plan_pro", 50)
    payment = billing("PAYMENT_RECEIVED", id="evt_ids&1", clerk="user_ids")
    await apply_each(conn, [payment], BILLING, settings)
    upload = object_created("blob-ids-1", "user_ids")
    await apply_each(conn, [upload], STORAGE, settings)

    # cuids: the rows no event names
    for table in ('"User"', '"CreditBalance"'):
        ids = [r["id"] for r in await conn.fetch(f"SELECT id FROM {table}")]
        assert len(ids) == 1 and all(CUID.match(i) for i in ids), (table, ids)
    # the event's id: the app finds the row of its request by the id it published, and a refund
    # finds its usage by it
    assert sorted(r["id"] for r in await conn.fetch('SELECT id FROM "UsageHistory"')) == ["chat-7f3a", "refund-7f3a"]
    assert [r["id"] for r in await conn.fetch('SELECT id FROM "StorageObject"')] == ["blob-ids-1"]
    assert [r["id"] for r in await conn.fetch('SELECT id FROM "SubscriptionEvent"')] == ["evt_ids&1"]
