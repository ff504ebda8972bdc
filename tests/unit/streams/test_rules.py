from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from flashsale.counters import (
    ACCEPTED,
    CANCELLED,
    DUPLICATE,
    MISMATCH,
    ORPHAN,
    PAID,
    REFUNDED,
    REJECTED_OVERSELL,
    RESTOCKED,
)
from flashsale.events import OrderEvent
from streams.rules import apply_event
from streams.state import STATE_FORMAT, PartitionState, StateFormatError, conservation_breaks
from tests.factories import make_order, make_restock, make_step

SKU = "IT-OLI-0001"
ORDER = make_order(sku=SKU, merchant="Frantoio", country="IT", category="olive-oil")
RESTOCK = make_restock(ORDER, quantity=2)


def _state(window: int = 100, stock: int = 2) -> PartitionState:
    state = PartitionState(partition=0, window=window)
    assert apply_event(state, replace(RESTOCK, quantity=stock)) == (RESTOCKED, 0)
    return state


def _outcome(state: PartitionState, *events: OrderEvent) -> list[str]:
    return [apply_event(state, e)[0] for e in events]


def test_created_line_within_stock_is_accepted_and_reserves_its_units() -> None:
    state = _state()
    assert apply_event(state, replace(ORDER, quantity=2)) == (ACCEPTED, 3_000)
    assert state.stock[SKU] == 0
    assert state.open == {"o1/0": [2, 3_000, "IT", "olive-oil", "Frantoio", "Guangdong", SKU]}
    # The sell-out names the event that took the last unit: offset, row, order id, line.
    assert state.sell_outs == [[SKU, ORDER.event_ts_ms, -1, None, "o1", 0]]
    # Reserved is not revenue: GMV counts paid lines only.
    assert (state.accepted, state.gmv_cents, state.gmv_by_country) == (1, 0, {})


def test_paid_line_moves_its_reserved_amount_into_gmv() -> None:
    state = _state()
    line = replace(ORDER, quantity=2)
    apply_event(state, line)
    assert apply_event(state, make_step(line, "paid")) == (PAID, 3_000)
    assert state.gmv_by_merchant == {"Frantoio": 3_000}
    assert state.gmv_by_province == {"Guangdong": 3_000}
    assert (state.paid, state.gmv_cents) == (1, 3_000)
    assert state.gmv_by_country == {"IT": 3_000}
    assert state.gmv_by_category == {"olive-oil": 3_000}
    assert state.open == {}
    assert state.paid_lines == {"o1/0": [2, 3_000, "IT", "olive-oil", "Frantoio", "Guangdong", SKU]}
    assert state.stock[SKU] == 0
    assert (state.restocked, state.sold) == ({SKU: 2}, {SKU: 2})


def test_oversold_line_is_rejected_and_stock_stays_zero() -> None:
    state = _state()
    assert _outcome(state, replace(ORDER, order_id="a", quantity=2)) == [ACCEPTED]
    assert apply_event(state, replace(ORDER, order_id="b")) == (REJECTED_OVERSELL, 0)
    assert state.stock[SKU] == 0
    assert (state.accepted, state.rejected_oversell) == (1, 1)
    assert "b/0" not in state.open


def test_line_larger_than_remaining_stock_is_rejected_whole() -> None:
    state = _state()
    assert _outcome(state, replace(ORDER, quantity=3)) == [REJECTED_OVERSELL]
    assert state.stock[SKU] == 2


def test_lines_of_one_order_are_decided_each_on_its_own() -> None:
    state = _state()
    first, second = replace(ORDER, quantity=2), replace(ORDER, line=1)
    assert _outcome(state, first, second) == [ACCEPTED, REJECTED_OVERSELL]
    assert list(state.open) == ["o1/0"]
    assert _outcome(state, make_step(first, "paid"), make_step(second, "paid")) == [PAID, ORPHAN]


def test_cancelled_line_releases_its_stock_so_a_later_line_is_accepted() -> None:
    state = _state()
    held = replace(ORDER, order_id="a", quantity=2)
    later = replace(ORDER, order_id="b", quantity=2)
    assert _outcome(state, held, later) == [ACCEPTED, REJECTED_OVERSELL]
    assert apply_event(state, make_step(held, "cancelled")) == (CANCELLED, 3_000)
    assert state.stock[SKU] == 2
    assert state.cancelled == 1
    assert _outcome(state, replace(later, order_id="c")) == [ACCEPTED]
    assert state.gmv_cents == 0


