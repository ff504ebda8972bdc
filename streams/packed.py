"""A packed message's rows applied to a partition's state: the rules per row, windows at once.

The lifecycle rules (dedupe, stock, lines) are sequential by nature: each row goes through
`apply_step`, the same code a single event goes through, on the row's fields straight from
the decoded columns (no event object). The windows are sums once lateness is known, so they
take the whole message at once with numpy (`apply_windows`). The result equals applying the
rows one by one as single events; tests/unit/test_packed.py checks it state for state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from flashsale.events import PackedBatch
from streams.state import ACCEPTED, DUPLICATE, PAID, PartitionState, apply_step
from streams.windows import Window, apply_windows

__all__ = ["PackedResult", "apply_packed"]


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


def apply_packed(state: PartitionState, batch: PackedBatch) -> PackedResult:
    """Apply the valid rows of `batch`, in order, to `state`."""
    c = batch.columns
    rows: Sequence[int] = range(batch.n)
    if batch.bad:
        rows = [i for i in range(batch.n) if i not in batch.bad]
        c = {name: [column[i] for i in rows] for name, column in c.items()}
    kinds, skus, quantities, stamps = c["type"], c["sku"], c["quantity"], c["event_ts_ms"]
    outcomes: list[str] = []
    amounts: list[int] = []
    decide = outcomes.append
    amount_of = amounts.append
    for kind, order_id, line, sku, units, price, country, category, merchant, province, ts in zip(
        kinds,
        c["order_id"],
        c["line"],
        skus,
        quantities,
        c["unit_price_cents"],
        c["country"],
        c["category"],
        c["merchant"],
        c["province"],
        stamps,
        strict=True,
    ):
        outcome, amount = apply_step(
            state,
            kind,
            order_id,
            line,
            sku,
            units,
            price,
            country,
            category,
            merchant,
            province,
            ts,
        )
        decide(outcome)
        amount_of(amount)
    result = PackedResult(rows=list(rows), outcomes=outcomes, amounts=amounts)
    # The windows see what `apply_window` would: no restocks, no duplicates.
    timed = [
        j
        for j, (kind, outcome) in enumerate(zip(kinds, outcomes, strict=True))
        if outcome != DUPLICATE and kind != "restock"
    ]
    if not timed:
        return result
    index = np.asarray(timed, dtype=np.int64)
    decided = np.asarray(outcomes)[index]
    late, watermarks, closed = apply_windows(
        state,
        np.asarray(stamps, dtype=np.int64)[index],
        decided == ACCEPTED,
        decided == PAID,
        np.asarray(amounts, dtype=np.int64)[index],
        [skus[j] for j in timed],
        np.asarray(quantities, dtype=np.int64)[index],
    )
    if late.any():
        # Positions in the message, as the dead-letter and late topics name them.
        result.late = [(rows[timed[k]], int(watermarks[k])) for k in np.flatnonzero(late).tolist()]
    result.closed = closed
    return result
