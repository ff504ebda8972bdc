"""The packed format: decoding row by row as single events would, and applying rows exactly as
single events are applied (rules, windows, late events), state for state."""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import asdict, replace
from types import ModuleType
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streams.packed
from flashsale.counters import DUPLICATE
from flashsale.events import (
    CODED_COLUMNS,
    PACKED_COLUMNS,
    MalformedEvent,
    OrderEvent,
    decode_event,
    decode_packed,
    dictionary_coded,
    encode_event,
    encode_packed,
)
from streams.packed import fresh_rows
from streams.rules import apply_event
from streams.state import PartitionState
from streams.windows import apply_window
from tests.conftest import skip_or_fail
from tests.factories import make_order
from tests.unit.flashsale.test_compiled import source_module
from tests.unit.verify.test_reconcile import _random_stream

T0 = 1_605_024_000_000


@pytest.fixture(scope="module", params=["compiled", "source"])
def packed_module(request: pytest.FixtureRequest) -> ModuleType:
    """Both ways the packed rules run: as the package built them (Cython), and as Python."""
    if request.param == "source":
        return source_module("streams.packed")
    if not streams.packed.COMPILED:
        skip_or_fail("streams/packed.py is not compiled (no C compiler at install?)")
    return streams.packed


def columns_of(events: list[OrderEvent]) -> dict[str, list[Any]]:
    docs = [asdict(e) for e in events]
    return {name: [d[name] for d in docs] for name in PACKED_COLUMNS}


def test_a_packed_message_decodes_to_the_events_it_was_built_from() -> None:
    events = [make_order(order_id=f"o{i}", quantity=i + 1) for i in range(5)]
    batch = decode_packed(encode_packed(columns_of(events)))
    assert batch.n == 5
    assert batch.bad == {}
    assert [batch.event(i) for i in range(5)] == events
    # A row on its own is exactly the single-event message of that event.
    assert decode_event(batch.encode_row(3)) == events[3]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{nope", "not_json"),
        (b"[1]", "not_object"),
        (orjson.dumps({"v": 2}), "unknown_version"),
        (orjson.dumps({"v": 1, "n": 1}), "missing_field"),
    ],
)
def test_a_broken_packed_message_is_rejected_whole_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedEvent) as caught:
        decode_packed(raw)
    assert caught.value.reason == reason


def test_a_short_column_or_a_bad_count_rejects_the_whole_message() -> None:
    cols = columns_of([make_order(), make_order(order_id="o2")])
    short = dict(cols, sku=["FR-WIN-0001"])
    with pytest.raises(MalformedEvent, match="column sku"):
        decode_packed(encode_packed(short))
    doc = orjson.loads(encode_packed(cols))
    with pytest.raises(MalformedEvent, match="n=0"):
        decode_packed(orjson.dumps(dict(doc, n=0)))


def test_bad_rows_get_the_reason_a_single_event_would_and_the_rest_stay_valid() -> None:
    good = [make_order(order_id=f"o{i}") for i in range(4)]
    cols = columns_of(good)
    cols["quantity"][1] = -3
    cols["sku"][2] = 7
    cols["type"][3] = "stolen"
    batch = decode_packed(encode_packed(cols))
    assert {i: e.reason for i, e in batch.bad.items()} == {
        1: "out_of_range",
        2: "wrong_type",
        3: "unknown_type",
    }
    assert batch.event(0) == good[0]


_values = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=140),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True),
)


@settings(max_examples=200, deadline=None)
@given(mutations=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(PACKED_COLUMNS), _values)))
def test_any_row_value_is_judged_as_the_same_single_event_would_be(
    mutations: list[tuple[int, str, Any]],
) -> None:
    cols = columns_of([make_order(order_id=f"o{i}") for i in range(3)])
    for row, name, value in mutations:
        cols[name][row] = value
    try:
        raw = encode_packed(cols)
    except orjson.JSONEncodeError:
        return  # integers beyond 64 bits have no JSON encoding here
    batch = decode_packed(raw)
    for i in range(3):
        row = orjson.dumps({"v": 1, **{name: cols[name][i] for name in PACKED_COLUMNS}})
        try:
            decode_event(row)
            assert i not in batch.bad
        except MalformedEvent as exc:
            assert batch.bad[i].reason == exc.reason


