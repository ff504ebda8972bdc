"""A hostile client on one partition: whatever restocks and line steps arrive, with colliding
order ids, lines, SKUs, quantities and prices, units are conserved and no SKU is oversold, and
the worker's rules (single events; packed rows, compiled and as plain Python) and verify's
truth decide every event alike; verify reconciles what the worker wrote."""

from __future__ import annotations

from dataclasses import replace
from types import ModuleType
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import streams.packed
from flashsale.counters import DUPLICATE, MISMATCH
from flashsale.events import OrderEvent, decode_packed, encode_event, encode_packed
from streams.rules import apply_event
from streams.state import PartitionState, conservation_breaks
from streams.windows import apply_window
from tests.conftest import skip_or_fail
from tests.factories import make_decision, make_order, make_restock, make_step
from tests.unit.flashsale.test_compiled import source_module
from tests.unit.streams.test_packed import columns_of
from tests.unit.verify.test_reconcile import Rec
from verify.reconcile import reconcile
from verify.truth import compute_truth

SKU_F, SKU_G, SKU_H = "FR-WIN-0001", "DE-TOY-0002", "IT-OLI-0003"
T0 = 1_605_024_000_000

#: Each way the packed rules run: as built (Cython) and from the source, as plain Python.
PACKED: dict[str, ModuleType] = {"source": source_module("streams.packed")}
if streams.packed.COMPILED:
    PACKED["compiled"] = streams.packed


def _topics(
    messages: list[list[OrderEvent]],
    decided: list[tuple[str, int]],
    state: PartitionState,
    packed: bool,
) -> dict[str, Any]:
    """`reconcile`'s arguments for one partition holding `messages` (each a packed message
    when `packed`, else one event per message), the worker's decisions and its state."""
    orders, decisions = [], []
    events = iter(decided)
    for offset, message in enumerate(messages):
        if packed:
            headers = [("flashsale.packed", str(len(message)).encode())]
            orders.append(Rec(0, offset, None, encode_packed(columns_of(message)), headers))
        else:
            orders.append(Rec(0, offset, message[0].sku.encode(), encode_event(message[0])))
        for index, event in enumerate(message):
            where = (0, offset, index) if packed else (0, offset)
            outcome, amount = next(events)
            decisions.append(
                Rec(
                    0,
                    len(decisions),
                    b"k",
                    orjson.dumps(make_decision(event, where, outcome, amount)),
                )
            )
    inventory = []
    for sku, ts, offset, index, order_id, line in state.sell_outs:
        doc = {"type": "sold_out", "sku": sku, "partition": 0, "offset": offset}
        if index is not None:
            doc["index"] = index
        since = state.restocked_at.get(sku)
        doc.update(
            order_id=order_id,
            line=line,
            event_ts_ms=ts,
            time_to_sell_out_s=None if since is None else (ts - since) / 1000,
        )
        inventory.append(Rec(0, len(inventory), sku.encode(), orjson.dumps(doc)))
    return {
        "orders": {0: orders},
        "decisions": {0: decisions},
        "dead_letters": {},
        "inventory": {0: inventory},
        "states": {0: [Rec(0, 0, b"0", state.to_bytes())]},
        "default_window": state.window,
    }


def _apply(state: PartitionState, event: OrderEvent, index: int | None = None) -> tuple[str, int]:
    """A single event as the worker applies it: the rules, then its windows."""
    outcome, amount = apply_event(state, event, index)
    if event.type != "restock" and outcome != DUPLICATE:
        apply_window(state, event, outcome, amount)
    return outcome, amount


