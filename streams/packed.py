"""A packed message's rows applied to a partition's state at once: rules in one pass, windows
with numpy.

The result equals applying the rows one by one as single events (`streams.state.apply_step`);
tests/unit/test_packed.py checks it state for state on random streams. What makes the batch
cheaper than a call per row:

- ids are built for the whole message by string concatenation (no formatting per row);
- dedupe is decided for the whole message from set operations: a row can only be a duplicate
  if its id is already in the window or earlier in the message, and only those candidates are
  walked, with the window's eviction order taken into account exactly;
- the lifecycle rules (stock per SKU, open and paid lines) run in one loop with local
  counters, written back once; GMV by dimension is summed after the loop;
- the windows are sums once lateness is known, so they take the whole message with numpy
  (`apply_windows`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from itertools import compress
from operator import add, itemgetter, mul
from typing import Any, Final

import numpy as np

from flashsale.events import EVENT_TYPES, MAX_LINE, PackedBatch
from streams.state import (
    ACCEPTED,
    CANCELLED,
    DUPLICATE,
    ORPHAN,
    PAID,
    REFUNDED,
    REJECTED_OVERSELL,
    RESTOCKED,
    PartitionState,
)
from streams.windows import Window, apply_windows

__all__ = ["PackedResult", "apply_packed", "fresh_rows"]

#: "/{line}" for every valid line number, and "/{type}" for every type: ids by concatenation.
_LINE_SUFFIX: Final = tuple(f"/{line}" for line in range(MAX_LINE + 1))
_TYPE_SUFFIX: Final = {kind: f"/{kind}" for kind in EVENT_TYPES}
#: Outcomes as small integers, for numpy masks.
_CODE: Final = {
    outcome: code
    for code, outcome in enumerate(
        (ACCEPTED, REJECTED_OVERSELL, DUPLICATE, PAID, CANCELLED, REFUNDED, ORPHAN, RESTOCKED)
    )
}
#: The open-line record's buyer fields: (country, category, merchant, province).
_DIMENSIONS: Final = (
    ("gmv_by_country", itemgetter(2)),
    ("gmv_by_category", itemgetter(3)),
    ("gmv_by_merchant", itemgetter(4)),
    ("gmv_by_province", itemgetter(5)),
)


@dataclass(slots=True)
class PackedResult:
    """What applying one packed message decided."""

    #: Indexes of the valid rows (not dead letters), in order; the lists below follow them.
    rows: list[int]
    outcomes: list[str]
    amounts: list[int]
    #: Rows (message indexes) later than the grace, and the watermark each was judged by.
    late: list[tuple[int, int]] = field(default_factory=list)
    closed: list[Window] = field(default_factory=list)


def fresh_rows(state: PartitionState, event_ids: list[str]) -> list[bool] | None:
    """Dedupe a message's event ids against the partition's window, in order, and add the
    fresh ones to it; which rows are fresh (None: all of them).

    Exactly `apply_step`'s rule: an id is a duplicate if it is in the window when its row
    comes, and each fresh id evicts the oldest once the window is full. Only rows whose id is
    in the window at the start, or comes twice in the message, can be duplicates, so only
    those rows are walked. An id added by this message stays for the rest of it (a message
    is no larger than the window); an id of the window is gone by row j once the fresh rows
    before j have evicted as many ids as its age rank.
    """
    seen = state.seen
    window = state.window
    n = len(event_ids)
    held = len(seen)
    distinct = set(event_ids)
    hits = seen.held(distinct)
    if not hits and len(distinct) == n:
        seen.extend(event_ids, window)
        return None
    if n > window:
        # Ids of this message may evict each other: row by row.
        fresh = []
        for event_id in event_ids:
            fresh.append(event_id not in seen)
            if fresh[-1]:
                seen.add(event_id, window)
        return fresh
    candidates = set(hits)
    if len(distinct) < n:
        candidates.update(e for e, count in Counter(event_ids).items() if count > 1)
    evictable = seen.oldest(max(0, held + n - window))
    rank: dict[str, int] = {}
    for event_id in hits:
        with suppress(ValueError):
            rank[event_id] = evictable.index(event_id)
    fresh = [True] * n
    added: set[str] = set()
    dup_rows: list[int] = []
    for j in [j for j, e in enumerate(event_ids) if e in candidates]:
        event_id = event_ids[j]
        if event_id in added:
            dup = True
        elif event_id in hits:
            r = rank.get(event_id)
            dup = r is None or r >= max(0, held + (j - len(dup_rows)) - window)
            if not dup:  # evicted before its row: added again
                added.add(event_id)
        else:
            dup = False
            added.add(event_id)
        if dup:
            fresh[j] = False
            dup_rows.append(j)
    inserted = list(event_ids)
    for j in reversed(dup_rows):
        del inserted[j]
    # Evict first: an id evicted before its row and added again leaves its old place.
    seen.trim(window - len(inserted))
    seen.extend(inserted, window)
    return fresh


def apply_packed(state: PartitionState, batch: PackedBatch) -> PackedResult:
    """Apply the valid rows of `batch`, in order, to `state`."""
    c = batch.columns
    rows: Sequence[int] = range(batch.n)
    if batch.bad:
        rows = [i for i in range(batch.n) if i not in batch.bad]
        c = {name: [column[i] for i in rows] for name, column in c.items()}
    kinds, skus, quantities, stamps = c["type"], c["sku"], c["quantity"], c["event_ts_ms"]
    prices, countries, categories = c["unit_price_cents"], c["country"], c["category"]
    merchants, provinces = c["merchant"], c["province"]
    line_ids = list(map(add, c["order_id"], map(_LINE_SUFFIX.__getitem__, c["line"])))
    fresh = fresh_rows(state, list(map(add, line_ids, map(_TYPE_SUFFIX.__getitem__, kinds))))

    stock = state.stock
    lines_open = state.open
    paid_lines = state.paid_lines
    window = state.window
    sold_out, sold_out_ts = state.sold_out, state.sold_out_ts
    n = len(kinds)
    # Every row a duplicate with no amount until decided otherwise.
    outcomes: list[str] = [DUPLICATE] * n
    amounts: list[int] = [0] * n
    paid_records: list[Sequence[Any]] = []
    paid_record = paid_records.append
    accepted = rejected = paid = cancelled = refunded = refunded_cents = orphans = restocks = 0
    # A `created` row's open-line record and amount, built for every row at C speed.
    line_amounts = list(map(mul, quantities, prices))
    records = zip(
        quantities, line_amounts, countries, categories, merchants, provinces, strict=True
    )
    rows_in = zip(range(n), kinds, line_ids, skus, quantities, records, strict=True)
    for j, kind, line_id, sku, units, record in (
        rows_in if fresh is None else compress(rows_in, fresh)
    ):
        if kind == "created":
            have = stock.get(sku, 0)
            if have < units:
                rejected += 1
                outcomes[j] = REJECTED_OVERSELL
                continue
            left = have - units
            stock[sku] = left
            amounts[j] = record[1]
            lines_open[line_id] = record
            accepted += 1
            if left == 0:
                sold_out.append(sku)
                sold_out_ts.append(stamps[j])
            outcomes[j] = ACCEPTED
        elif kind == "paid":
            record = lines_open.pop(line_id, None)
            if record is None:
                orphans += 1
                outcomes[j] = ORPHAN
                continue
            paid += 1
            paid_record(record)
            amounts[j] = amount = record[1]
            paid_lines[line_id] = amount
            if len(paid_lines) > window:
                paid_lines.popitem(last=False)
            outcomes[j] = PAID
        elif kind == "cancelled":
            record = lines_open.pop(line_id, None)
            if record is None:
                orphans += 1
                outcomes[j] = ORPHAN
                continue
            stock[sku] = stock.get(sku, 0) + record[0]
            cancelled += 1
            amounts[j] = record[1]
            outcomes[j] = CANCELLED
        elif kind == "refunded":
            amount = paid_lines.pop(line_id, None)
            if amount is None:
                orphans += 1
                outcomes[j] = ORPHAN
                continue
            refunded += 1
            refunded_cents += amount
            amounts[j] = amount
            outcomes[j] = REFUNDED
        else:  # restock (the decoder admits no other type)
            stock[sku] = stock.get(sku, 0) + units
            state.restocked_at.setdefault(sku, stamps[j])
            restocks += 1
            outcomes[j] = RESTOCKED
    state.duplicates += n - (accepted + rejected + paid + cancelled + refunded + orphans + restocks)
    state.accepted += accepted
    state.rejected_oversell += rejected
    state.paid += paid
    state.cancelled += cancelled
    state.refunded += refunded
    state.refunded_cents += refunded_cents
    state.orphans += orphans
    state.restocks += restocks
    if paid_records:
        paid_amounts = [record[1] for record in paid_records]
        state.gmv_cents += sum(paid_amounts)
        for name, value_of in _DIMENSIONS:
            by: dict[str, int] = getattr(state, name)
            for value, amount in zip(map(value_of, paid_records), paid_amounts, strict=True):
                by[value] = by.get(value, 0) + amount

    result = PackedResult(rows=list(rows), outcomes=outcomes, amounts=amounts)
    # The windows see what `apply_window` would: no restocks, no duplicates.
    codes = np.fromiter(map(_CODE.__getitem__, outcomes), dtype=np.int8, count=len(outcomes))
    timed = np.flatnonzero((codes != _CODE[DUPLICATE]) & (codes != _CODE[RESTOCKED]))
    if not len(timed):
        return result
    decided = codes[timed]
    late, watermarks, closed = apply_windows(
        state,
        np.asarray(stamps, dtype=np.int64)[timed],
        decided == _CODE[ACCEPTED],
        decided == _CODE[PAID],
        np.asarray(amounts, dtype=np.int64)[timed],
        skus,
        np.asarray(quantities, dtype=np.int64)[timed],
        timed,
    )
    if late.any():
        # Positions in the message, as the dead-letter and late topics name them.
        result.late = [
            (rows[int(timed[k])], int(watermarks[k])) for k in np.flatnonzero(late).tolist()
        ]
    result.closed = closed
    return result