def _apply_one_by_one(
    state: PartitionState, events: list[OrderEvent], sizes: list[int] | None = None
) -> tuple[list[tuple[str, int]], list[int], set[tuple[int, int, int, int, int]]]:
    """Apply `events` as single events; with `sizes`, each at the position (offset, index)
    it has as a row of packed messages of those sizes, one offset each."""
    decided, late, closed = [], [], set()
    positions: list[tuple[int, int | None]] = [(-1, None)] * len(events)
    if sizes is not None:
        positions = [(offset, i) for offset, size in enumerate(sizes) for i in range(size)]
    for i, event in enumerate(events):
        state.last_offset, index = positions[i]
        outcome, amount = apply_event(state, event, index)
        decided.append((outcome, amount))
        if event.type == "restock" or outcome == DUPLICATE:
            continue
        was_late, windows = apply_window(state, event, outcome, amount)
        if was_late:
            late.append(i)
        closed |= {(s, start, a, p, g) for s, start, a, p, g, _ in windows}
    return decided, late, closed


@pytest.mark.parametrize("seed", range(30))
def test_packed_rows_are_applied_exactly_as_single_events(
    seed: int, packed_module: ModuleType
) -> None:
    rng = random.Random(seed)
    events = _random_stream(rng, 400)
    # Event times that wander forward with some stragglers: windows close, some rows are late.
    now = T0
    timed = []
    for event in events:
        now += rng.randint(0, 400)
        ts = now - (rng.randint(3_000, 9_000) if rng.random() < 0.05 else rng.randint(0, 900))
        timed.append(replace(event, event_ts_ms=ts))
    # A small window makes retries fall out of it; a large one lets messages of up to 200
    # rows stay within it (the whole-message dedupe path).
    window = 50 if seed % 2 else 1_000
    single = PartitionState(partition=0, window=window, grace_ms=1_500)
    packed = PartitionState(partition=0, window=window, grace_ms=1_500)
    sizes: list[int] = []
    while sum(sizes) < len(timed):
        size = rng.randint(1, 60) if rng.random() < 0.5 else rng.randint(60, 200)
        sizes.append(min(size, len(timed) - sum(sizes)))
    decided, late, closed = _apply_one_by_one(single, timed, sizes)

    got: list[tuple[str, int]] = []
    got_late: list[int] = []
    got_closed: set[tuple[int, int, int, int, int]] = set()
    start = 0
    for offset, size in enumerate(sizes):
        chunk = timed[start : start + size]
        packed.last_offset = offset
        result = packed_module.apply_packed(packed, decode_packed(encode_packed(columns_of(chunk))))
        assert result.rows == list(range(len(chunk)))
        got.extend(zip(result.outcomes, result.amounts, strict=True))
        got_late.extend(start + i for i, _ in result.late)
        got_closed |= {(s, b, a, p, g) for s, b, a, p, g, _ in result.closed}
        start += size

    assert got == decided
    assert got_late == late
    assert got_closed == closed
    assert late and closed  # the stream exercised both
    assert packed.to_bytes() == single.to_bytes()


def test_a_time_past_64_bits_is_a_bad_row_and_the_rest_apply(packed_module: ModuleType) -> None:
    """The compiled rules hold times in C integers: a row whose time would not fit is a dead
    letter at decoding, never an overflow in the worker."""
    events = [make_order(order_id=f"o{i}", event_ts_ms=T0 + i) for i in range(3)]
    cols = columns_of(events)
    cols["event_ts_ms"][1] = 2**64 - 1
    batch = decode_packed(encode_packed(cols))
    assert {i: e.reason for i, e in batch.bad.items()} == {1: "out_of_range"}
    state = PartitionState(partition=0, window=50)
    state.stock["FR-WIN-0001"] = 5
    result = packed_module.apply_packed(state, batch)
    assert result.rows == [0, 2]
    assert result.outcomes == ["accepted", "accepted"]
    assert state.max_event_ms == T0 + 2


def test_bad_rows_are_skipped_and_the_rest_applied_in_order(packed_module: ModuleType) -> None:
    events = [make_order(order_id=f"o{i}", event_ts_ms=T0 + i) for i in range(3)]
    cols = columns_of(events)
    cols["quantity"][1] = 0
    state = PartitionState(partition=0, window=50)
    state.stock["FR-WIN-0001"] = 5
    result = packed_module.apply_packed(state, decode_packed(encode_packed(cols)))
    assert result.rows == [0, 2]
    assert result.outcomes == ["accepted", "accepted"]
    assert state.stock["FR-WIN-0001"] == 3
    assert encode_event(events[0]) != b""  # the single-event encoder still takes these


