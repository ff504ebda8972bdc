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
)


def make_order(**changes: Any) -> OrderEvent:
    """A valid `created` order line, with `changes` applied."""
    return replace(_BASE, **changes)
