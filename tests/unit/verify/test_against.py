"""Judging another system's output (`verify --against`) on hand-made topics: no broker."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from flashsale.events import OrderEvent, encode_event
from tests.factories import make_order, make_restock, make_step
from tests.paths import ROOT
from verify.against import classes, judge
from verify.contract import schemas


@dataclass
class Rec:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: int = 0


SKU = "NL-INF-0001"
ORDER = make_order(
    sku=SKU, merchant="Zuivel", country="NL", category="infant-formula", unit_price_cents=3_000
)
O1, O2, O3, O4 = (replace(ORDER, order_id=f"o{i}") for i in range(1, 5))
MINUTE = ORDER.event_ts_ms // 60_000 * 60_000
EMIT_MS = ORDER.emit_ns // 1_000_000

# One partition's story, with the outcome and amount each message must get.
STORY: list[tuple[OrderEvent, str, int]] = [
    (make_restock(ORDER, quantity=2), "restocked", 0),
    (O1, "accepted", 3_000),
    (O2, "accepted", 3_000),  # sold out
    (O1, "duplicate", 0),  # client retry
    (O3, "rejected_oversell", 0),
    (make_step(O1, "paid"), "paid", 3_000),
    (make_step(O2, "cancelled"), "cancelled", 3_000),  # one unit back
    (make_step(O3, "paid"), "orphan", 0),  # nothing was reserved
    (O4, "accepted", 3_000),  # sold out again
    (make_step(O4, "paid"), "paid", 3_000),
    (make_step(O1, "refunded"), "refunded", 3_000),
    (make_step(O1, "paid"), "duplicate", 0),  # a retried payment
]
MALFORMED = len(STORY)
ORDERS = {
    0: [Rec(0, i, SKU.encode(), encode_event(e)) for i, (e, _, _) in enumerate(STORY)]
    + [Rec(0, MALFORMED, b"x", b"not json")]
}


def _out(docs: list[dict[str, Any]], delay_ms: int = 5) -> dict[int, list[Rec]]:
    return {
        0: [
            Rec(0, i, None, orjson.dumps(doc), timestamp=EMIT_MS + delay_ms)
            for i, doc in enumerate(docs)
        ]
    }


def _decisions(**wrong: tuple[str, int]) -> list[dict[str, Any]]:
    """The right decisions (the malformed message's `dlq` last), except `wrong` (keyed
    `at{offset}`) with another outcome and amount."""
    docs = []
    for offset, (_, outcome, amount) in enumerate(STORY):
        outcome, amount = wrong.get(f"at{offset}", (outcome, amount))
        docs.append({"partition": 0, "offset": offset, "outcome": outcome, "amount_cents": amount})
    docs.append({"partition": 0, "offset": MALFORMED, "outcome": "dlq", "amount_cents": 0})
    return docs


def _judge(docs: list[dict[str, Any]], level: str = "decisions", **kw: Any) -> Any:
    return judge(ORDERS, _out(docs, **kw), level, "theirs", window=100, grace_ms=2_000)


def _found(verdict: Any) -> dict[str, int]:
    return {name: n for name, n in verdict.counts.items() if n}


def test_the_right_decisions_pass_with_their_latency() -> None:
    verdict = _judge(_decisions(), delay_ms=7)
    assert verdict.passed, verdict.examples
    assert verdict.events == len(STORY) + 1
    # Every event but the restock and the dead letter, 7 ms after its emit.
    assert verdict.latencies_ms == [7.0] * (len(STORY) - 1)
    out = verdict.to_json()
    assert out["latency_p99_ms"] == 7.0
    assert list(out["anomalies"]) == list(classes("decisions"))
    assert "lost" in out["anomalies"] and "stock" not in out["anomalies"]


def test_a_counted_retry_is_double_counted_and_moves_gmv() -> None:
    verdict = _judge(_decisions(at11=("paid", 3_000)))
    assert _found(verdict) == {"double_counted": 1, "gmv_window": 1}
    assert verdict.examples["double_counted"] == ["0:11: paid 3000, a retry"]
    assert "NL infant-formula: 9,000 != 6,000 cents" in verdict.examples["gmv_window"][0]


def test_missing_wrong_and_phantom_decisions_are_named() -> None:
    docs = _decisions(at4=("accepted", 3_000), at9=("paid", 2_999))
    del docs[7]  # the orphan's decision
    docs.append({"partition": 3, "offset": 0, "outcome": "paid", "amount_cents": 1})
    verdict = _judge(docs)
    found = _found(verdict)
    assert found["lost"] == 1 and verdict.examples["lost"] == ["0:7 (orphan)"]
    assert found["wrong_outcome"] == 1 and found["wrong_amount"] == 1
    assert found["phantom"] == 1
    # Accepting the order that should have been rejected takes the SKU below zero.
    assert found["oversold"] == 1 and verdict.examples["oversold"][0].startswith(SKU)


def test_repeats_count_once_unless_they_disagree() -> None:
    docs = _decisions()
    verdict = _judge(docs + docs[:3])
    assert verdict.passed
    verdict = _judge([*docs, {**docs[1], "outcome": "rejected_oversell", "amount_cents": 0}])
    assert _found(verdict) == {"conflicting": 1}


def test_records_breaking_the_schema_are_malformed_and_the_rest_judged() -> None:
    docs = [*_decisions(), {"partition": 0, "offset": 1, "outcome": "sold"}, {"offset": True}]
    verdict = _judge(docs)
    assert _found(verdict) == {"malformed": 2}
    assert "outcome" in verdict.examples["malformed"][0]


def _totals() -> list[dict[str, Any]]:
    return [
        {"kind": "sku", "sku": SKU, "units_sold": 0, "stock": 2},
        {"kind": "sku", "sku": SKU, "units_sold": 2, "stock": 0},
        {"kind": "gmv", "minute_start_ms": MINUTE, "country": "NL", "category": "infant-formula",
         "gmv_cents": 3_000},
        {"kind": "gmv", "minute_start_ms": MINUTE, "country": "NL", "category": "infant-formula",
         "gmv_cents": 6_000},
        {"kind": "sold_out", "sku": SKU, "event_ts_ms": ORDER.event_ts_ms},
    ]  # fmt: skip


def test_the_right_totals_pass() -> None:
    verdict = _judge(_totals(), level="totals", delay_ms=3)
    assert verdict.passed, verdict.examples
    # The GMV cell, the SKU and the sell-out (both sell-outs share a time: one key).
    assert verdict.latencies_ms == [3.0, 3.0, 3.0]


def test_wrong_totals_are_named_by_key() -> None:
    docs = _totals()
    docs[3]["gmv_cents"] = 9_000  # a payment counted twice
    docs[1].update(units_sold=3, stock=-1)
    del docs[4]
    verdict = _judge(docs, level="totals")
    assert _found(verdict) == {
        "gmv_window": 1,
        "units_sold": 1,
        "stock": 1,
        "oversold": 1,
        "sell_outs": 1,
    }
    assert verdict.examples["units_sold"] == [f"{SKU}: 3 != 2"]
    assert verdict.examples["sell_outs"][0].endswith("missing (orders 0:2)")


def test_a_cell_short_by_its_late_events_is_a_late_window() -> None:
    late = replace(O4, event_ts_ms=ORDER.event_ts_ms - 120_000)  # two minutes behind
    story = [e for e, _, _ in STORY[:8]] + [late, make_step(late, "paid")]
    orders = {0: [Rec(0, i, SKU.encode(), encode_event(e)) for i, e in enumerate(story)]}
    base = {"kind": "gmv", "country": "NL", "category": "infant-formula"}
    right = [
        {**base, "minute_start_ms": MINUTE, "gmv_cents": 3_000},
        {**base, "minute_start_ms": MINUTE - 120_000, "gmv_cents": 3_000},
        {"kind": "sku", "sku": SKU, "units_sold": 2, "stock": 0},
        {"kind": "sold_out", "sku": SKU, "event_ts_ms": ORDER.event_ts_ms},
        {"kind": "sold_out", "sku": SKU, "event_ts_ms": late.event_ts_ms},
    ]
    verdict = judge(orders, _out(right), "totals", "theirs", window=100, grace_ms=2_000)
    assert verdict.passed, verdict.examples
    right[1]["gmv_cents"] = 0
    verdict = judge(orders, _out(right), "totals", "theirs", window=100, grace_ms=2_000)
    assert _found(verdict) == {"late_window": 1}


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="not one of decisions, totals"):
        _judge([], level="sums")


def test_the_published_schemas_are_the_contracts() -> None:
    for level, schema in schemas().items():
        published = Path(ROOT / "docs" / "schemas" / f"{level}.schema.json")
        assert json.loads(published.read_text()) == schema, f"regenerate {published}"