@settings(max_examples=300, deadline=None)
@given(
    window=st.integers(1, 12),
    held=st.lists(st.integers(0, 20), max_size=12, unique=True),
    messages=st.lists(st.lists(st.integers(0, 20), min_size=1, max_size=16), max_size=6),
)
def test_dedupe_of_a_whole_message_is_the_row_by_row_rule(
    window: int, held: list[int], messages: list[list[int]]
) -> None:
    """Ids repeat inside a message and across messages, and the window evicts ids that come
    back in the same message: whole-message dedupe agrees with one id at a time."""
    bulk = PartitionState(partition=0, window=window)
    for i in held:
        bulk.seen.add(f"e{i}", window)
    # The rule, one id at a time, on an insertion-ordered dict.
    single = OrderedDict.fromkeys(list(bulk.seen))
    for message in messages:
        ids = [f"e{i}" for i in message]
        expected = []
        for event_id in ids:
            expected.append(event_id not in single)
            if expected[-1]:
                single[event_id] = None
                if len(single) > window:
                    single.popitem(last=False)
        got = fresh_rows(bulk, ids)
        assert (got if got is not None else [True] * len(ids)) == expected
        assert list(bulk.seen) == list(single)
        assert len(bulk.seen) == len(single)


def test_dictionary_coded_columns_decode_to_the_rows_they_code() -> None:
    events = [
        make_order(order_id=f"o{i}", sku=("FR-WIN-0001", "IT-OLI-0002")[i % 2], line=i % 3)
        for i in range(7)
    ]
    plain = columns_of(events)
    coded, dictionary = dictionary_coded(plain)
    assert coded["sku"] == [0, 1, 0, 1, 0, 1, 0]
    assert dictionary["sku"] == ["FR-WIN-0001", "IT-OLI-0002"]
    batch = decode_packed(encode_packed(coded, dictionary))
    assert batch.bad == {}
    assert batch.columns == plain
    assert [batch.event(i) for i in range(7)] == events


@pytest.mark.parametrize("code", [-1, 2, 99, True, 1.5, None, "0", [0]])
def test_a_code_that_is_no_index_of_its_dictionary_is_a_bad_row(code: Any) -> None:
    coded, dictionary = dictionary_coded(
        columns_of([make_order(order_id=f"o{i}") for i in range(3)])
    )
    dictionary["sku"].append("IT-OLI-0002")  # two values: 0 and 1 are codes
    coded["sku"][1] = code
    batch = decode_packed(encode_packed(coded, dictionary))
    if code == "0":  # text where a code belongs is taken as the value itself
        assert batch.bad == {}
        assert batch.columns["sku"][1] == "0"
        return
    assert {i: e.reason for i, e in batch.bad.items()} == {1: "wrong_type"}
    # The dead letter carries the row as a single event would come, the bad code in place.
    assert orjson.loads(batch.encode_row(1))["sku"] == code
    assert batch.columns["sku"][0] == batch.columns["sku"][2] == "FR-WIN-0001"


@pytest.mark.parametrize(
    "dictionary",
    [[], {"order_id": ["o1"]}, {"sku": "FR-WIN-0001"}, {"sku": None}, {"unknown": []}],
)
def test_a_malformed_dictionary_rejects_the_whole_message(dictionary: Any) -> None:
    cols = columns_of([make_order()])
    doc = orjson.loads(encode_packed(cols))
    with pytest.raises(MalformedEvent) as caught:
        decode_packed(orjson.dumps(dict(doc, dict=dictionary)))
    assert caught.value.reason == "wrong_type"


@settings(max_examples=200, deadline=None)
@given(
    codes=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(CODED_COLUMNS), _values)),
    values=st.lists(st.tuples(st.sampled_from(CODED_COLUMNS), _values), max_size=3),
)
def test_any_code_or_dictionary_value_is_judged_as_the_expanded_single_event_would_be(
    codes: list[tuple[int, str, Any]], values: list[tuple[str, Any]]
) -> None:
    coded, dictionary = dictionary_coded(
        columns_of([make_order(order_id=f"o{i}", line=i) for i in range(3)])
    )
    for name, value in values:
        dictionary[name].append(value)
    for row, name, value in codes:
        coded[name][row] = value
    try:
        raw = encode_packed(coded, dictionary)
    except orjson.JSONEncodeError:
        return  # integers beyond 64 bits have no JSON encoding here
    batch = decode_packed(raw)
    doc = orjson.loads(raw)  # what the bytes say, floats and all
    for i in range(3):
        row = {"v": 1}
        for name in PACKED_COLUMNS:
            value = doc[name][i]
            table = doc["dict"].get(name)
            if table is not None and type(value) is int and 0 <= value < len(table):
                value = table[value]
            row[name] = value
        try:
            decode_event(orjson.dumps(row))
            assert i not in batch.bad
        except MalformedEvent as exc:
            assert batch.bad[i].reason == exc.reason
