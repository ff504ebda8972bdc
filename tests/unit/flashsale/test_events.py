from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flashsale.events import EVENT_TYPES, MalformedEvent, decode_event, encode_event
from streams.metrics import DLQ_REASONS
from tests.factories import make_order


def _order(**changes: object) -> dict[str, object]:
    event = make_order(
        order_id="o11-000000001", line=3, quantity=2, unit_price_cents=4_999, emit_ns=123
    )
    doc: dict[str, object] = orjson.loads(encode_event(event))
    doc.update(changes)
    return doc


def test_encoded_event_decodes_to_the_same_event() -> None:
    raw = orjson.dumps(_order())
    event = decode_event(raw)
    assert event.amount_cents == 9_998
    assert event.line == 3
    assert encode_event(event) == raw


def test_keys_in_another_order_decode_to_the_same_event() -> None:
    doc = _order()
    shuffled = dict(reversed(list(doc.items())))
    assert list(shuffled) != list(doc)
    assert decode_event(orjson.dumps(shuffled)) == decode_event(orjson.dumps(doc))


def test_event_names_its_line_and_its_lifecycle_step() -> None:
    event = decode_event(orjson.dumps(_order(type="paid")))
    assert event.line_id == "o11-000000001/3"
    assert event.event_id == "o11-000000001/3/paid"


@pytest.mark.parametrize("kind", sorted(EVENT_TYPES - {"restock"}))
def test_every_lifecycle_step_carries_the_whole_line(kind: str) -> None:
    event = decode_event(orjson.dumps(_order(type=kind)))
    assert (event.type, event.sku, event.quantity, event.province) == (
        kind,
        "FR-WIN-0001",
        2,
        "Guangdong",
    )
    with pytest.raises(MalformedEvent) as caught:
        decode_event(orjson.dumps(_order(type=kind, payment="")))
    assert caught.value.reason == "out_of_range"


def test_encoding_overrides_the_emit_time_only() -> None:
    event = decode_event(orjson.dumps(_order()))
    assert decode_event(encode_event(event, emit_ns=999)).emit_ns == 999
    assert decode_event(encode_event(event, emit_ns=999)).order_id == event.order_id


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty"),
        (b"{not json", "not_json"),
        (b"[1, 2]", "not_object"),
        (orjson.dumps(_order(v=2)), "unknown_version"),
        (orjson.dumps(_order(v=True)), "unknown_version"),
        (orjson.dumps({k: v for k, v in _order().items() if k != "sku"}), "missing_field"),
        (orjson.dumps({k: v for k, v in _order().items() if k != "line"}), "missing_field"),
        (orjson.dumps(_order(coupon="X")), "unknown_field"),
        (orjson.dumps(_order(quantity="2")), "wrong_type"),
        (orjson.dumps(_order(quantity=True)), "wrong_type"),
        (orjson.dumps(_order(unit_price_cents=49.99)), "wrong_type"),
        (orjson.dumps(_order(sku=7)), "wrong_type"),
        (orjson.dumps(_order(line="0")), "wrong_type"),
        (orjson.dumps(_order(line=False)), "wrong_type"),
        (orjson.dumps(_order(line=1.0)), "wrong_type"),
        (orjson.dumps(_order(type="teleported")), "unknown_type"),
        (orjson.dumps(_order(quantity=0)), "out_of_range"),
        (orjson.dumps(_order(quantity=-1)), "out_of_range"),
        (orjson.dumps(_order(unit_price_cents=-100)), "out_of_range"),
        (orjson.dumps(_order(event_ts_ms=-1)), "out_of_range"),
        # Times are 64-bit, as Kafka's: orjson reads integers up to 2**64 - 1.
        (orjson.dumps(_order(event_ts_ms=2**63)), "out_of_range"),
        (orjson.dumps(_order(emit_ns=2**64 - 1)), "out_of_range"),
        (orjson.dumps(_order(sku="")), "out_of_range"),
        (orjson.dumps(_order(line=-1)), "out_of_range"),
        (orjson.dumps(_order(line=100)), "out_of_range"),
        (orjson.dumps(_order(order_id="x" * 500)), "out_of_range"),
    ],
)
def test_malformed_input_is_rejected_with_its_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(MalformedEvent) as caught:
        decode_event(raw)
    assert caught.value.reason == reason
    assert caught.value.detail


def test_lines_zero_to_ninety_nine_are_valid() -> None:
    assert decode_event(orjson.dumps(_order(line=0))).line == 0
    assert decode_event(orjson.dumps(_order(line=99))).line == 99


def test_restock_may_have_no_buyer_but_an_order_must() -> None:
    restock = _order(type="restock", province="", channel="", payment="")
    assert decode_event(orjson.dumps(restock)).type == "restock"
    with pytest.raises(MalformedEvent):
        decode_event(orjson.dumps(_order(province="")))


# -- Hostile input, fuzzed: whatever the bytes, a valid event or a MalformedEvent with a
# -- reason the worker counts (and sends to orders-dlq); never another exception.

_json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=200),
    ),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


def _judged(raw: bytes) -> None:
    try:
        decode_event(raw)
    except MalformedEvent as exc:
        assert exc.reason in DLQ_REASONS, exc.reason
        assert "\n" not in exc.detail


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=600))
def test_random_bytes_are_an_event_or_a_dead_letter_with_a_reason(raw: bytes) -> None:
    _judged(raw)


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(min_value=0, max_value=400))
def test_any_truncation_is_a_dead_letter_with_a_reason(cut: int) -> None:
    raw = orjson.dumps(_order())
    if cut < len(raw):
        with pytest.raises(MalformedEvent):
            decode_event(raw[:cut])


@settings(max_examples=500, deadline=None)
@given(
    changes=st.dictionaries(
        st.sampled_from([*_order().keys(), "extra", "v"]), _json_values, max_size=4
    ),
    dropped=st.sets(st.sampled_from(list(_order().keys())), max_size=3),
)
def test_any_field_any_value_missing_or_extra_is_judged_with_a_reason(
    changes: dict[str, object], dropped: set[str]
) -> None:
    doc = _order(**changes)
    for name in dropped:
        doc.pop(name, None)
    _judged(orjson.dumps(doc))


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"1" * 400])
def test_non_json_numbers_and_huge_numbers_are_dead_letters(literal: bytes) -> None:
    raw = orjson.dumps(_order()).replace(b'"quantity":2', b'"quantity":' + literal)
    with pytest.raises(MalformedEvent) as caught:
        decode_event(raw)
    assert caught.value.reason in DLQ_REASONS
