"""Debian's server packages for the topology tests (PgBouncer, redis-server with TLS and as a
Sentinel, PostgreSQL with SSL): locally a missing one skips its test; in CI (`CI=true`) it fails,
since `.ci/run` installs them."""

from __future__ import annotations

import glob
import os
import shutil

import pytest


def require_binary(name: str, *candidates: str) -> str:
    """The path of a server binary, or skip (fail in CI) when it is not installed."""
    for path in (shutil.which(name), *candidates):
        if path and os.access(path, os.X_OK):
            return path
    message = f"{name} is not installed (Debian: apt-get install {name})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}: CI must run the topology tests (.ci/run installs it)")
    pytest.skip(message)


def debian_postgres_bin() -> str:
    """The bin directory of Debian's PostgreSQL (built with SSL), newest version first."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), reverse=True)
    path = require_binary("postgres", *found) if not found else found[0]
    return os.path.dirname(path)
