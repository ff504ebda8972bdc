"""Reconciliation on hand-made topic contents: no broker."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import orjson

from flashsale.events import encode_event
from flashsale.verify import compute_truth, reconcile
from tests.factories import make_order


@dataclass
class Rec:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


ORDER = make_order(
    sku="NL-INF-0001",
    merchant="Zuivel",
    country="NL",
    category="infant-formula",
    unit_price_cents=3_000,
)


def _orders() -> dict[int, list[Rec]]:
    events = [
        replace(ORDER, order_id="restock", type="restock", quantity=2),
        ORDER,
        replace(ORDER, order_id="o2"),
        ORDER,  # client retry
        replace(ORDER, order_id="o3"),  # no stock left
    ]
    recs = [Rec(0, i, b"NL-INF-0001", encode_event(e)) for i, e in enumerate(events)]
    recs.append(Rec(0, 5, b"x", b"not json"))
    return {0: recs}


def _decisions(outcomes: list[str], amounts: list[int]) -> dict[int, list[Rec]]:
    ids = ["restock", "o1", "o2", "o1", "o3"]
    out = []
    for offset, (oid, outcome, amount) in enumerate(zip(ids, outcomes, amounts, strict=True)):
        doc = {
            "order_id": oid,
            "type": "restock" if oid == "restock" else "created",
            "outcome": outcome,
            "sku": "NL-INF-0001",
            "quantity": 1 if oid != "restock" else 2,
            "amount_cents": amount,
            "partition": 0,
            "offset": offset,
            "event_ts_ms": 0,
            "emit_ns": 1_000_000,
            "processed_ns": 3_000_000,
        }
        out.append(Rec(0, offset, b"k", orjson.dumps(doc)))
    return {0: out}


GOOD_OUTCOMES = ["restocked", "accepted", "accepted", "duplicate", "rejected_oversell"]
GOOD_AMOUNTS = [0, 3_000, 3_000, 0, 0]


def _state(**changes: object) -> dict[int, list[Rec]]:
    doc: dict[str, object] = {
        "partition": 0,
        "window": 100,
        "last_offset": 5,
        "gmv_cents": 6_000,
        "accepted": 2,
        "rejected_oversell": 1,
        "duplicates": 1,
        "restocks": 1,
        "dlq": 1,
        "stock": {"NL-INF-0001": 0},
        "sold_out": ["NL-INF-0001"],
        "seen": [],
    }
    doc.update(changes)
    return {0: [Rec(0, 0, b"0", orjson.dumps(doc))]}


DLQ = {
    0: [Rec(0, 0, b"x", b"not json", [("flashsale.partition", b"0"), ("flashsale.offset", b"5")])]
}
SOLD_OUT = {
    0: [Rec(0, 0, b"NL-INF-0001", orjson.dumps({"type": "sold_out", "sku": "NL-INF-0001"}))]
}


def test_truth_applies_restock_dedupe_and_oversell_rules() -> None:
    truth = compute_truth(_orders(), window=100)
    assert (truth.accepted, truth.rejected_oversell, truth.duplicates, truth.dlq) == (2, 1, 1, 1)
    assert truth.gmv_cents == 6_000
    assert truth.sold_out == {"NL-INF-0001"}
    assert truth.orders == 5  # four order messages and one malformed, not the restock


def test_matching_outputs_reconcile() -> None:
    result = reconcile(
        _orders(), _decisions(GOOD_OUTCOMES, GOOD_AMOUNTS), DLQ, SOLD_OUT, _state(), 100
    )
    assert result.differences == []
    assert result.summary["reconciled"] is True
    assert result.summary["gmv_cents_streamed"] == 6_000
    assert result.summary["e2e_latency_p50_ms"] == 2.0


def test_redelivered_decisions_that_agree_are_counted_once() -> None:
    decisions = _decisions(GOOD_OUTCOMES, GOOD_AMOUNTS)
    decisions[0] = decisions[0] + decisions[0][1:3]
    result = reconcile(_orders(), decisions, DLQ, SOLD_OUT, _state(), 100)
    assert result.reconciled
    assert result.summary["orders_accepted"] == 2


def test_worker_gmv_off_by_one_cent_is_not_reconciled() -> None:
    result = reconcile(
        _orders(),
        _decisions(GOOD_OUTCOMES, GOOD_AMOUNTS),
        DLQ,
        SOLD_OUT,
        _state(gmv_cents=6_001),
        100,
    )
    assert not result.reconciled
    assert any("GMV" in d for d in result.differences)


def test_accepting_an_order_without_stock_is_reported_as_oversold() -> None:
    outcomes = ["restocked", "accepted", "accepted", "duplicate", "accepted"]
    result = reconcile(
        _orders(), _decisions(outcomes, [0, 3_000, 3_000, 0, 3_000]), DLQ, SOLD_OUT, _state(), 100
    )
    assert not result.reconciled
    assert result.summary["oversold_skus"] == 1


def test_missing_dead_letter_and_missing_decision_are_reported() -> None:
    decisions = _decisions(GOOD_OUTCOMES, GOOD_AMOUNTS)
    decisions[0] = decisions[0][:-1]
    result = reconcile(_orders(), decisions, {}, SOLD_OUT, _state(), 100)
    assert not result.reconciled
    assert any("no decision or dead letter" in d for d in result.differences)
