"""Notification settings as parsed values: endpoints and low-balance thresholds."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

# Every notification type (docs/notifications.schema.json has their payloads).
TYPES = (
    "credits.low",
    "credits.depleted",
    "credits.granted",
    "credits.reversed",
    "credits.expiring",
    "credits.expired",
    "hold.expired",
    "usage.rejected",
    "event.waiting",
    "user.provisioned",
)

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class Endpoint(BaseModel):
    """A receiver of notifications: `PEDRO_NOTIFY_ENDPOINTS` is a JSON list of these."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "app"
    url: str
    secret: SecretStr  # whsec_<base64>: Standard Webhooks' secret format
    events: tuple[str, ...] = Field(default=("*",))  # types it takes; "*": all

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("an endpoint name is 1-64 letters, digits, '_', '.' or '-'")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"https?://[^\s/]+", value):
            raise ValueError("an endpoint url is http(s)://host/…")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        try:
            key = base64.b64decode(text.removeprefix("whsec_"), validate=True) if text.startswith("whsec_") else b""
        except binascii.Error:
            key = b""
        if not key:
            raise ValueError("a notification secret is 'whsec_<base64>' (Standard Webhooks)")
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [e for e in value if e != "*" and e not in TYPES]
        if unknown:
            raise ValueError(f"unknown notification types {unknown}; known: {', '.join(TYPES)}")
        return value

    def takes(self, notice_type: str) -> bool:
        return "*" in self.events or notice_type in self.events


@dataclass(frozen=True, slots=True)
class Threshold:
    """A low-balance threshold: `20` credits, or `10%` of the user's current plan allowance."""

    value: int
    percent: bool = False

    @property
    def label(self) -> str:
        return f"{self.value}%" if self.percent else str(self.value)

    def credits(self, plan_credits: int | None) -> int | None:
        """The threshold in credits (None: a percentage, and no plan allowance to take it of)."""
        if not self.percent:
            return self.value
        if not plan_credits or plan_credits <= 0:
            return None
        return plan_credits * self.value // 100

    @classmethod
    def parse(cls, text: str) -> Threshold:
        text = text.strip()
        percent = text.endswith("%")
        number = text[:-1].strip() if percent else text
        if not number.isdigit() or int(number) <= 0 or (percent and int(number) > 100):
            raise ValueError(f"a threshold is a positive whole number of credits or a percentage (1-100%), not {text!r}")
        return cls(int(number), percent)
