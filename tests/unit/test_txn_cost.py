"""bench/txn_cost.py's arithmetic: per transaction, per event, and against the largest size."""

from __future__ import annotations

from bench.txn_cost import Cost, print_table, transactions_for


def test_costs_per_transaction_and_per_event():
    cost = Cost(size=16, transactions=200, python_s=0.4, backend_s=0.6, wall_s=1.5)
    assert cost.per_transaction_us(cost.python_s) == 2_000
    assert cost.per_event_us(cost.backend_s) == 187.5


def test_each_size_is_compared_with_the_largest_size_per_event(capsys):
    lone = Cost(size=1, transactions=100, python_s=0.1, backend_s=0.1, wall_s=0.3)  # 2,000 us an event
    batch = Cost(size=500, transactions=10, python_s=0.5, backend_s=0.5, wall_s=1.2)  # 200 us an event
    print_table([lone, batch])
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip()[:1].isdigit()]
    assert [(row[0], row[-1]) for row in rows] == [("1", "10.00x"), ("500", "1.00x")]


def test_small_sizes_run_more_transactions_large_ones_fewer_events_each_bounded():
    assert transactions_for(1) == 300
    assert transactions_for(500) == 60
    assert transactions_for(30_000) == 20
