"""A partition's state: everything a worker's processing of one source partition changes.

One `PartitionState` record holds the source offset last applied, GMV and counts, stock of the
partition's SKUs, the lines reserved and not yet paid or cancelled, the recently paid lines
(for refunds) and the window of event ids already seen. One changelog write carries all of
it, so a worker killed at any moment recovers a state that is consistent with exactly one
source offset. Its counters and GMV breakdowns are the ones `flashsale.counters` names.

Units are conserved per SKU: `restocked[sku] == stock[sku] + reserved(sku) + sold[sku]`, where
`reserved` sums the open lines of the SKU (`conservation_breaks` checks it). The rules that
change a state are `streams.rules` (and `streams.packed`, for a packed message's rows).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Final

import orjson

from flashsale.counters import STATE_COUNTERS

__all__ = [
    "LINE_FIELDS",
    "STATE_FORMAT",
    "IdWindow",
    "PartitionState",
    "StateFormatError",
    "conservation_breaks",
    "line_record",
]

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
    # The counters `flashsale.counters.STATE_COUNTERS` names and the GMV breakdowns of its
    # `GMV_FIELDS`, declared here because the rules (compiled ones too) change them as
    # attributes; a unit test holds the two lists equal.
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
        """Serialise for the changelog: every field, in declaration order (JSON objects keep
        the insertion order of the dicts)."""
        doc: dict[str, Any] = {"format": STATE_FORMAT}
        for name in _FIELDS:
            doc[name] = getattr(self, name)
        doc["seen"] = list(self.seen)
        return orjson.dumps(doc)

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
        body: dict[str, Any] = {"partition": self.partition, "last_offset": self.last_offset}
        for name in STATE_COUNTERS:
            body[name] = getattr(self, name)
        body["open_lines"] = len(self.open)
        body["sold_out"] = len({sell_out[0] for sell_out in self.sell_outs})
        body["grace_ms"] = self.grace_ms
        return body


#: The fields of a state record, in declaration order.
_FIELDS: Final = tuple(f.name for f in fields(PartitionState))


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
