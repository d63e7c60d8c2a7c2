"""What a configured feature cost may look like (worker/ledger/cost.py)."""

from __future__ import annotations

import pytest

from worker.ledger.cost import CostError, configured_costs, feature_cost, parse_cost


@pytest.mark.parametrize(
    ("value", "cost"),
    [(25, 25), (0, 0), (2.0, 2), ("25", 25), (" 7 ", 7), ("25.0", 25), (2**31 - 1, 2**31 - 1)],
)
def test_integer_valued_numbers_and_numeric_strings_are_costs(value, cost):
    assert parse_cost(value) == cost


@pytest.mark.parametrize(
    "value", ["lots", "", "2.5", 2.5, -1, "-3", True, False, None, {"n": 1}, [5], float("nan"), "inf", 2**31]
)
def test_anything_else_is_not_a_cost(value):
    assert parse_cost(value) is None


def test_a_configured_label_wins_over_the_default_and_a_bad_one_is_an_error_naming_the_key():
    assert feature_cost("AI_TEXT_CHAT", {"AI_TEXT_CHAT": "25"}, {"AI_TEXT_CHAT": 5}) == 25
    assert feature_cost("AI_TEXT_CHAT", {}, {"AI_TEXT_CHAT": 5}) == 5
    assert feature_cost("VIDEO_GENERATION", {}, {"AI_TEXT_CHAT": 5}) is None
    with pytest.raises(CostError, match=r'featureCosts\["AI_TEXT_CHAT"\]'):
        feature_cost("AI_TEXT_CHAT", {"AI_TEXT_CHAT": "lots"}, {"AI_TEXT_CHAT": 5})


def test_featurecosts_stored_as_a_json_string_of_an_object_is_read_and_anything_else_waits():
    assert configured_costs(None) == {}
    assert configured_costs('{"AI_TEXT_CHAT": 25}') == {"AI_TEXT_CHAT": 25}  # JSON.stringify into a Json field
    for unreadable in ("not json", "[1, 2]", 7, [1], "\"text\""):
        with pytest.raises(CostError, match="not a JSON object"):
            feature_cost("AI_TEXT_CHAT", configured_costs(unreadable), {"AI_TEXT_CHAT": 5})
