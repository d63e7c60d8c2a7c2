"""The dramatiq entry module: `dramatiq worker.app` (what `pedro-worker worker` runs).

Importing it builds the broker (with every actor) from the environment's settings and installs
it as dramatiq's global broker.
"""

from __future__ import annotations

import dramatiq

from .broker import build_broker
from .logs import configure_logging
from .settings import get_settings

settings = get_settings()
configure_logging(settings)
broker = build_broker(settings)
dramatiq.set_broker(broker)
