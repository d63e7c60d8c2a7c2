"""Thin dramatiq actors: decode the message, call the ledger, turn outcomes into retries.

Actors are plain async functions registered on a broker by `register_actors`, so each broker
(the worker's, a test's) gets its own actor objects and no import-time global broker is needed.
"""

from __future__ import annotations

import dramatiq

from ..errors import ValidationRejected
from . import billing, storage, usage, users

ACTORS = [
    (usage.apply_usage_events, {"queue_name": "usage", "actor_name": "apply_usage_events"}),
    (users.apply_user_events, {"queue_name": "users", "actor_name": "apply_user_events"}),
    (billing.record_billing_events, {"queue_name": "billing", "actor_name": "record_billing_events"}),
    (storage.apply_storage_events, {"queue_name": "storage", "actor_name": "apply_storage_events"}),
]


def register_actors(broker: dramatiq.Broker) -> None:
    for fn, options in ACTORS:
        dramatiq.actor(fn, broker=broker, throws=(ValidationRejected,), **options)
