"""The truth of a run, recomputed from topic `orders`.

It is a plain-Python re-implementation of the order rules, deliberately independent of
the Faust code in `streams/`. Per partition in offset order: an event whose (order id, line,
type) is among the last `window` distinct ones of its partition is a duplicate; a restock adds
units; `created` reserves the line's quantity if the SKU's stock covers it, else is rejected as
oversell; `paid` turns a reserved line into GMV; `cancelled` gives its units back; `refunded`
names a paid line among the last `window` paid ones (stock and GMV stay); a step that
describes its line otherwise than it was reserved is a mismatch (a `created` of a line still
held: a duplicate if it repeats the line, else a mismatch); a lifecycle event with nothing to
act on is an orphan; anything that breaks the schema is a dead letter. Oversell is judged
apart from these rules, from the decisions alone (`verify.units`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from flashsale.counters import GMV_DIMENSIONS
from flashsale.events import (
    MalformedEvent,
    OrderEvent,
    decode_event,
    decode_packed,
    packed_count,
)
from verify.records import Position, Record

__all__ = ["Truth", "compute_truth", "events_of"]


@dataclass
class Truth:
    """The outcome every message on `orders` must have, and the totals that follow."""

    outcomes: dict[Position, str] = field(default_factory=dict)
    #: The line amount a decision must carry, where it is not 0 (accepted, paid, ...).
    amounts: dict[Position, int] = field(default_factory=dict)
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
    dlq: int = 0
    #: `created` events (duplicates included) and malformed messages.
    orders: int = 0
    #: Every message but restocks: all lifecycle events and malformed messages.
    events: int = 0
    emit_ns: list[int] = field(default_factory=list)
    #: Paid GMV by dimension ("country", "category", "merchant", "province") and value.
    gmv_by: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Every sell-out, by the position of the event that took the last unit: (SKU, its event
    #: time, order id, line).
    sell_outs: dict[Position, tuple[str, int, str, int]] = field(default_factory=dict)
    #: Event time of each SKU's first restock.
    restocked_at: dict[str, int] = field(default_factory=dict)
    #: Events later than the window grace, by (partition, offset).
    late_at: set[Position] = field(default_factory=set)
    #: Each closed minute's hot products: (partition, start_ms) -> [(sku, units)] (top 10).
    hot: dict[tuple[int, int], list[tuple[str, int]]] = field(default_factory=dict)
    #: Closed event-time windows: (partition, size_s, start_ms) -> (accepted, paid, gmv_cents).
    windows: dict[tuple[int, int, int], tuple[int, int, int]] = field(default_factory=dict)
    scenario: str | None = None
    seed: int | None = None

    def count(self, name: str) -> int:
        """A counter of `flashsale.counters` (an outcome count or cents) by name."""
        return int(getattr(self, name))

    @property
    def sold_out(self) -> set[str]:
        """The SKUs that sold out at least once."""
        return {sku for sku, *_ in self.sell_outs.values()}

    @property
    def sold_out_times(self) -> int:
        """Times a SKU's stock reached zero (a SKU can sell out again after a cancellation)."""
        return len(self.sell_outs)


