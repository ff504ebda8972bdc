"""Per-partition worker state and the order rules, as plain functions (no Faust here).

Everything a partition's processing changes lives in one `PartitionState` record: the source
offset last applied, GMV and counts, stock of the partition's SKUs, the lines reserved and not
yet paid or cancelled, the recently paid lines (for refunds) and the window of event ids
already seen. One changelog write carries all of it, so a worker killed at any moment recovers
a state that is consistent with exactly one source offset.

Units are conserved per SKU: `restocked[sku] == stock[sku] + reserved(sku) + sold[sku]`, where
`reserved` sums the open lines of the SKU (`conservation_breaks` checks it). A step of a line
(`paid`, `cancelled`, `refunded`, or a `created` repeated for a line the partition still
holds) must describe the line as it was reserved (`LINE_FIELDS`); one that does not is a
`mismatch` and changes nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from flashsale.events import OrderEvent

__all__ = [
    "ACCEPTED",
    "CANCELLED",
    "DUPLICATE",
    "LINE_FIELDS",
    "MISMATCH",
    "ORPHAN",
    "OUTCOMES",
    "PAID",
    "REFUNDED",
    "REJECTED_OVERSELL",
    "RESTOCKED",
    "STATE_FORMAT",
    "IdWindow",
    "PartitionState",
    "StateFormatError",
    "apply_event",
    "apply_step",
    "conservation_breaks",
    "line_record",
]

ACCEPTED: Final = "accepted"
REJECTED_OVERSELL: Final = "rejected_oversell"
DUPLICATE: Final = "duplicate"
PAID: Final = "paid"
CANCELLED: Final = "cancelled"
REFUNDED: Final = "refunded"
ORPHAN: Final = "orphan"
RESTOCKED: Final = "restocked"
MISMATCH: Final = "mismatch"

#: Every outcome of a non-restock event (the `outcome` label values of the worker's metric).
OUTCOMES: Final = (
    ACCEPTED,
    REJECTED_OVERSELL,
    DUPLICATE,
    PAID,
    CANCELLED,
    REFUNDED,
    ORPHAN,
    MISMATCH,
)

#: The version of a state record's layout (`PartitionState.to_bytes`); another one is refused.
STATE_FORMAT: Final = 2


class StateFormatError(ValueError):
    """A state record of another layout than this flashsale writes (an older version's)."""


#: What a line's record holds, in order (`PartitionState.open` and `paid_lines` values): the
#: units and amount reserved, then the event fields a later step of the line must repeat
#: exactly. With the units, the amount stands for the unit price (amount = units x price).
#: The buyer's channel and payment method are not compared: no total depends on them, and a
#: checkout may be paid another way than it was first meant to be.
LINE_FIELDS: Final = (
    "quantity",
    "amount_cents",
    "country",
    "category",
    "merchant",
    "province",
    "sku",
)


class IdWindow:
    """The ids most recently added, oldest first, for dedupe: membership, and eviction of the
    oldest once more than a limit are held.

    A set answers membership; a list keeps the age order, with a moving head instead of
    deletions from its front (compacted now and then). Both take whole messages of ids in
    one C-level call each (`extend`), which an OrderedDict cannot: about 0.3 µs per id saved
    in a packed message (py-spy on the worker).
    """

    __slots__ = ("_head", "_ids", "_order")

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._order: list[str] = list(dict.fromkeys(ids))
        self._ids: set[str] = set(self._order)
        self._head = 0

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self._order[self._head :])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdWindow) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"IdWindow({list(self)!r})"

    def isdisjoint(self, ids: Iterable[str]) -> bool:
        """True when none of `ids` is held."""
        return self._ids.isdisjoint(ids)

    def held(self, ids: set[str]) -> set[str]:
        """Those of `ids` that are held."""
        return self._ids & ids

    def oldest(self, count: int) -> list[str]:
        """The `count` oldest ids, oldest first."""
        return self._order[self._head : self._head + count]

    def add(self, event_id: str, limit: int) -> None:
        """Add an id that is not held; evict the oldest while more than `limit` are held."""
        self._order.append(event_id)
        ids = self._ids
        ids.add(event_id)
        if len(ids) > limit:  # inline: this runs once per single event
            self._evict(len(ids) - limit)

    def extend(self, event_ids: list[str], limit: int) -> None:
        """`add` each of `event_ids` (distinct, none held) in order: the same window."""
        self._order.extend(event_ids)
        self._ids.update(event_ids)
        self.trim(limit)

    def trim(self, limit: int) -> None:
        """Evict the oldest ids while more than `limit` are held."""
        if len(self._ids) > limit:
            self._evict(len(self._ids) - max(limit, 0))

    def clear(self) -> None:
        """Forget every id."""
        self._order.clear()
        self._ids.clear()
        self._head = 0

    def _evict(self, count: int) -> None:
        head = self._head
        self._ids.difference_update(self._order[head : head + count])
        head += count
        if head > 4096 and head * 2 > len(self._order):
            del self._order[:head]
            head = 0
        self._head = head


