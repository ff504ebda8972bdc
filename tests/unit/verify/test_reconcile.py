"""Reconciliation on hand-made topic contents: no broker."""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import pytest

from flashsale.events import OrderEvent, encode_event
from streams.rules import apply_event
from streams.state import PartitionState
from tests.factories import make_decision, make_order, make_restock, make_step
from verify.reconcile import COUNTS, reconcile
from verify.truth import compute_truth


@dataclass
class Rec:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


SKU = "NL-INF-0001"
ORDER = make_order(
    sku=SKU, merchant="Zuivel", country="NL", category="infant-formula", unit_price_cents=3_000
)
O1, O2, O3, O4 = (replace(ORDER, order_id=f"o{i}") for i in range(1, 5))

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
    (make_step(O1, "paid"), "duplicate", 0),
]
MALFORMED_OFFSET = len(STORY)


def _orders() -> dict[int, list[Rec]]:
    recs = [Rec(0, i, SKU.encode(), encode_event(e)) for i, (e, _, _) in enumerate(STORY)]
    recs.append(Rec(0, MALFORMED_OFFSET, b"x", b"not json"))
    return {0: recs}


def _decision(offset: int, outcome: str, amount: int) -> Rec:
    doc = make_decision(STORY[offset][0], (0, offset), outcome, amount)
    return Rec(0, offset, b"k", orjson.dumps(doc))


def _decisions(**wrong: tuple[str, int]) -> dict[int, list[Rec]]:
    """The right decisions, except `wrong` (keyed `at{offset}`) with another outcome/amount."""
    out = []
    for offset, (_, outcome, amount) in enumerate(STORY):
        outcome, amount = wrong.get(f"at{offset}", (outcome, amount))
        out.append(_decision(offset, outcome, amount))
    return {0: out}


def _state(**changes: object) -> dict[int, list[Rec]]:
    doc: dict[str, object] = {
        "partition": 0,
        "window": 100,
        "last_offset": MALFORMED_OFFSET,
        "gmv_cents": 6_000,
        "accepted": 3,
        "rejected_oversell": 1,
        "duplicates": 2,
        "paid": 2,
        "cancelled": 1,
        "refunded": 1,
        "refunded_cents": 3_000,
        "orphans": 1,
        "restocks": 1,
        "dlq": 1,
        "stock": {SKU: 0},
        "restocked": {SKU: 2},
        "sold": {SKU: 2},
        "sell_outs": [[SKU, TS, 2, None, "o2", 0], [SKU, TS, 8, None, "o4", 0]],
        "seen": [],
        "open": {},
        "paid_lines": {"o4/0": [1, 3_000, "NL", "infant-formula", "Zuivel", "Guangdong", SKU]},
    }
    doc.update(changes)
    return {0: [Rec(0, 0, b"0", orjson.dumps(doc))]}


DLQ = {
    0: [
        Rec(
            0,
            0,
            b"x",
            b"not json",
            [("flashsale.partition", b"0"), ("flashsale.offset", str(MALFORMED_OFFSET).encode())],
        )
    ]
}
TS = ORDER.event_ts_ms


def _sold_out(offset: int, order_id: str) -> Rec:
    doc = {
        "type": "sold_out",
        "sku": SKU,
        "partition": 0,
        "offset": offset,
        "order_id": order_id,
        "line": 0,
        "event_ts_ms": TS,
        "time_to_sell_out_s": 0.0,
    }
    return Rec(0, offset, SKU.encode(), orjson.dumps(doc))


SOLD_OUT = {0: [_sold_out(2, "o2"), _sold_out(8, "o4")]}


def _reconcile(**changes: Any) -> Any:
    args: dict[str, Any] = {
        "orders": _orders(),
        "decisions": _decisions(),
        "dead_letters": DLQ,
        "inventory": SOLD_OUT,
        "states": _state(),
        "default_window": 100,
    }
    args.update(changes)
    return reconcile(**args)