def compute_truth(
    orders: Mapping[int, Sequence[Record]],
    window: int,
    grace_ms: Mapping[int, int] | None = None,
) -> Truth:
    """Apply the rules to every message of `orders`, partition by partition.

    `grace_ms` is each partition's window grace (as its worker ran; default 2,000 ms).
    """
    truth = Truth()
    for partition in sorted(orders):
        windows = _Windows(partition, (grace_ms or {}).get(partition, 2_000), truth)
        # Each partition has its own stock, lines and dedupe window.
        seen: OrderedDict[tuple[str, int, str], None] = OrderedDict()
        stock: dict[str, int] = {}
        # line -> what a later step must repeat, as created: (units, cents, sku, country,
        # category, merchant, province)
        reserved: dict[tuple[str, int], _Line] = {}
        paid: OrderedDict[tuple[str, int], _Line] = OrderedDict()  # oldest first
        for where, ev, rec in events_of(partition, orders[partition]):
            if ev is None:
                truth.outcomes[where] = "dlq"
                truth.dlq += 1
                truth.orders += 1
                truth.events += 1
                continue
            if ev.type == "restock":
                if truth.scenario is None:
                    for name, value in rec.headers or ():
                        if name == "flashsale.scenario":
                            truth.scenario = value.decode(errors="replace")
                        elif name == "flashsale.seed":
                            truth.seed = int(value)
            else:
                truth.events += 1
                truth.emit_ns.append(ev.emit_ns)
                if ev.type == "created":
                    truth.orders += 1
            mark = (ev.order_id, ev.line, ev.type)
            if mark in seen:
                truth.outcomes[where] = "duplicate"
                truth.duplicates += 1
                continue
            seen[mark] = None
            if len(seen) > window:
                seen.popitem(last=False)
            line = (ev.order_id, ev.line)
            described = _Line(
                ev.quantity,
                ev.quantity * ev.unit_price_cents,
                ev.sku,
                ev.country,
                ev.category,
                ev.merchant,
                ev.province,
            )
            # The line a step names: held open, or paid (a refund; a `created` retried late).
            held = None
            if ev.type in ("created", "paid", "cancelled"):
                held = reserved.get(line)
            if held is None and ev.type in ("created", "refunded"):
                held = paid.get(line)
            outcome, cents = "orphan", 0
            if ev.type == "restock":
                stock[ev.sku] = stock.get(ev.sku, 0) + ev.quantity
                truth.restocked_at.setdefault(ev.sku, ev.event_ts_ms)
                outcome = "restocked"
            elif held is not None and held != described:
                outcome = "mismatch"
                truth.mismatches += 1
            elif ev.type == "created" and held is not None:
                truth.outcomes[where] = "duplicate"  # a retry later than the window
                truth.duplicates += 1
                continue
            elif ev.type == "created":
                have = stock.get(ev.sku, 0)
                if have >= ev.quantity:
                    stock[ev.sku] = have - ev.quantity
                    cents = described.cents
                    reserved[line] = described
                    outcome = "accepted"
                    truth.accepted += 1
                    if have == ev.quantity:
                        truth.sell_outs[where] = (ev.sku, ev.event_ts_ms, ev.order_id, ev.line)
                else:
                    outcome = "rejected_oversell"
                    truth.rejected_oversell += 1
            elif held is None:
                truth.orphans += 1
            elif ev.type == "paid":
                del reserved[line]
                cents = held.cents
                for dimension in GMV_DIMENSIONS:
                    by = truth.gmv_by.setdefault(dimension, {})
                    name = getattr(held, dimension)
                    by[name] = by.get(name, 0) + cents
                paid[line] = held
                if len(paid) > window:
                    paid.popitem(last=False)
                outcome = "paid"
                truth.paid += 1
                truth.gmv_cents += cents
            elif ev.type == "cancelled":
                del reserved[line]
                stock[held.sku] = stock.get(held.sku, 0) + held.units
                cents = held.cents
                outcome = "cancelled"
                truth.cancelled += 1
            else:  # refunded
                del paid[line]
                cents = held.cents
                outcome = "refunded"
                truth.refunded += 1
                truth.refunded_cents += cents
            truth.outcomes[where] = outcome
            if cents:
                truth.amounts[where] = cents
            if ev.type != "restock":
                windows.add(where, ev, outcome, cents)
    return truth


class _Line(NamedTuple):
    """An order line as its `created` described it: what every later step must repeat."""

    units: int
    cents: int
    sku: str
    country: str
    category: str
    merchant: str
    province: str


def events_of(
    partition: int, records: Sequence[Record]
) -> Iterator[tuple[Position, OrderEvent | None, Record]]:
    """Each event of a partition in order, with its position; None for a dead letter.

    A packed message yields its rows (a row that breaks the schema is a dead letter of its
    own); one that cannot be read at all is a single dead letter.
    """
    for rec in records:
        where = (partition, rec.offset)
        if rec.headers and packed_count(rec.headers) is not None:
            try:
                batch = decode_packed(rec.value)
            except MalformedEvent:
                yield where, None, rec
                continue
            for i in range(batch.n):
                yield (*where, i), None if i in batch.bad else batch.event(i), rec
            continue
        try:
            yield where, decode_event(rec.value), rec
        except MalformedEvent:
            yield where, None, rec


class _Windows:
    """1 s and 60 s event-time windows of one partition (the rules of docs/streams.md)."""

    SIZES_MS = (1_000, 60_000)

    def __init__(self, partition: int, grace_ms: int, truth: Truth) -> None:
        self.partition = partition
        self.grace_ms = grace_ms
        self.truth = truth
        self.newest = -1
        self.open: dict[tuple[int, int], list[int]] = {}  # (size_ms, start) -> counts
        self.units: dict[int, dict[str, int]] = {}  # minute start -> {sku: units accepted}

    def add(self, where: Position, ev: OrderEvent, outcome: str, cents: int) -> None:
        ts = ev.event_ts_ms
        if self.newest >= 0 and ts < self.newest - self.grace_ms:
            self.truth.late_at.add(where)
            return
        if outcome in ("accepted", "paid"):
            for size in self.SIZES_MS:
                start = ts // size * size
                counts = self.open.setdefault((size, start), [0, 0, 0])
                if outcome == "accepted":
                    counts[0] += 1
                    if size == 60_000:
                        units = self.units.setdefault(start, {})
                        units[ev.sku] = units.get(ev.sku, 0) + ev.quantity
                else:
                    counts[1] += 1
                    counts[2] += cents
        if ts > self.newest:
            self.newest = ts
            mark = ts - self.grace_ms
            for size, start in [k for k in self.open if k[0] + k[1] <= mark]:
                accepted, paid, gmv = self.open.pop((size, start))
                key = (self.partition, size // 1000, start)
                self.truth.windows[key] = (accepted, paid, gmv)
                if size == 60_000:
                    units = self.units.pop(start, {})
                    ranked = sorted(units.items(), key=lambda kv: (-kv[1], kv[0]))
                    self.truth.hot[(self.partition, start)] = ranked[:10]