def test_sold_out_is_reached_again_after_a_cancellation() -> None:
    state = _state()
    held = replace(ORDER, order_id="a", quantity=2)
    assert _outcome(state, held, make_step(held, "cancelled")) == [ACCEPTED, CANCELLED]
    state.last_offset = 7
    assert _outcome(state, replace(ORDER, order_id="b", quantity=2)) == [ACCEPTED]
    assert [sell_out[:5] for sell_out in state.sell_outs] == [
        [SKU, ORDER.event_ts_ms, -1, None, "a"],
        [SKU, ORDER.event_ts_ms, 7, None, "b"],
    ]


def test_paid_for_a_rejected_line_is_an_orphan() -> None:
    state = _state()
    rejected = replace(ORDER, quantity=3)
    assert _outcome(state, rejected, make_step(rejected, "paid")) == [REJECTED_OVERSELL, ORPHAN]
    assert (state.paid, state.orphans, state.gmv_cents) == (0, 1, 0)


def test_lifecycle_events_of_unknown_lines_are_orphans_and_change_nothing() -> None:
    state = _state()
    unknown = replace(ORDER, order_id="never-created")
    before = PartitionState.from_bytes(state.to_bytes())
    steps = [make_step(unknown, k) for k in ("paid", "cancelled", "refunded")]
    assert _outcome(state, *steps) == [ORPHAN] * 3
    assert state.orphans == 3
    assert replace(state, orphans=0, seen=before.seen) == before


def test_a_line_is_paid_or_cancelled_not_both() -> None:
    state = _state()
    paid, cancelled = replace(ORDER, order_id="a"), replace(ORDER, order_id="b")
    assert _outcome(
        state,
        paid,
        make_step(paid, "paid"),
        make_step(paid, "cancelled"),
        cancelled,
        make_step(cancelled, "cancelled"),
        make_step(cancelled, "paid"),
    ) == [ACCEPTED, PAID, ORPHAN, ACCEPTED, CANCELLED, ORPHAN]
    assert state.stock[SKU] == 1  # only the cancelled line's unit came back
    assert (state.paid, state.cancelled, state.orphans, state.gmv_cents) == (1, 1, 2, 1_500)


def test_refund_is_reported_beside_gross_gmv_and_keeps_the_stock_out() -> None:
    state = _state()
    line = replace(ORDER, quantity=2)
    apply_event(state, line)
    apply_event(state, make_step(line, "paid"))
    assert apply_event(state, make_step(line, "refunded")) == (REFUNDED, 3_000)
    assert (state.refunded, state.refunded_cents, state.gmv_cents) == (1, 3_000, 3_000)
    assert state.stock[SKU] == 0
    assert state.paid_lines == {}


def test_refund_of_an_unpaid_line_is_an_orphan() -> None:
    state = _state()
    assert _outcome(state, ORDER, make_step(ORDER, "refunded")) == [ACCEPTED, ORPHAN]
    assert list(state.open) == ["o1/0"]  # still reserved, may yet be paid
    assert _outcome(state, make_step(ORDER, "paid")) == [PAID]


def test_refund_of_a_line_evicted_from_the_paid_window_is_an_orphan() -> None:
    state = _state(window=100, stock=10)
    state.window = 2
    lines = [replace(ORDER, order_id=f"o{i}") for i in range(3)]
    for line in lines:
        _outcome(state, line, make_step(line, "paid"))
    assert list(state.paid_lines) == ["o1/0", "o2/0"]
    assert _outcome(state, make_step(lines[0], "refunded")) == [ORPHAN]
    assert _outcome(state, make_step(lines[2], "refunded")) == [REFUNDED]
    assert (state.refunded, state.orphans) == (1, 1)


def test_repeated_created_is_counted_once_and_marked_duplicate() -> None:
    state = _state()
    assert _outcome(state, ORDER, ORDER) == [ACCEPTED, DUPLICATE]
    assert (state.accepted, state.duplicates) == (1, 1)
    assert state.stock[SKU] == 1