def test_truth_applies_the_lifecycle_rules() -> None:
    truth = compute_truth(_orders(), window=100)
    expected = [outcome for _, outcome, _ in STORY] + ["dlq"]
    assert [truth.outcomes[(0, i)] for i in range(len(expected))] == expected
    assert truth.amounts == {(0, i): cents for i, (_, _, cents) in enumerate(STORY) if cents}
    assert {name: truth.count(name) for name in COUNTS} == {
        "accepted": 3,
        "rejected_oversell": 1,
        "duplicates": 2,
        "paid": 2,
        "cancelled": 1,
        "refunded": 1,
        "orphans": 1,
        "mismatches": 0,
    }
    assert (truth.gmv_cents, truth.refunded_cents, truth.dlq) == (6_000, 3_000, 1)
    assert truth.sold_out == {SKU}
    assert truth.sold_out_times == 2
    assert truth.orders == 6  # five `created` messages and one malformed
    assert truth.events == 12  # every message but the restock


def test_matching_outputs_reconcile() -> None:
    result = _reconcile()
    assert result.differences == []
    s = result.summary
    assert s["reconciled"] is True
    assert (s["gmv_cents_expected"], s["gmv_cents_streamed"], s["refunded_cents"]) == (
        6_000,
        6_000,
        3_000,
    )
    assert (s["orders_produced"], s["orders_processed"]) == (6, 6)
    assert (s["events_produced"], s["events_processed"]) == (12, 12)
    assert (s["orders_accepted"], s["orders_rejected_oversell"], s["duplicates_dropped"]) == (
        3,
        1,
        2,
    )
    assert (s["orders_paid"], s["orders_cancelled"], s["orders_refunded"]) == (2, 1, 1)
    assert (s["orphan_events"], s["dlq_messages"], s["oversold_skus"]) == (1, 1, 0)
    assert s["e2e_latency_p50_ms"] == 2.0


def test_redelivered_decisions_that_agree_are_counted_once() -> None:
    decisions = _decisions()
    decisions[0] = decisions[0] + decisions[0][1:6]
    result = _reconcile(decisions=decisions)
    assert result.reconciled
    assert result.summary["orders_accepted"] == 3
    assert result.summary["orders_paid"] == 2


def test_redelivered_decision_that_disagrees_is_reported() -> None:
    decisions = _decisions()
    decisions[0].append(_decision(5, "orphan", 0))
    result = _reconcile(decisions=decisions)
    assert not result.reconciled
    assert any("disagree" in d for d in result.differences)


@pytest.mark.parametrize(
    ("field_name", "value", "mentions"),
    [
        ("gmv_cents", 6_001, "GMV"),
        ("refunded_cents", 0, "refunded cents"),
        ("paid", 3, "paid"),
        ("cancelled", 0, "cancelled"),
        ("orphans", 0, "orphans"),
    ],
)
def test_worker_totals_off_by_one_are_not_reconciled(
    field_name: str, value: object, mentions: str
) -> None:
    result = _reconcile(states=_state(**{field_name: value}))
    assert not result.reconciled
    assert any(d.startswith(mentions) and "worker totals" in d for d in result.differences)


def test_decision_with_the_wrong_amount_is_reported() -> None:
    result = _reconcile(decisions=_decisions(at9=("paid", 2_999)))
    assert not result.reconciled
    assert any("decisions differ from the truth" in d for d in result.differences)
    assert any(d.startswith("GMV cents: decisions say 5999") for d in result.differences)


def test_paying_a_rejected_line_is_reported() -> None:
    result = _reconcile(decisions=_decisions(at7=("paid", 3_000)))
    assert not result.reconciled
    assert "paid: decisions say 3, truth 2" in result.differences


