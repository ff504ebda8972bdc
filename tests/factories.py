"""Factories for test objects."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flashsale.events import OrderEvent

_BASE = OrderEvent(
    order_id="o1",
    type="created",
    event_ts_ms=1_605_024_000_000,
    sku="FR-WIN-0001",
    merchant="Maison Test",
    country="FR",
    category="wine",
    quantity=1,
    unit_price_cents=1_500,
    province="Guangdong",
    channel="app",
    payment="alipay",
    emit_ns=1_000_000,
    line=0,
)


def make_order(**changes: Any) -> OrderEvent:
    """A valid `created` order line, with `changes` applied."""
    return replace(_BASE, **changes)


def make_step(line: OrderEvent, kind: str, **changes: Any) -> OrderEvent:
    """A later lifecycle event (`paid`, `cancelled`, `refunded`) of `line`: same key and fields."""
    return replace(line, type=kind, **changes)


def make_restock(line: OrderEvent, quantity: int, **changes: Any) -> OrderEvent:
    """A restock of `line`'s SKU loading `quantity` units (a second one needs its own order_id)."""
    restock = replace(
        line,
        order_id=f"restock-{line.sku}",
        line=0,
        type="restock",
        quantity=quantity,
        province="",
        channel="",
        payment="",
    )
    return replace(restock, **changes)


def make_decision(
    event: OrderEvent, where: tuple[int, ...], outcome: str, amount: int
) -> dict[str, Any]:
    """The decision a worker writes for `event` at source position `where` ((partition,
    offset), or (partition, offset, index) for a row of a packed message), decided 2 ms after
    its emit time (docs/events.md)."""
    doc: dict[str, Any] = {
        "order_id": event.order_id,
        "line": event.line,
        "type": event.type,
        "outcome": outcome,
        "sku": event.sku,
        "quantity": event.quantity,
        "amount_cents": amount,
        "partition": where[0],
        "offset": where[1],
        "event_ts_ms": event.event_ts_ms,
        "emit_ns": event.emit_ns,
        "processed_ns": event.emit_ns + 2_000_000,
    }
    if len(where) > 2:
        doc["index"] = where[2]
    return doc