def test_duplicate_paid_is_counted_once() -> None:
    state = _state()
    paid = make_step(ORDER, "paid")
    assert apply_event(state, ORDER) == (ACCEPTED, 1_500)
    assert apply_event(state, paid) == (PAID, 1_500)
    assert apply_event(state, paid) == (DUPLICATE, 0)
    assert (state.paid, state.duplicates, state.orphans, state.gmv_cents) == (1, 1, 0, 1_500)


def test_repeated_restock_is_a_duplicate() -> None:
    state = _state()
    assert apply_event(state, replace(RESTOCK, quantity=2)) == (DUPLICATE, 0)
    assert apply_event(state, replace(RESTOCK, order_id="restock-2")) == (RESTOCKED, 0)
    assert (state.stock[SKU], state.restocks, state.duplicates) == (4, 2, 1)


def test_dedupe_window_is_bounded_keyed_by_event_and_forgets_the_oldest() -> None:
    state = _state(window=100, stock=100)
    state.seen.clear()
    state.window = 3
    for i in range(5):
        apply_event(state, replace(ORDER, order_id=f"o{i}"))
    assert list(state.seen) == ["o2/0/created", "o3/0/created", "o4/0/created"]
    assert _outcome(state, replace(ORDER, order_id="o4")) == [DUPLICATE]
    # Beyond the window, a retry of a line still reserved is still a duplicate: the line
    # keeps its one reservation.
    assert _outcome(state, replace(ORDER, order_id="o0")) == [DUPLICATE]
    assert (state.stock[SKU], state.accepted) == (95, 5)
    # A retry of a cancelled line beyond the window is a new line: the window must cover
    # the retry delay.
    _outcome(state, make_step(replace(ORDER, order_id="o1"), "cancelled"))
    state.seen.clear()
    assert _outcome(state, replace(ORDER, order_id="o1")) == [ACCEPTED]


def test_state_survives_its_changelog_encoding_in_order() -> None:
    state = _state(stock=10)
    lines = [replace(ORDER, order_id=f"o{i}", line=i % 2) for i in range(6)]
    for line in reversed(lines):
        apply_event(state, line)
    for line in (lines[4], lines[1], lines[3]):
        apply_event(state, make_step(line, "paid"))
    apply_event(state, make_step(lines[0], "cancelled"))
    apply_event(state, make_step(lines[1], "refunded"))
    state.last_offset = 41
    state.dlq = 2
    again = PartitionState.from_bytes(state.to_bytes())
    assert again == state
    assert list(again.seen) == list(state.seen)
    assert list(again.open) == list(state.open) == ["o5/1", "o2/0"]
    assert list(again.paid_lines) == list(state.paid_lines) == ["o4/0", "o3/1"]
    assert apply_event(again, lines[2]) == (DUPLICATE, 0)


def test_summary_counts_every_outcome() -> None:
    state = _state()
    line, rejected = replace(ORDER, order_id="a", quantity=2), replace(ORDER, order_id="b")
    _outcome(state, line, make_step(line, "paid"), make_step(line, "refunded"))
    _outcome(state, rejected, make_step(rejected, "paid"), rejected)
    summary = state.summary()
    del summary["partition"], summary["last_offset"]
    assert summary == {
        "gmv_cents": 3_000,
        "accepted": 1,
        "rejected_oversell": 1,
        "duplicates": 1,
        "paid": 1,
        "cancelled": 0,
        "refunded": 1,
        "refunded_cents": 3_000,
        "orphans": 1,
        "mismatches": 0,
        "restocks": 1,
        "dlq": 0,
        "open_lines": 0,
        "sold_out": 1,
        "late": 0,
        "grace_ms": 2_000,
    }


# A step must describe the line it names as the line was reserved; one that does not is a
# mismatch and changes nothing (docs/events.md).

G = replace(ORDER, sku="IT-OLI-0002", order_id="g1", quantity=5, unit_price_cents=2_400)
F = replace(ORDER, sku="IT-OLI-0003", order_id="f1", quantity=6, unit_price_cents=2_000)