def test_accepting_a_line_without_stock_is_reported_as_oversold() -> None:
    # The cancellation later gives a unit back, but the SKU was oversold in between.
    result = _reconcile(decisions=_decisions(at4=("accepted", 3_000)))
    assert not result.reconciled
    assert result.summary["oversold_skus"] == 1


def test_missing_dead_letter_and_missing_decision_are_reported() -> None:
    decisions = _decisions()
    decisions[0] = decisions[0][:-1]
    result = _reconcile(decisions=decisions, dead_letters={})
    assert not result.reconciled
    assert any("no decision or dead letter" in d for d in result.differences)


# The worker's rules (streams.state) and verify's truth are written apart; on any stream they
# must decide every message alike.

SKUS = ("FR-WIN-0001", "IT-OLI-0002", "DE-TOY-0003", "ES-HAM-0004", "BE-CHO-0005")


def _random_stream(rng: random.Random, n: int) -> list[OrderEvent]:
    """Restocks, multi-line orders and their lifecycles, retries and strays, interleaved."""
    base = make_order()
    events = [make_restock(replace(base, sku=sku), quantity=rng.randint(1, 6)) for sku in SKUS]
    lines: list[OrderEvent] = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.3 or not lines:
            for line in range(rng.randint(1, 3)):
                created = replace(
                    base,
                    order_id=f"o{i}",
                    line=line,
                    sku=rng.choice(SKUS),
                    country=rng.choice(("FR", "IT", "DE")),
                    category=rng.choice(("wine", "toys")),
                    quantity=rng.randint(1, 3),
                    unit_price_cents=rng.randint(1, 9_999),
                )
                lines.append(created)
                events.append(created)
        elif roll < 0.75:
            kind = rng.choices(("paid", "cancelled", "refunded"), weights=(5, 3, 2))[0]
            recent = lines[-rng.choice((4, 12, 30)) :]
            events.append(make_step(rng.choice(recent), kind))
        elif roll < 0.85:
            events.append(rng.choice(events[-40:]))  # a retry, maybe beyond the window
        elif roll < 0.9:
            sku = rng.choice(SKUS)
            events.append(
                make_restock(replace(base, sku=sku), rng.randint(1, 4), order_id=f"r{i}-{sku}")
            )
        else:  # a step of a line nobody created, or of a line number never used
            stray = replace(rng.choice(lines), line=rng.randint(3, 99))
            events.append(make_step(stray, rng.choice(("paid", "cancelled", "refunded"))))
    return events


@pytest.mark.parametrize("seed", range(40))
def test_worker_rules_and_verify_truth_agree_on_random_lifecycles(seed: int) -> None:
    rng = random.Random(seed)
    window = rng.choice((2, 3, 8, 1_000))
    partitions = 2
    orders: dict[int, list[Rec]] = {p: [] for p in range(partitions)}
    states = {p: PartitionState(partition=p, window=window) for p in range(partitions)}
    decided: dict[tuple[int, int], tuple[str, int]] = {}
    for event in _random_stream(rng, 400):
        p = SKUS.index(event.sku) % partitions  # the key decides the partition
        offset = len(orders[p])
        orders[p].append(Rec(p, offset, event.sku.encode(), encode_event(event)))
        decided[(p, offset)] = apply_event(states[p], event)

    truth = compute_truth(orders, window)
    assert {where: outcome for where, (outcome, _) in decided.items()} == truth.outcomes
    assert {where: cents for where, (_, cents) in decided.items() if cents} == truth.amounts
    for name in COUNTS:
        assert sum(getattr(s, name) for s in states.values()) == truth.count(name), name
    assert sum(s.gmv_cents for s in states.values()) == truth.gmv_cents
    assert sum(s.refunded_cents for s in states.values()) == truth.refunded_cents
    assert sum(len(s.sell_outs) for s in states.values()) == truth.sold_out_times
    assert {sku for s in states.values() for sku, *_ in s.sell_outs} == truth.sold_out
    # Every outcome turns up somewhere across the seeds; this stream is not trivial.
    assert truth.accepted and truth.paid and truth.orphans and truth.duplicates


