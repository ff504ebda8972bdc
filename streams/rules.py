"""The order rules: what a worker decides for each event of a partition, as plain functions.

`apply_event` decides one event against its partition's state and returns its outcome and
amount: a restock adds units; `created` reserves the line's whole quantity if stock covers it,
else it is rejected as oversell; `paid` moves a reserved line into GMV; `cancelled` releases
its stock; `refunded` names a paid line; a repeated event is a duplicate; a step with nothing
to act on is an orphan. A step of a line (`paid`, `cancelled`, `refunded`, or a `created`
repeated for a line the partition still holds) must describe the line as it was reserved
(`streams.state.LINE_FIELDS`); one that does not is a `mismatch` and changes nothing.
`streams.packed` applies the same rules to a packed message's rows at once; `verify.truth`
recomputes them independently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
from streams.state import PartitionState, line_record

__all__ = ["apply_event", "apply_step"]


def apply_event(
    state: PartitionState, event: OrderEvent, index: int | None = None
) -> tuple[str, int]:
    """Apply one valid event to its partition's state; return its outcome and amount.

    The amount is the line's amount in euro cents for `accepted`, `paid`, `cancelled` and
    `refunded` (as reserved at `created`), else 0. A repeated event id (same line, same type)
    inside the window is a duplicate and changes nothing else. A restock adds units. `created`
    reserves the line's whole quantity if stock covers it, else is rejected as oversell;
    `paid` moves a reserved line into GMV; `cancelled` releases its stock; `refunded` names a
    paid line (stock stays out, GMV stays gross). A lifecycle event for a line with nothing to
    act on is an orphan. A step that describes its line otherwise than it was reserved (and a
    `created` for a line still held) is a mismatch, or a duplicate when it repeats the line.

    The state's `last_offset` is the event's offset (the caller sets it first); `index` is
    its row in a packed message. Both go into the record of a sell-out.
    """
    return apply_step(
        state,
        event.type,
        event.order_id,
        event.line,
        event.sku,
        event.quantity,
        event.unit_price_cents,
        event.country,
        event.category,
        event.merchant,
        event.province,
        event.event_ts_ms,
        index,
    )


def _matches(
    record: Sequence[Any],
    sku: str,
    quantity: int,
    unit_price_cents: int,
    country: str,
    category: str,
    merchant: str,
    province: str,
) -> bool:
    """True when an event describes the line `record` holds (`LINE_FIELDS`)."""
    return (
        record[0] == quantity
        and record[1] == quantity * unit_price_cents
        and record[6] == sku
        and record[2] == country
        and record[3] == category
        and record[4] == merchant
        and record[5] == province
    )


def apply_step(
    state: PartitionState,
    kind: str,
    order_id: str,
    line: int,
    sku: str,
    quantity: int,
    unit_price_cents: int,
    country: str,
    category: str,
    merchant: str,
    province: str,
    event_ts_ms: int,
    index: int | None = None,
) -> tuple[str, int]:
    """`apply_event` on an event's fields."""
    line_id = f"{order_id}/{line}"
    event_id = f"{line_id}/{kind}"
    seen = state.seen
    if event_id in seen:
        state.duplicates += 1
        return DUPLICATE, 0
    seen.add(event_id, state.window)
    if kind == "restock":  # decode_event admits no type but these five
        state.stock[sku] = state.stock.get(sku, 0) + quantity
        state.restocked[sku] = state.restocked.get(sku, 0) + quantity
        state.restocked_at.setdefault(sku, event_ts_ms)
        state.restocks += 1
        return RESTOCKED, 0
    held = state.paid_lines if kind == "refunded" else state.open
    record = held.get(line_id)
    if kind == "created" and record is None:
        record = state.paid_lines.get(line_id)
    if record is not None and not _matches(
        record, sku, quantity, unit_price_cents, country, category, merchant, province
    ):
        state.mismatches += 1
        return MISMATCH, 0
    if kind == "created":
        if record is not None:  # a retry older than the window: the line is held already
            state.duplicates += 1
            return DUPLICATE, 0
        stock = state.stock
        have = stock.get(sku, 0)
        if have < quantity:
            state.rejected_oversell += 1
            return REJECTED_OVERSELL, 0
        left = have - quantity
        stock[sku] = left
        amount = quantity * unit_price_cents
        state.open[line_id] = line_record(
            quantity, amount, country, category, merchant, province, sku
        )
        state.accepted += 1
        if left == 0:
            state.sell_outs.append([sku, event_ts_ms, state.last_offset, index, order_id, line])
        return ACCEPTED, amount
    if record is None:
        state.orphans += 1
        return ORPHAN, 0
    amount = record[1]
    if kind == "paid":
        del state.open[line_id]
        state.gmv_cents += amount
        by = state.gmv_by_country
        by[country] = by.get(country, 0) + amount
        by = state.gmv_by_category
        by[category] = by.get(category, 0) + amount
        by = state.gmv_by_merchant
        by[merchant] = by.get(merchant, 0) + amount
        by = state.gmv_by_province
        by[province] = by.get(province, 0) + amount
        state.sold[sku] = state.sold.get(sku, 0) + quantity
        state.paid += 1
        paid_lines = state.paid_lines
        paid_lines[line_id] = record
        if len(paid_lines) > state.window:
            paid_lines.popitem(last=False)
        return PAID, amount
    if kind == "cancelled":
        del state.open[line_id]
        state.stock[sku] = state.stock.get(sku, 0) + quantity
        state.cancelled += 1
        return CANCELLED, amount
    # refunded
    del state.paid_lines[line_id]
    state.refunded += 1
    state.refunded_cents += amount
    return REFUNDED, amount