def _stocked(**units: int) -> PartitionState:
    state = PartitionState(partition=0, window=100)
    for name, quantity in units.items():
        sku = {"F": F.sku, "G": G.sku}[name]
        apply_event(state, make_restock(replace(ORDER, sku=sku), quantity=quantity))
    return state


def test_a_cancel_naming_another_sku_is_a_mismatch_and_moves_no_stock() -> None:
    state = _stocked(F=1, G=5)
    assert apply_event(state, G) == (ACCEPTED, 12_000)
    wrong = make_step(G, "cancelled", sku=F.sku)
    assert apply_event(state, wrong) == (MISMATCH, 0)
    assert apply_event(state, replace(F, order_id=G.order_id)) == (DUPLICATE, 0)
    assert apply_event(state, F) == (REJECTED_OVERSELL, 0)
    assert apply_event(state, make_step(F, "paid")) == (ORPHAN, 0)
    assert (state.stock[F.sku], state.stock[G.sku]) == (1, 0)
    assert (state.mismatches, state.gmv_cents) == (1, 0)
    assert list(state.open) == ["g1/0"]  # G's reservation still holds its five units
    assert conservation_breaks(state) == {}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("sku", "IT-OLI-0003"),
        ("quantity", 1),
        ("unit_price_cents", 1_499),
        ("country", "FR"),
        ("category", "wine"),
        ("merchant", "Someone else"),
        ("province", "Zhejiang"),
    ],
)
@pytest.mark.parametrize("kind", ["paid", "cancelled", "refunded", "created"])
def test_a_step_that_describes_its_line_otherwise_is_a_mismatch(
    name: str, value: object, kind: str
) -> None:
    state = _state(stock=5)
    line = replace(ORDER, quantity=2)
    apply_event(state, line)
    if kind == "refunded":
        apply_event(state, make_step(line, "paid"))
    if kind == "created":
        state.seen.clear()  # a retry older than the dedupe window
    before = PartitionState.from_bytes(state.to_bytes())
    assert apply_event(state, make_step(line, kind, **{name: value})) == (MISMATCH, 0)
    assert state.mismatches == 1
    # Nothing else changed but the event id joining the dedupe window.
    assert replace(state, mismatches=0, seen=before.seen) == before


def test_channel_and_payment_may_change_between_the_steps_of_a_line() -> None:
    state = _state()
    apply_event(state, ORDER)
    paid = make_step(ORDER, "paid", channel="web", payment="wechat-pay")
    assert apply_event(state, paid) == (PAID, 1_500)


def test_a_late_retry_of_a_paid_line_is_a_duplicate_and_counts_no_second_payment() -> None:
    state = _state(stock=5)
    _outcome(state, ORDER, make_step(ORDER, "paid"))
    state.seen.clear()  # both ids have left the dedupe window
    assert _outcome(state, ORDER, make_step(ORDER, "paid")) == [DUPLICATE, ORPHAN]
    assert (state.paid, state.gmv_cents, state.stock[SKU]) == (1, 1_500, 4)


def test_units_are_conserved_through_a_whole_lifecycle() -> None:
    state = _state(stock=10)
    lines = [replace(ORDER, order_id=f"o{i}", quantity=1 + i % 3) for i in range(5)]
    for line in lines:
        apply_event(state, line)
    apply_event(state, make_step(lines[0], "paid"))
    apply_event(state, make_step(lines[1], "cancelled"))
    apply_event(state, make_step(lines[2], "paid"))
    apply_event(state, make_step(lines[2], "refunded"))
    assert conservation_breaks(state) == {}
    assert state.restocked[SKU] == 10
    assert state.sold[SKU] == 1 + 3  # refunded units stay sold: the goods have shipped
    # A state whose units went astray is named with its four parts.
    state.stock[SKU] += 1
    assert conservation_breaks(state) == {SKU: (10, state.stock[SKU], 1 + 2, 4)}


def test_a_state_record_of_another_layout_is_refused_by_name() -> None:
    state = _state()
    assert orjson.loads(state.to_bytes())["format"] == STATE_FORMAT
    older = orjson.loads(state.to_bytes())
    del older["format"]
    with pytest.raises(StateFormatError, match="partition 0 has another layout"):
        PartitionState.from_bytes(orjson.dumps(older))
