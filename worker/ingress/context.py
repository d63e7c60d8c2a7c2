"""What every endpoint of one ingress app shares (built once in `create_app`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
import httpx
from dramatiq.brokers.redis import RedisBroker
from starlette.requests import Request
from svix.webhooks import Webhook

from ..ledger.operation_types import OperationTypes
from ..publisher import Publisher
from ..settings import Settings
from .grouping import EnqueueGroups


@dataclass
class Ingress:
    settings: Settings
    broker: RedisBroker
    publisher: Publisher
    clerk: Webhook | None
    groups: EnqueueGroups  # POST /v1/events and the webhooks enqueue through it (grouping.py)
    http: httpx.AsyncClient | None = None  # for HEAD on blob URLs; opened by the app's lifespan
    pool: asyncpg.Pool | None = None  # the credit API's (credits_api.py); None without a database URL
    labels: OperationTypes = field(default_factory=OperationTypes)  # "OperationType", for holds


def ingress(request: Request) -> Ingress:
    return request.app.state.ingress
