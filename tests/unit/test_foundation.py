"""Settings, ids, logging and the named-query registry."""

from __future__ import annotations

import json
import logging
import re

import pytest
import structlog

from worker.db import QUERIES, parse_queries
from worker.ids import new_id
from worker.logs import configure_logging, get_logger, scrub
from worker.settings import Settings, mask_url


def test_database_url_password_is_masked():
    assert mask_url("postgresql://app:s3cr%40t@db:5432/pedro") == "postgresql://app:***@db:5432/pedro"
    assert mask_url("redis://:hunter2@cache:6379/0") == "redis://:***@cache:6379/0"
    assert mask_url("postgresql://db/pedro") == "postgresql://db/pedro"


def test_settings_never_print_their_secrets(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cret@db/pedro")
    settings = Settings()
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings)
    assert settings.require_database_url().endswith("@db/pedro")


def test_ids_look_like_prisma_cuids():
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 25 and i.startswith("c") and i.isalnum() and i.islower() for i in ids)


def test_log_scrubbing_removes_emails_and_url_passwords():
    line = scrub("user ana.maria+x@example.com.br at postgresql://u:pw@h/db")
    assert "example.com" not in line and ":pw@" not in line


def test_json_logs_carry_context_and_hide_secrets(capsys):
    configure_logging(Settings(log_format="json"))
    with structlog.contextvars.bound_contextvars(message_id="m-1"):
        get_logger("t").info("event_applied", event_id="e-1", email="a@b.io", url="redis://:pw@h:1/0")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "event_applied"
    assert (line["event_id"], line["message_id"]) == ("e-1", "m-1")
    assert line["email"] == "<email>" and ":pw@" not in line["url"]
    logging.getLogger().handlers.clear()


def test_every_named_query_has_a_description():
    assert {"lock_accounts", "claim_events", "write_ledger", "find_balance_drift"} <= set(QUERIES)
    undocumented = [name for name, sql in QUERIES.items() if not sql.startswith("-- ")]
    assert undocumented == []


def test_no_named_query_leaves_session_state_behind():
    """The pool skips asyncpg's reset query on release (worker/db.py), so no query may set
    anything that outlives its transaction: session settings (a setting is allowed only for the
    transaction: `set_config(…, true)`), session advisory locks, LISTEN, cursors."""
    session_state = re.compile(
        r"\b(pg_(try_)?advisory_lock(_shared)?|LISTEN|DECLARE)\b|^\s*SET\s|\bset_config\s*\((?![^)]*,\s*true\s*\))",
        re.I,
    )
    for name, sql in QUERIES.items():
        code = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
        assert not session_state.search(code), name
    assert session_state.search("SELECT set_config('lock_timeout', $1, false)")
    assert session_state.search("SET lock_timeout = 1")
    assert not session_state.search("SELECT set_config('lock_timeout', $1, true)")


def test_a_query_name_may_not_be_defined_twice():
    with pytest.raises(ValueError, match="defined twice"):
        parse_queries("-- a --\nSELECT 1\n-- a --\nSELECT 2\n")


def test_an_empty_url_in_the_environment_means_unset(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "")
    assert Settings().redis_url is None


def test_every_setting_is_documented_in_the_readme():
    from worker.settings import ROOT

    readme = (ROOT / "README.md").read_text()
    undocumented = [
        name for name in Settings.model_fields
        if f"PEDRO_{name.upper()}" not in readme and f"`{name.upper()}`" not in readme
    ]  # fmt: skip
    assert undocumented == []
