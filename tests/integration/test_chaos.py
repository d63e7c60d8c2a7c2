"""The chaos run's short form: crashes under load lose nothing and apply nothing twice.

Worker processes are SIGKILLed every two seconds, Redis is killed (-9) and restarted, PostgreSQL
crashes and restarts, while 3,000 events of every family (some invalid, some twice, some out
of order) flow. The full run (100,000 events) is `pedro-worker chaos`; its figures are in
docs/reliability.md.
"""

from __future__ import annotations

import argparse

from bench.chaos import add_arguments, config_from, run_chaos


def test_crashes_under_load_lose_nothing_and_double_nothing(tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from(parser.parse_args(["--quick"]))
    cfg.log_dir = tmp_path
    report = run_chaos(cfg)

    print("\n".join(report.lines()))
    assert report.worker_kills >= 3 and report.redis_restarts == 1 and report.postgres_restarts == 1
    assert report.lost == 0
    assert report.applied_twice == 0
    assert report.wrong_balances == 0 and report.drift == 0
    assert report.ok, report.problems
