"""`dramatiq bench.noop_app`: the product's worker module plus the no-op actor (bench only)."""

from __future__ import annotations

from worker.app import broker

from .noop import register_noop

register_noop(broker)