@dataclass(slots=True)
class PartitionState:
    """The aggregates, stock, open lines and dedupe window of one source partition."""

    partition: int
    window: int
    last_offset: int = -1
    # The first offset this state applied, and the CRC-32 of the message values at it and at
    # `last_offset`: `verify` tells from them whether the topic still holds what was applied.
    first_offset: int = -1
    first_crc32: int | None = None
    last_crc32: int | None = None
    gmv_cents: int = 0
    accepted: int = 0
    rejected_oversell: int = 0
    duplicates: int = 0
    paid: int = 0
    cancelled: int = 0
    refunded: int = 0
    refunded_cents: int = 0
    orphans: int = 0
    mismatches: int = 0
    restocks: int = 0
    dlq: int = 0
    gmv_by_country: dict[str, int] = field(default_factory=dict)
    gmv_by_category: dict[str, int] = field(default_factory=dict)
    gmv_by_merchant: dict[str, int] = field(default_factory=dict)
    gmv_by_province: dict[str, int] = field(default_factory=dict)
    stock: dict[str, int] = field(default_factory=dict)
    # Units per SKU ever restocked, and sold (paid lines; a refund does not bring them back):
    # with `stock` and the open lines they make the conservation of units checkable.
    restocked: dict[str, int] = field(default_factory=dict)
    sold: dict[str, int] = field(default_factory=dict)
    # Event time of each SKU's first restock (epoch ms).
    restocked_at: dict[str, int] = field(default_factory=dict)
    # Every time a SKU's stock reached zero, in order: [sku, event_ts_ms, offset, index,
    # order_id, line] of the event that took the last unit (`index`: its row in a packed
    # message, None for a message of its own).
    sell_outs: list[list[Any]] = field(default_factory=list)
    # The last `window` distinct event ids, oldest first (evicted first). Not a plain dict:
    # its oldest key is found by skipping the slots earlier deletions left, about 4 µs per
    # event at a window of 5,000 (measured).
    seen: IdWindow = field(default_factory=IdWindow)
    # Lines reserved and not yet paid or cancelled: line id -> its record (`LINE_FIELDS`).
    # Each holds at least one unit of stock, so restocks bound it.
    open: dict[str, Sequence[Any]] = field(default_factory=dict)
    # Paid lines that a refund may still name, line id -> its record; the oldest is evicted
    # once `window` are held.
    paid_lines: OrderedDict[str, Sequence[Any]] = field(default_factory=OrderedDict)
    # Event-time windows (streams/windows.py): grace, the newest event time seen, events that
    # came later than the grace, and the open windows "size_s:start_ms" -> [accepted, paid,
    # gmv_cents].
    grace_ms: int = 2_000
    max_event_ms: int = -1
    late: int = 0
    windows: dict[str, list[int]] = field(default_factory=dict)
    # Units of accepted lines per SKU in each open minute window: "start_ms" -> {sku: units}.
    minute_units: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """Serialise for the changelog (JSON objects keep the insertion order of the dicts)."""
        return orjson.dumps(
            {
                "format": STATE_FORMAT,
                "partition": self.partition,
                "window": self.window,
                "last_offset": self.last_offset,
                "first_offset": self.first_offset,
                "first_crc32": self.first_crc32,
                "last_crc32": self.last_crc32,
                "gmv_cents": self.gmv_cents,
                "accepted": self.accepted,
                "rejected_oversell": self.rejected_oversell,
                "duplicates": self.duplicates,
                "paid": self.paid,
                "cancelled": self.cancelled,
                "refunded": self.refunded,
                "refunded_cents": self.refunded_cents,
                "orphans": self.orphans,
                "mismatches": self.mismatches,
                "restocks": self.restocks,
                "dlq": self.dlq,
                "gmv_by_country": self.gmv_by_country,
                "gmv_by_category": self.gmv_by_category,
                "gmv_by_merchant": self.gmv_by_merchant,
                "gmv_by_province": self.gmv_by_province,
                "stock": self.stock,
                "restocked": self.restocked,
                "sold": self.sold,
                "restocked_at": self.restocked_at,
                "sell_outs": self.sell_outs,
                "seen": list(self.seen),
                "open": self.open,
                "paid_lines": self.paid_lines,
                "grace_ms": self.grace_ms,
                "max_event_ms": self.max_event_ms,
                "late": self.late,
                "windows": self.windows,
                "minute_units": self.minute_units,
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> PartitionState:
        """Inverse of `to_bytes`; `StateFormatError` for a record of another layout."""
        doc: dict[str, Any] = orjson.loads(raw)
        if doc.pop("format", None) != STATE_FORMAT:
            raise StateFormatError(
                f"a state record of partition {doc.get('partition')} has another layout than "
                f"this flashsale writes (format {STATE_FORMAT})"
            )
        doc["seen"] = IdWindow(doc["seen"])
        doc["paid_lines"] = OrderedDict(doc["paid_lines"])
        return cls(**doc)

    def summary(self) -> dict[str, Any]:
        """The totals without stock, lines and ids (sold-out SKUs counted once)."""
        return {
            "partition": self.partition,
            "last_offset": self.last_offset,
            "gmv_cents": self.gmv_cents,
            "accepted": self.accepted,
            "rejected_oversell": self.rejected_oversell,
            "duplicates": self.duplicates,
            "paid": self.paid,
            "cancelled": self.cancelled,
            "refunded": self.refunded,
            "refunded_cents": self.refunded_cents,
            "orphans": self.orphans,
            "mismatches": self.mismatches,
            "restocks": self.restocks,
            "dlq": self.dlq,
            "open_lines": len(self.open),
            "sold_out": len({sell_out[0] for sell_out in self.sell_outs}),
            "late": self.late,
            "grace_ms": self.grace_ms,
        }


def line_record(
    quantity: int,
    amount: int,
    country: str,
    category: str,
    merchant: str,
    province: str,
    sku: str,
) -> list[Any]:
    """A line's record as `LINE_FIELDS` orders it."""
    return [quantity, amount, country, category, merchant, province, sku]


def conservation_breaks(state: PartitionState) -> dict[str, tuple[int, int, int, int]]:
    """SKUs whose units are not conserved: sku -> (restocked, in stock, reserved, sold) where
    restocked != in stock + reserved + sold, or a part is below zero (empty when all hold)."""
    reserved: dict[str, int] = {}
    for record in state.open.values():
        reserved[record[6]] = reserved.get(record[6], 0) + record[0]
    breaks = {}
    for sku in state.restocked.keys() | state.stock.keys() | reserved.keys() | state.sold.keys():
        parts = (
            state.restocked.get(sku, 0),
            state.stock.get(sku, 0),
            reserved.get(sku, 0),
            state.sold.get(sku, 0),
        )
        if parts[0] != parts[1] + parts[2] + parts[3] or min(parts) < 0:
            breaks[sku] = parts
    return breaks


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