class HostileClient(RuleBasedStateMachine):
    """Sends anything to one partition; the worker applies each event as it comes (single)
    and, at every `flush`, the events since the last one as one packed message."""

    lines = Bundle("lines")

    @initialize(window=st.integers(1, 6))
    def start(self, window: int) -> None:
        self.window = window
        self.clock = T0
        # Single events at their own offsets, and at the positions they have as packed rows.
        self.single = PartitionState(partition=0, window=window)
        self.as_rows = PartitionState(partition=0, window=window)
        self.packed = {name: PartitionState(partition=0, window=window) for name in PACKED}
        self.events: list[OrderEvent] = []
        self.decided: list[tuple[str, int]] = []
        self.decided_as_rows: list[tuple[str, int]] = []
        self.messages: list[list[OrderEvent]] = []
        self.pending: list[OrderEvent] = []
        self.reserved_as: dict[str, OrderEvent] = {}  # line id -> its accepted `created`

    def _send(self, event: OrderEvent) -> None:
        self.clock += 250
        event = replace(event, event_ts_ms=self.clock, emit_ns=self.clock * 1_000_000)
        self.single.last_offset = len(self.events)
        self.decided.append(_apply(self.single, event))
        if self.decided[-1][0] == "accepted":
            self.reserved_as[f"{event.order_id}/{event.line}"] = event
        self.as_rows.last_offset = len(self.messages)
        self.decided_as_rows.append(_apply(self.as_rows, event, len(self.pending)))
        self.events.append(event)
        self.pending.append(event)

    @rule(
        sku=st.sampled_from((SKU_F, SKU_G, SKU_H)), quantity=st.integers(1, 6), n=st.integers(0, 99)
    )
    def restock(self, sku: str, quantity: int, n: int) -> None:
        self._send(make_restock(make_order(sku=sku), quantity, order_id=f"restock-{sku}-{n}"))

    @rule(
        target=lines,
        order=st.sampled_from(("o1", "o2", "o3")),
        line=st.integers(0, 1),
        sku=st.sampled_from((SKU_F, SKU_G, SKU_H)),
        quantity=st.integers(1, 4),
        price=st.sampled_from((100, 250)),
        country=st.sampled_from(("FR", "DE")),
    )
    def create(
        self, order: str, line: int, sku: str, quantity: int, price: int, country: str
    ) -> OrderEvent:
        created = make_order(
            order_id=order,
            line=line,
            sku=sku,
            quantity=quantity,
            unit_price_cents=price,
            country=country,
        )
        self._send(created)
        return created

    @rule(line=lines, kind=st.sampled_from(("paid", "cancelled", "refunded", "created")))
    def step_as_sent(self, line: OrderEvent, kind: str) -> None:
        """A step that repeats its line, as a well-behaved client sends it."""
        self._send(make_step(line, kind))

    @rule(
        line=lines,
        kind=st.sampled_from(("paid", "cancelled", "refunded", "created")),
        changes=st.fixed_dictionaries(
            {},
            optional={
                "sku": st.sampled_from((SKU_F, SKU_G, SKU_H)),
                "quantity": st.integers(1, 4),
                "unit_price_cents": st.sampled_from((100, 250)),
                "country": st.sampled_from(("FR", "DE")),
                "category": st.sampled_from(("wine", "toys")),
                "merchant": st.sampled_from(("Maison Test", "Other")),
                "province": st.sampled_from(("Guangdong", "Zhejiang")),
                "channel": st.sampled_from(("app", "web")),
            },
        ),
    )
    def step_altered(self, line: OrderEvent, kind: str, changes: dict[str, Any]) -> None:
        """A step naming a known line, any of its fields changed (or none)."""
        self._send(make_step(line, kind, **changes))

    @rule(kind=st.sampled_from(("paid", "cancelled")), pick=st.integers(0, 9))
    @precondition(lambda self: bool(self.single.open))
    def settle(self, kind: str, pick: int) -> None:
        """Pay or cancel a line that holds a reservation, as it was reserved."""
        held = list(self.single.open)
        self._send(make_step(self.reserved_as[held[pick % len(held)]], kind))

    @rule(pick=st.integers(0, 9))
    @precondition(lambda self: bool(self.single.paid_lines))
    def refund(self, pick: int) -> None:
        """Refund a paid line, as it was reserved."""
        paid = list(self.single.paid_lines)
        self._send(make_step(self.reserved_as[paid[pick % len(paid)]], "refunded"))

    @rule(back=st.integers(1, 8))
    @precondition(lambda self: bool(self.events))
    def retry(self, back: int) -> None:
        """An earlier event again, exactly (a client retry, maybe beyond the window)."""
        self._send(self.events[-min(back, len(self.events))])

    @rule()
    @precondition(lambda self: bool(self.pending))
    def flush(self) -> None:
        """The events since the last flush, as one packed message."""
        offset, rows = len(self.messages), self.pending
        start = len(self.events) - len(rows)
        for name, module in PACKED.items():
            state = self.packed[name]
            state.last_offset = offset
            result = module.apply_packed(state, decode_packed(encode_packed(columns_of(rows))))
            got = list(zip(result.outcomes, result.amounts, strict=True))
            assert got == self.decided_as_rows[start:], name
            assert state.to_bytes() == self.as_rows.to_bytes(), name
        self.messages.append(rows)
        self.pending = []

    @invariant()
    def units_are_conserved_and_never_oversold(self) -> None:
        assert conservation_breaks(self.single) == {}
        assert all(units >= 0 for units in self.single.stock.values())

    @invariant()
    def rows_and_single_events_decide_alike(self) -> None:
        assert self.decided == self.decided_as_rows

    def teardown(self) -> None:
        if not hasattr(self, "single"):
            return
        if self.pending:
            self.flush()
        # verify's truth, on one message per event and on the packed messages, decides each
        # event as the worker did; reconcile finds nothing to say about what the worker wrote.
        for messages, decided, state, packed in (
            ([[e] for e in self.events], self.decided, self.single, False),
            (self.messages, self.decided_as_rows, self.packed["source"], True),
        ):
            topics = _topics(messages, decided, state, packed)
            truth = compute_truth(topics["orders"], self.window)
            positions = [
                (0, offset, index) if packed else (0, offset)
                for offset, message in enumerate(messages)
                for index in range(len(message))
            ]
            assert [truth.outcomes[w] for w in positions] == [o for o, _ in decided]
            assert [truth.amounts.get(w, 0) for w in positions] == [a for _, a in decided]
            result = reconcile(**topics)
            assert result.differences == [], result.differences
            assert result.summary["oversold_skus"] == 0


