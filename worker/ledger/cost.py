"""What a usage costs when it does not say: pure, so every rule is unit-tested.

    the event's `credits` -> "AdminSettings".featureCosts[operationType] -> PEDRO_DEFAULT_FEATURE_COSTS

A configured cost is an integer-valued number (`25`, `25.0`) or a numeric string (`"25"`,
`" 25 "`, `"25.0"`) from 0 to 2,147,483,647. Anything else configured for the label (`"abc"`,
`2.5`, `-1`, `true`, `null`, an object) is an error naming the key, never a silent 0 or a
silent fall-through to the default: the event waits (`bad_feature_cost`) until an admin fixes
it. A label with no cost anywhere waits too (`no_cost`): a usage never costs 0 by accident.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from ..events import INT32_MAX


class CostError(ValueError):
    """featureCosts has a value for the label that is not a cost."""


class UnreadableCosts(dict):  # type: ignore[type-arg]
    """`featureCosts` is set but is no JSON object: no configured cost can be read from it."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what


def configured_costs(raw: object) -> Mapping[str, object]:
    """`"AdminSettings".featureCosts` as a mapping. NULL (no row, or JSON null) is no costs. A
    JSON string holding an object (what `JSON.stringify` stored into a Prisma `Json` field gives)
    is read as that object. Anything else is unreadable: every usage that needs a configured
    cost waits (`bad_feature_cost`) until it is fixed — never a silent fall-through."""
    if raw is None:
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return UnreadableCosts("a string that is not JSON")
    if isinstance(raw, dict):
        return raw
    return UnreadableCosts(f"a JSON {type(raw).__name__}")


def parse_cost(value: object) -> int | None:
    """An integer cost from a configured value, or None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        if not number.is_finite():
            return None
    else:
        return None
    if number != number.to_integral_value() or not 0 <= number <= INT32_MAX:
        return None
    return int(number)


def feature_cost(label: str, configured: Mapping[str, object], defaults: Mapping[str, int]) -> int | None:
    """The cost of a usage of `label` without `credits`: None when there is none anywhere.
    Raises CostError when featureCosts has the label with a value that is not a cost, or is no
    JSON object at all."""
    if isinstance(configured, UnreadableCosts):
        raise CostError(f'"AdminSettings".featureCosts is {configured.what}, not a JSON object: '
                        f"no cost for {label} can be read from it")  # fmt: skip
    if label in configured:
        cost = parse_cost(configured[label])
        if cost is None:
            raise CostError(f'"AdminSettings".featureCosts["{label}"] is not a cost (an integer from 0)')
        return cost
    return defaults.get(label)
