"""`pedro-worker billing show|regrant` as an operator runs them (real processes, real servers),
and the user's debt in `pedro-worker user show`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.integration.family_helpers import billing, journal, plan, queued_messages
from tests.integration.helpers import balance, make_user, settle, waiting_rows
from tests.integration.test_cli import pedro
from worker.publisher import Publisher
from worker.runner import InProcessWorker

PAID = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _cli(settings, *args: str):
    return pedro(
        *args,
        database_url=settings.require_database_url(),
        redis_url=settings.require_redis_url(),
        PEDRO_REDIS_NAMESPACE=settings.redis_namespace,
    )


async def _insert(conn, table: str, *rows: dict) -> None:
    for row in rows:
        names = ", ".join(f'"{name}"' for name in row)
        values = ", ".join(f"${n}" for n in range(1, len(row) + 1))
        await conn.execute(f"INSERT INTO {table} ({names}) VALUES ({values})", *row.values())


async def _a_reversed_subscription_payment(conn) -> str:
    """The rows a subscription payment leaves behind, written directly: granted 100, 20 of them
    taken back (5 as debt), a waiting event, a rejection, the subscription and its plans."""
    user_id = await make_user(conn, "user_b", credits=100)
    day, now = timedelta(days=1), datetime.now(UTC)
    await _insert(conn, "worker.billing_payment", dict(
        payment_id="pay_1", clerk_user_id="user_b", customer_id="cus_1", subscription_id="sub_1",
        plan_ref="plan_pro", value_cents=4990, value_at=PAID, created_at=PAID, paid_at=PAID,
        paid_last_at=PAID, refunded_cents=1000, chargeback_at=PAID + 2 * day, chargeback_open=True,
    ))  # fmt: skip
    customer = dict(customer_id="cus_1", clerk_user_id="user_b")
    await _insert(conn, "worker.billing_customer", customer)
    await _insert(conn, "worker.billing_grant", dict(
        grant_id="pay_1", clerk_user_id="user_b", user_id=user_id, kind="subscription",
        outcome="granted", plan_id="plan_pro", cycle="MONTHLY", credits=100, reversed_credits=20,
        debt_recorded=5, moves=1, note="partial_refund",
    ))  # fmt: skip
    movement = dict(user_id=user_id, reference="pay_1", created_at=PAID)
    await _insert(
        conn, "worker.journal",
        dict(movement, event_id="grant/pay_1", kind="grant", delta=100, reason="plan plan_pro"),
        dict(movement, event_id="grant_reversal/pay_1", kind="grant_reversal", delta=-20,
             reason="PAYMENT_PARTIALLY_REFUNDED", created_at=PAID + day),
        dict(movement, event_id="u1", kind="usage", delta=-3, reference="u1"),  # not the payment's
    )  # fmt: skip
    await _insert(conn, "worker.credit_debt", dict(user_id=user_id, amount=5))
    await _insert(conn, "worker.credit_grant", dict(
        grant_id="plan/pay_1/0", user_id=user_id, source="plan", amount=100, remaining=80, priority=5,
        effective_at=PAID, expires_at=PAID + 31 * day, reference="pay_1", state="live",
    ))  # fmt: skip
    event = dict(userId=user_id, clerkUserId="user_b", planKey="plan_pro", status="CONFIRMED",
                 eventType="PAYMENT_CONFIRMED", occurredAt=PAID.replace(tzinfo=None))  # fmt: skip
    await _insert(
        conn, '"SubscriptionEvent"',
        dict(event, id="evt_paid", metadata={"payment": {"id": "pay_1"}}),
        dict(event, id="evt_other", metadata={"payment": {"id": "pay_2"}}),
        dict(event, id="evt_waited", userId=None, planKey=None, status="REFUNDED",
             eventType="PAYMENT_REFUNDED", metadata={}),
    )  # fmt: skip
    waiting = dict(queue="billing", event_type="billing.event", event={"paymentId": "pay_1"},
                   payload_hash="h", clerk_user_id="user_b")  # fmt: skip
    await _insert(
        conn, "worker.waiting",
        dict(waiting, event_id="evt_wait", reason="no_plan", waits_for="plan:plan_pro",
             state="waiting", first_waited_at=now - timedelta(hours=3)),
        dict(waiting, event_id="evt_waited", reason="unknown_user", waits_for="user:user_b",
             state="applied", first_waited_at=now - day),
    )  # fmt: skip
    rejection = dict(event_type="billing.event", reason="amount_differs_from_price")
    await _insert(
        conn, "worker.rejection",
        dict(rejection, event_id="evt_paid", detail="paid 49.90 by ana@example.com"),
        dict(rejection, event_id="evt_other", detail="not this payment"),
    )  # fmt: skip
    await _insert(conn, "worker.billing_subscription", dict(
        subscription_id="sub_1", clerk_user_id="user_b", customer_id="cus_1", plan_ref="plan_pro",
        cycle="MONTHLY", value_cents=4990, status="ACTIVE", state_at=PAID,
    ))  # fmt: skip
    plan_entry = dict(subscription_id="sub_1", cycle="MONTHLY")
    await _insert(
        conn, "worker.billing_subscription_plan",
        dict(plan_entry, effective_at=PAID, event_id="evt_s1", plan_ref="plan_basic",
             value_cents=1990),
        dict(plan_entry, effective_at=PAID + day, event_id="evt_s2", plan_ref="plan_pro",
             value_cents=4990),
    )  # fmt: skip
    return user_id


def _sections(out: str) -> dict[str, list[list[str]]]:
    """Each block of the text, by its first line: its other lines, split into words."""
    blocks = [block.splitlines() for block in out.strip().split("\n\n")]
    return {block[0]: [line.split() for line in block[1:]] for block in blocks}


async def test_show_prints_a_payments_facts_grant_movements_events_waiting_and_subscription(
    conn, settings
):
    user_id = await _a_reversed_subscription_payment(conn)

    shown = _cli(settings, "billing", "show", "pay_1")
    assert shown.returncode == 0, shown.stderr
    assert "ana@example.com" not in shown.stdout  # masked as the logs mask it
    sections = _sections(shown.stdout)
    assert list(sections) == [
        "payment pay_1", "grant", "allowances (credit grants)", "movements (oldest first)",
        "subscription events (oldest first)",
        "waiting events (1 open)", "rejections", "subscription sub_1",
    ]  # fmt: skip
    facts = {line[0]: line[1:] for line in sections["payment pay_1"]}
    assert facts["user"] == ["user_b", f"id={user_id}", "active", "balance", "100", "debt", "5"]
    assert facts["customer"] == ["cus_1", "(user", "user_b)"]
    assert facts["value"] == ["49.90", "(at", "2026-03-02", "12:00:00.000Z)"]
    assert facts["paid"] == ["2026-03-02", "12:00:00.000Z"] and facts["installment"] == ["-"]
    assert facts["refunded"] == ["10.00"]
    assert facts["chargeback"] == ["open", "(latest", "signal", "2026-03-04", "12:00:00.000Z)"]
    header, grant = sections["grant"]
    assert header[:3] == ["GRANT", "ID", "KIND"]
    assert grant[:8] == ["pay_1", "subscription", "granted", "plan_pro", "MONTHLY", "100", "20",
                         "5"]  # fmt: skip
    assert grant[-1] == "partial_refund"
    # its one monthly allowance: the partial refund took 20 of its 100 back
    [allowance] = sections["allowances (credit grants)"][1:]
    assert allowance[:4] == ["live", "80", "100", "0"] and allowance[-1] == "plan/pay_1/0"
    # oldest first; the user's usage is not the payment's
    assert [m[2:] for m in sections["movements (oldest first)"][1:]] == [
        ["grant", "+100", "plan", "plan_pro", "grant/pay_1"],
        ["grant_reversal", "-20", "PAYMENT_PARTIALLY_REFUNDED", "grant_reversal/pay_1"],
    ]
    # its payload names the payment, or it is one of its waiting events
    assert [e[2:] for e in sections["subscription events (oldest first)"][1:]] == [
        ["PAYMENT_CONFIRMED", "CONFIRMED", "plan_pro", "evt_paid"],
        ["PAYMENT_REFUNDED", "REFUNDED", "-", "evt_waited"],
    ]
    assert [w[2:] for w in sections["waiting events (1 open)"][1:]] == [
        ["-", "applied", "unknown_user", "user:user_b", "evt_waited"],
        ["3h00m", "waiting", "no_plan", "plan:plan_pro", "evt_wait"],
    ]
    assert [r[2:] for r in sections["rejections"][1:]] == [
        ["amount_differs_from_price", "evt_paid", "paid", "49.90", "by", "<email>"]
    ]
    subscription = sections["subscription sub_1"]
    assert ["status", "ACTIVE"] in subscription and ["value", "49.90"] in subscription
    assert [p[2:] for p in subscription[-2:]] == [
        ["plan_basic", "MONTHLY", "19.90", "evt_s1"], ["plan_pro", "MONTHLY", "49.90", "evt_s2"],
    ]  # fmt: skip

    as_json = _cli(settings, "billing", "show", "pay_1", "--json")
    assert as_json.returncode == 0, as_json.stderr
    view = json.loads(as_json.stdout)
    assert set(view) == {
        "payment_id", "payment", "clerk_user_id", "user", "customer", "grants", "allowances", "movements",
        "subscription_events", "waiting", "rejections", "subscription",
    }  # fmt: skip
    assert view["payment"]["value_cents"] == 4990 and view["payment"]["paid_at"] == PAID.isoformat()
    assert view["user"] == {"id": user_id, "is_active": True, "balance": 100, "debt": 5}
    assert view["customer"]["clerk_user_id"] == "user_b"
    [g] = view["grants"]
    assert (g["grant_id"], g["credits"], g["reversed_credits"], g["debt_recorded"]) == (
        "pay_1", 100, 20, 5
    )  # fmt: skip
    assert [(m["kind"], m["delta"]) for m in view["movements"]] == [
        ("grant", 100), ("grant_reversal", -20),
    ]  # fmt: skip
    assert [e["event_id"] for e in view["subscription_events"]] == ["evt_paid", "evt_waited"]
    assert view["subscription_events"][0]["occurred_at"] == PAID.isoformat()
    assert [(w["event_id"], w["state"]) for w in view["waiting"]] == [
        ("evt_waited", "applied"), ("evt_wait", "waiting"),
    ]  # fmt: skip
    assert 10800 <= view["waiting"][1]["age_s"] < 10900 and view["waiting"][0]["age_s"] is None
    assert [(r["event_id"], r["detail"]) for r in view["rejections"]] == [
        ("evt_paid", "paid 49.90 by <email>")
    ]
    assert [p["plan_ref"] for p in view["subscription"]["plans"]] == ["plan_basic", "plan_pro"]
    assert view["subscription"]["status"] == "ACTIVE"


async def test_show_and_regrant_of_an_unknown_payment_exit_1(conn, settings):
    for command in ("show", "regrant"):
        missing = _cli(settings, "billing", command, "pay_nope")
        assert missing.returncode == 1, missing.stderr
        assert "no payment 'pay_nope'" in missing.stderr and missing.stdout == ""
    assert _cli(settings, "billing", "show").returncode == 2


async def test_show_of_a_payment_whose_only_event_waits(conn, broker, settings):
    await plan(conn, "plan_pro", 500)
    with InProcessWorker(broker) as worker:
        Publisher(broker).publish(billing("PAYMENT_RECEIVED", id="evt_early", clerk="user_late"))
        worker.drain()
    shown = _cli(settings, "billing", "show", "pay_1")
    assert shown.returncode == 0, shown.stderr
    assert "no facts stored" in shown.stdout and 'user_late  (no "User" yet)' in shown.stdout
    [row] = [line.split() for line in shown.stdout.splitlines() if line.endswith("evt_early")]
    assert row[3:] == ["waiting", "unknown_user", "user:user_late", "evt_early"]


async def test_regrant_decides_the_grant_then_releases_the_payments_waiting_events(
    conn, broker, settings
):
    await plan(conn, "plan_pro", 500)
    with InProcessWorker(broker) as worker:  # the user does not exist: the payment waits
        Publisher(broker).publish(billing("PAYMENT_RECEIVED", id="evt_early", clerk="user_late"))
        worker.drain()
    [row] = await waiting_rows(conn)
    assert (row["event_id"], row["reason"]) == ("evt_early", "unknown_user")

    # No worker runs (so no sweep): the user appears, and an operator regrants the payment.
    await make_user(conn, "user_late", credits=100)
    regranted = _cli(settings, "billing", "regrant", "pay_1", "--by", "alice")
    assert regranted.returncode == 0, regranted.stderr  # its event is on its way to decide it
    note, released = regranted.stdout.splitlines()
    assert note.startswith("regrant of payment pay_1 (by alice): no_facts")
    assert released == (
        "released 1 waiting event(s) of payment pay_1 to their queues (0 already on their way, "
        "0 decided meanwhile): they apply through the billing queue, see `pedro-worker billing "
        "show pay_1`"
    )  # fmt: skip
    assert [r["state"] for r in await waiting_rows(conn, None)] == ["released"]
    assert queued_messages(settings) == 1  # enqueued on the billing queue

    with InProcessWorker(broker) as worker:
        await settle(worker, conn)
    assert await balance(conn, "user_late") == 600
    assert await journal(conn) == [("grant/pay_1", "grant", 500)]
    again = _cli(settings, "billing", "regrant", "pay_1", "--by", "alice")
    assert again.returncode == 0, again.stderr
    assert again.stdout == (
        "regrant of payment pay_1 (by alice): already_granted: plan plan_pro, 500 credits\n"
    )


async def test_regrant_with_a_plan_grants_a_paid_payment_that_named_none(
    conn, broker, worker, settings
):
    await make_user(conn, "user_pay", credits=10)
    await plan(conn, "plan_pack", 300)
    one_off = billing("PAYMENT_RECEIVED", plan=None, subscription=None)  # not a credit payment
    Publisher(broker).publish(one_off)
    worker.drain()
    assert await journal(conn) == []

    unnamed = _cli(settings, "billing", "regrant", "pay_1")
    assert unnamed.returncode == 1 and ": no_plan: " in unnamed.stdout
    named = _cli(settings, "billing", "regrant", "pay_1", "--plan", "plan_pack", "--by", "bob")
    assert named.returncode == 0, named.stderr
    assert named.stdout.startswith("regrant of payment pay_1 (plan plan_pack, by bob): granted: ")
    assert await balance(conn, "user_pay") == 310
    assert await journal(conn) == [("grant/pay_1", "grant", 300)]


async def test_regrant_with_a_plan_lets_a_payment_waiting_for_its_plan_apply_with_it(
    conn, broker, settings
):
    await make_user(conn, "user_pay", credits=10)
    await plan(conn, "plan_pack", 300)
    with InProcessWorker(broker) as worker:  # its plan does not exist: it waits for it
        Publisher(broker).publish(billing("PAYMENT_RECEIVED", id="evt_np", plan="plan_typo"))
        worker.drain()
    assert [r["waits_for"] for r in await waiting_rows(conn)] == ["plan:plan_typo"]

    named = _cli(settings, "billing", "regrant", "pay_1", "--plan", "plan_pack", "--by", "bob")
    assert named.returncode == 0, named.stderr
    assert "released 1 waiting event(s) of payment pay_1" in named.stdout
    shown = _cli(settings, "billing", "show", "pay_1")
    assert "\n  plan override  plan_pack\n" in shown.stdout  # kept on the payment
    with InProcessWorker(broker) as worker:  # the released event applies with the plan named
        await settle(worker, conn)
    assert await balance(conn, "user_pay") == 310
    assert await journal(conn) == [("grant/pay_1", "grant", 300)]


async def test_user_show_prints_the_debt_when_there_is_one(conn, settings):
    user_id = await make_user(conn, "user_owes", credits=0)
    await make_user(conn, "user_clear", credits=0)
    await conn.execute("INSERT INTO worker.credit_debt (user_id, amount) VALUES ($1, 30)", user_id)

    owes = _cli(settings, "user", "show", "user_owes")
    assert owes.returncode == 0, owes.stderr
    assert "debt      30  (the next credits given pay it first)" in owes.stdout
    assert json.loads(_cli(settings, "user", "show", "user_owes", "--json").stdout)["debt"] == 30
    clear = _cli(settings, "user", "show", "user_clear")
    assert clear.returncode == 0 and "debt" not in clear.stdout
    assert json.loads(_cli(settings, "user", "show", "user_clear", "--json").stdout)["debt"] == 0
