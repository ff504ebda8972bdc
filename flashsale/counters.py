"""Outcomes, counters and GMV dimensions: the one list every part reads.

A worker decides each order event with one outcome (`OUTCOMES`) and counts it in its
partition's state under a counter (`OUTCOME_COUNTS`); money is summed from the amounts of
paid and refunded decisions (`MONEY`). The partition-state record, a worker's `/totals`, its
Prometheus counters, the run summary and `verify`'s comparison all take their names from
here, so a new counter is one line here and the rule that moves it (`streams/rules.py`,
and `verify/truth.py`, which recomputes it independently).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "ACCEPTED",
    "CANCELLED",
    "DUPLICATE",
    "GMV_DIMENSIONS",
    "GMV_FIELDS",
    "MISMATCH",
    "MONEY",
    "ORPHAN",
    "OTHER_COUNTS",
    "OUTCOMES",
    "OUTCOME_COUNTS",
    "PAID",
    "REFUNDED",
    "REJECTED_OVERSELL",
    "RESTOCKED",
    "STATE_COUNTERS",
    "OutcomeCount",
    "gmv_field",
]

ACCEPTED: Final = "accepted"
REJECTED_OVERSELL: Final = "rejected_oversell"
DUPLICATE: Final = "duplicate"
PAID: Final = "paid"
CANCELLED: Final = "cancelled"
REFUNDED: Final = "refunded"
ORPHAN: Final = "orphan"
MISMATCH: Final = "mismatch"
#: The outcome of a restock (not an order event: counted as `restocks`, not in `OUTCOMES`).
RESTOCKED: Final = "restocked"


@dataclass(frozen=True, slots=True)
class OutcomeCount:
    """A count of the decisions that have one outcome."""

    #: Its name in a partition state, a worker's `/totals` and `verify`'s messages.
    field: str
    #: The decision outcome it counts.
    outcome: str
    #: Its name in the run summary.
    summary: str


#: Every count of decisions by outcome, in the run summary's order.
OUTCOME_COUNTS: Final = (
    OutcomeCount("accepted", ACCEPTED, "orders_accepted"),
    OutcomeCount("rejected_oversell", REJECTED_OVERSELL, "orders_rejected_oversell"),
    OutcomeCount("paid", PAID, "orders_paid"),
    OutcomeCount("cancelled", CANCELLED, "orders_cancelled"),
    OutcomeCount("refunded", REFUNDED, "orders_refunded"),
    OutcomeCount("duplicates", DUPLICATE, "duplicates_dropped"),
    OutcomeCount("orphans", ORPHAN, "orphan_events"),
    OutcomeCount("mismatches", MISMATCH, "mismatched_events"),
)

#: Every outcome of an order event (the `outcome` label values of the worker's metric).
OUTCOMES: Final = tuple(count.outcome for count in OUTCOME_COUNTS)

#: Cents a partition state sums, each from the amounts of the decisions of one outcome:
#: (its field, that outcome). GMV is gross: a refund does not take it back.
MONEY: Final = (("gmv_cents", PAID), ("refunded_cents", REFUNDED))

#: The other counts of a partition state: restocks applied, dead letters, events later than
#: the window grace.
OTHER_COUNTS: Final = ("restocks", "dlq", "late")

#: Every integer counter of a partition state, as its record and `/totals` name them.
STATE_COUNTERS: Final = (
    *(count.field for count in OUTCOME_COUNTS),
    *(name for name, _ in MONEY),
    *OTHER_COUNTS,
)

#: The dimensions paid GMV is broken down by: each is a field of the order event.
GMV_DIMENSIONS: Final = ("country", "category", "merchant", "province")


def gmv_field(dimension: str) -> str:
    """The partition-state field of GMV by `dimension` (`gmv_by_country`, ...)."""
    return f"gmv_by_{dimension}"


#: The partition-state fields of GMV by dimension, in `GMV_DIMENSIONS` order.
GMV_FIELDS: Final = tuple(gmv_field(d) for d in GMV_DIMENSIONS)