def test_random_lifecycles_reach_every_outcome() -> None:
    seen: set[str] = set()
    for seed in range(40):
        rng = random.Random(seed)
        window = rng.choice((2, 3, 8, 1_000))
        state = PartitionState(partition=0, window=window)
        for event in _random_stream(rng, 400):
            seen.add(apply_event(state, event)[0])
    assert seen == {
        "accepted",
        "rejected_oversell",
        "duplicate",
        "paid",
        "cancelled",
        "refunded",
        "orphan",
        "restocked",
    }


def test_gmv_breakdowns_are_checked_against_the_truth() -> None:
    truth = compute_truth(_orders(), 100)
    right = {
        f"gmv_by_{d}": truth.gmv_by[d] for d in ("country", "category", "merchant", "province")
    }
    assert sum(truth.gmv_by["merchant"].values()) == truth.gmv_cents
    assert _reconcile(states=_state(**right)).reconciled
    wrong = dict(right, gmv_by_province={"Zhejiang": truth.gmv_cents})
    result = _reconcile(states=_state(**wrong))
    assert not result.reconciled
    assert any(d.startswith("GMV by province") for d in result.differences)


# A broker that lost its topics (memory storage restarted): verify names the loss instead of
# listing the count mismatches that follow from it.


def test_state_beyond_what_orders_holds_is_reported_as_a_broker_loss() -> None:
    # The worker applied 13 messages up to offset 12; the recreated topic holds 3.
    orders = {0: _orders()[0][:3]}
    decisions = {0: _decisions()[0][:3]}
    result = _reconcile(orders=orders, decisions=decisions, dead_letters={})
    assert not result.reconciled
    assert result.summary["broker_lost_messages"] == 10
    assert len(result.differences) == 1
    assert result.differences[0].startswith("the broker lost at least 10 messages of orders")


def test_decisions_of_messages_the_topic_no_longer_holds_are_reported_as_a_broker_loss() -> None:
    # The restock that opened the run is gone with the old topic, and so is the state.
    orders = {0: _orders()[0][1:]}
    result = _reconcile(orders=orders, states={})
    assert result.summary["broker_lost_messages"] == 1
    assert len(result.differences) == 1
    assert result.differences[0].startswith(
        "the broker lost at least 1 messages of orders (its topics were recreated?): 1 "
        "messages have decisions or dead letters but are not on the topic, e.g. 0:0"
    )


def test_a_state_whose_first_offset_holds_other_bytes_now_is_a_broker_loss() -> None:
    # The topic was recreated and written again: offset 0 holds another message than the
    # restock the worker applied there, though every offset the state names exists.
    restock = _orders()[0][0].value or b""
    fingerprint = {"first_offset": 0, "first_crc32": zlib.crc32(restock)}
    assert _reconcile(states=_state(**fingerprint)).reconciled
    rewritten = dict(fingerprint, first_crc32=zlib.crc32(restock) ^ 1)
    result = _reconcile(states=_state(**rewritten))
    assert result.summary["broker_lost_messages"] >= 1
    assert "offset 0 of partition 0 no longer holds the message" in result.differences[0]


def test_a_worker_that_oversells_is_named_as_such_not_as_a_broker_loss() -> None:
    # Accepting the rejected line at offset 4 takes a unit nobody restocked: the SKU went
    # below zero there. No offset is missing, so no loss is claimed.
    result = _reconcile(decisions=_decisions(at4=("accepted", 3_000)))
    assert result.summary["broker_lost_messages"] == 0
    assert any(
        d.startswith(f"SKU {SKU} oversold on partition 0: its units went below zero at 0:4")
        for d in result.differences
    ), result.differences


def test_a_complete_run_reports_no_broker_loss() -> None:
    assert _reconcile().summary["broker_lost_messages"] == 0