HostileClient.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_a_hostile_client_never_breaks_the_units_and_verify_agrees = HostileClient.TestCase


def test_the_compiled_rules_are_among_those_played() -> None:
    if "compiled" not in PACKED:
        skip_or_fail("streams/packed.py is not compiled (no C compiler at install?)")


def test_the_adversary_reaches_mismatches_and_late_duplicates() -> None:
    """The rules the machine is for are exercised: steps that misdescribe their line, and
    `created` retried after its id left the window while the line is held."""
    state = PartitionState(partition=0, window=1)
    apply_event(state, make_restock(make_order(), 5))
    line = make_order(quantity=2)
    outcomes = [
        apply_event(state, e)[0]
        for e in (line, make_step(line, "paid", quantity=3), make_order(order_id="x"), line)
    ]
    assert outcomes == ["accepted", MISMATCH, "accepted", DUPLICATE]


# The case that showed the rules had to check lines: restock F with 1 unit and G with 5; a
# `created` of 5 of G; a `cancelled` of that line naming F; a `created` of 6 of F; its `paid`.

HOSTILE = [
    make_restock(make_order(sku=SKU_F), 1),
    make_restock(make_order(sku=SKU_G), 5),
    make_order(order_id="o9", sku=SKU_G, quantity=5, unit_price_cents=2_000),
    make_order(order_id="o9", sku=SKU_F, quantity=5, unit_price_cents=2_000, type="cancelled"),
    make_order(order_id="o9", sku=SKU_F, quantity=6, unit_price_cents=2_000, line=1),
    make_order(order_id="o9", sku=SKU_F, quantity=6, unit_price_cents=2_000, line=1, type="paid"),
]


@pytest.mark.parametrize("form", ["single", *(f"packed-{name}" for name in PACKED)])
def test_a_cancel_naming_another_sku_leaves_both_stocks_right_and_verify_agrees(
    form: str,
) -> None:
    state = PartitionState(partition=0, window=100)
    if form == "single":
        decided = []
        for offset, event in enumerate(HOSTILE):
            state.last_offset = offset
            decided.append(apply_event(state, event))
        messages = [[e] for e in HOSTILE]
    else:
        state.last_offset = 0
        result = PACKED[form.removeprefix("packed-")].apply_packed(
            state, decode_packed(encode_packed(columns_of(HOSTILE)))
        )
        decided = list(zip(result.outcomes, result.amounts, strict=True))
        messages = [HOSTILE]
    assert [o for o, _ in decided] == [
        "restocked",
        "restocked",
        "accepted",
        "mismatch",
        "rejected_oversell",
        "orphan",
    ]
    assert (state.stock[SKU_F], state.stock[SKU_G], state.gmv_cents) == (1, 0, 0)
    result = reconcile(**_topics(messages, decided, state, form != "single"))
    assert result.reconciled, result.differences
    assert result.summary["mismatched_events"] == 1


def test_verify_names_the_oversold_sku_when_a_worker_credits_the_cancels_sku() -> None:
    """What the rules did before lines were checked: the cancel gave G's units to F, F sold
    6 of its 1 unit and was paid. verify names F, the offsets, and the misnamed release,
    without the rules and without blaming the broker."""
    state = PartitionState(partition=0, window=100)
    for offset, event in enumerate(HOSTILE[:3]):
        state.last_offset = offset
        apply_event(state, event)
    # The old worker's effects by hand: G's reservation released onto F, F's line taken.
    state.open.clear()
    state.stock[SKU_F] = 0
    state.sold[SKU_F] = 6
    state.gmv_cents = 12_000
    decided = [
        ("restocked", 0),
        ("restocked", 0),
        ("accepted", 10_000),
        ("cancelled", 10_000),
        ("accepted", 12_000),
        ("paid", 12_000),
    ]
    result = reconcile(**_topics([[e] for e in HOSTILE], decided, state, False))
    assert not result.reconciled
    said = "\n".join(result.differences)
    assert f"SKU {SKU_F} oversold on partition 0: its units went below zero at 0:4" in said
    assert f"0:3 cancelled o9/0 names 5 of {SKU_F}, the line reserved 5 of {SKU_G} at 0:2" in said
    assert "units not conserved in the worker state of partition 0" in said
    assert result.summary["broker_lost_messages"] == 0
    assert "broker" not in said
