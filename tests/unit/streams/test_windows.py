"""Event-time windows: per second and per minute, a grace for late events, agreed by verify."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from flashsale.counters import ACCEPTED, PAID
from flashsale.events import encode_event
from streams.rules import apply_event
from streams.state import PartitionState
from streams.windows import apply_window
from tests.factories import make_order, make_restock, make_step
from tests.unit.verify.test_reconcile import SKUS, Rec, _random_stream
from verify.truth import compute_truth

T0 = 1_605_024_000_000  # 00:00 on 11.11.2020 China time, in epoch ms


def _state(grace_ms: int = 2_000) -> PartitionState:
    return PartitionState(partition=0, window=1_000, grace_ms=grace_ms)


def test_accepted_and_paid_lines_fill_their_second_and_minute() -> None:
    state = _state()
    order = make_order(event_ts_ms=T0 + 300, quantity=2, unit_price_cents=1_000)
    assert apply_window(state, order, ACCEPTED, 2_000) == (False, [])
    paid = make_step(order, "paid", event_ts_ms=T0 + 1_200)
    assert apply_window(state, paid, PAID, 2_000) == (False, [])
    assert state.windows == {
        f"1:{T0}": [1, 0, 0],
        f"60:{T0}": [1, 1, 2_000],
        f"1:{T0 + 1_000}": [0, 1, 2_000],
    }


def test_a_window_closes_once_the_watermark_passes_its_end() -> None:
    state = _state(grace_ms=2_000)
    apply_window(state, make_order(event_ts_ms=T0 + 500), ACCEPTED, 1_500)
    # Newest time T0 + 2,999: watermark T0 + 999, the first second still open.
    assert apply_window(state, make_order(order_id="b", event_ts_ms=T0 + 2_999), "orphan", 0) == (
        False,
        [],
    )
    late, closed = apply_window(state, make_order(order_id="c", event_ts_ms=T0 + 3_000), "x", 0)
    assert not late
    assert closed == [(1, T0, 1, 0, 0, [])]
    assert f"1:{T0}" not in state.windows
    assert f"60:{T0}" in state.windows  # the minute is still open


def test_an_event_behind_the_watermark_is_late_and_kept_out() -> None:
    state = _state(grace_ms=1_000)
    apply_window(state, make_order(event_ts_ms=T0 + 10_000), ACCEPTED, 1_500)
    before = dict(state.windows)
    late, closed = apply_window(state, make_order(order_id="old", event_ts_ms=T0 + 8_999), PAID, 7)
    assert late and closed == []
    assert state.late == 1
    assert state.windows == before
    # Within the grace it still counts.
    late, _ = apply_window(state, make_order(order_id="ok", event_ts_ms=T0 + 9_000), PAID, 7)
    assert not late


def test_windows_survive_the_state_round_trip() -> None:
    state = _state()
    apply_window(state, make_order(event_ts_ms=T0 + 5), ACCEPTED, 10)
    again = PartitionState.from_bytes(state.to_bytes())
    assert (again.windows, again.max_event_ms, again.grace_ms) == (
        state.windows,
        state.max_event_ms,
        state.grace_ms,
    )


@pytest.mark.parametrize("seed", range(25))
def test_worker_windows_and_verify_truth_agree(seed: int) -> None:
    rng = random.Random(seed)
    grace = rng.choice((0, 500, 2_000))
    partitions = 2
    orders: dict[int, list[Rec]] = {p: [] for p in range(partitions)}
    states = {p: PartitionState(partition=p, window=50, grace_ms=grace) for p in range(partitions)}
    closed: dict[tuple[int, int, int], tuple[int, int, int]] = {}
    hot: dict[tuple[int, int], list[tuple[str, int]]] = {}
    late: set[tuple[int, int]] = set()
    clock = T0
    for event in _random_stream(rng, 600):
        # Time moves on about 250 ms an event (minutes close); one in six is up to 3 s late.
        clock += rng.randint(0, 500)
        ts = clock - (rng.randint(0, 3_000) if rng.random() < 1 / 6 else 0)
        event = replace(event, event_ts_ms=ts)
        p = SKUS.index(event.sku) % partitions
        offset = len(orders[p])
        orders[p].append(Rec(p, offset, event.sku.encode(), encode_event(event)))
        outcome, amount = apply_event(states[p], event)
        if event.type == "restock" or outcome == "duplicate":
            continue
        was_late, now_closed = apply_window(states[p], event, outcome, amount)
        if was_late:
            late.add((p, offset))
        for size, start, accepted, paid, gmv, top in now_closed:
            closed[(p, size, start)] = (accepted, paid, gmv)
            if size == 60:
                hot[(p, start)] = top

    truth = compute_truth(orders, 50, {p: grace for p in range(partitions)})
    assert truth.late_at == late
    assert truth.windows == closed
    assert truth.hot == hot
    assert sum(s.late for s in states.values()) == len(late)
    assert closed  # windows did close
    if grace < 2_000:
        assert late


def test_restocks_and_duplicates_do_not_move_the_windows() -> None:
    state = _state()
    order = make_order(event_ts_ms=T0 + 100)
    restock = make_restock(order, 5, event_ts_ms=T0 + 99_000)
    apply_event(state, restock)
    # The worker never hands restocks to the windows: the watermark stays put.
    assert state.max_event_ms == -1
    apply_window(state, order, ACCEPTED, 10)
    assert state.max_event_ms == T0 + 100


def test_a_closed_minute_names_its_hot_products() -> None:
    state = _state(grace_ms=0)
    for i, (sku, quantity) in enumerate([("A", 2), ("B", 5), ("A", 4), ("C", 1)]):
        order = make_order(order_id=f"o{i}", sku=sku, quantity=quantity, event_ts_ms=T0 + i)
        apply_window(state, order, ACCEPTED, 100)
    _, closed = apply_window(state, make_order(order_id="next", event_ts_ms=T0 + 60_000), "x", 0)
    minute = [w for w in closed if w[0] == 60]
    assert minute == [(60, T0, 4, 0, 0, [("A", 6), ("B", 5), ("C", 1)])]
    assert str(T0) not in state.minute_units
