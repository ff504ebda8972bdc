from __future__ import annotations

from dataclasses import replace

from streams.state import (
    ACCEPTED,
    DUPLICATE,
    REJECTED_OVERSELL,
    RESTOCKED,
    PartitionState,
    apply_event,
)
from tests.factories import make_order

ORDER = make_order(sku="IT-OLI-0001", merchant="Frantoio", country="IT", category="olive-oil")
RESTOCK = replace(ORDER, order_id="restock-IT-OLI-0001", type="restock", quantity=2)


def _state(window: int = 100) -> PartitionState:
    return PartitionState(partition=0, window=window)


def test_order_within_stock_is_accepted_and_counted() -> None:
    state = _state()
    assert apply_event(state, RESTOCK) == RESTOCKED
    assert apply_event(state, replace(ORDER, quantity=2)) == ACCEPTED
    assert state.gmv_cents == 3_000
    assert state.gmv_by_country == {"IT": 3_000}
    assert state.gmv_by_category == {"olive-oil": 3_000}
    assert state.stock["IT-OLI-0001"] == 0
    assert state.sold_out == ["IT-OLI-0001"]


def test_oversold_order_is_rejected_and_stock_stays_zero() -> None:
    state = _state()
    apply_event(state, RESTOCK)
    assert apply_event(state, replace(ORDER, order_id="a", quantity=2)) == ACCEPTED
    assert apply_event(state, replace(ORDER, order_id="b")) == REJECTED_OVERSELL
    assert state.stock["IT-OLI-0001"] == 0
    assert (state.accepted, state.rejected_oversell, state.gmv_cents) == (1, 1, 3_000)


def test_order_larger_than_remaining_stock_is_rejected_whole() -> None:
    state = _state()
    apply_event(state, RESTOCK)
    assert apply_event(state, replace(ORDER, quantity=3)) == REJECTED_OVERSELL
    assert state.stock["IT-OLI-0001"] == 2


def test_repeated_order_id_is_counted_once_and_marked_duplicate() -> None:
    state = _state()
    apply_event(state, RESTOCK)
    assert apply_event(state, ORDER) == ACCEPTED
    assert apply_event(state, ORDER) == DUPLICATE
    assert (state.accepted, state.duplicates, state.gmv_cents) == (1, 1, 1_500)
    assert state.stock["IT-OLI-0001"] == 1


def test_dedupe_window_is_bounded_and_forgets_the_oldest_id() -> None:
    state = _state(window=3)
    apply_event(state, replace(RESTOCK, quantity=100))
    for i in range(5):
        apply_event(state, replace(ORDER, order_id=f"o{i}"))
    assert list(state.seen) == ["o2", "o3", "o4"]
    assert apply_event(state, replace(ORDER, order_id="o4")) == DUPLICATE
    assert apply_event(state, replace(ORDER, order_id="o0")) == ACCEPTED


def test_state_survives_its_changelog_encoding() -> None:
    state = _state()
    apply_event(state, RESTOCK)
    apply_event(state, ORDER)
    state.last_offset = 41
    again = PartitionState.from_bytes(state.to_bytes())
    assert again == state
    assert apply_event(again, ORDER) == DUPLICATE
