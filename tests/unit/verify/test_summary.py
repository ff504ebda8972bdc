"""The run summary's fields are named once (verify/summary.py), and the architecture page
lists them as they are: in order, with what each means and whether a replay repeats it."""

from __future__ import annotations

import re

import pytest

from flashsale.counters import OUTCOME_COUNTS
from tests.paths import ROOT
from verify.summary import BUSINESS_FIELDS, FIELDS, NAMES, ordered


def _documented() -> list[tuple[str, bool, str]]:
    page = (ROOT / "docs" / "architecture.md").read_text()
    section = page.split("### The run summary", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| (yes|no) \| (.+) \|$", section, re.M)
    return [(name, replay == "yes", meaning) for name, replay, meaning in rows]


def test_the_architecture_page_lists_every_field_as_defined() -> None:
    assert _documented() == [(f.name, f.business, f.meaning) for f in FIELDS]


def test_every_outcome_count_is_a_summary_field_a_replay_repeats() -> None:
    for count in OUTCOME_COUNTS:
        assert count.summary in BUSINESS_FIELDS
    assert len(set(NAMES)) == len(NAMES)


def test_a_summary_is_the_fields_in_order_and_nothing_else() -> None:
    values = {name: i for i, name in enumerate(reversed(NAMES))}
    assert list(ordered(values)) == list(NAMES)
    with pytest.raises(KeyError):
        ordered({**values, "orders_lost": 0})
    with pytest.raises(KeyError):
        ordered({k: v for k, v in values.items() if k != "reconciled"})
