"""The run summary: its fields in order, what each means, and which a replay must repeat.

`verify --json`, `demo --summary-json`, a report's `summary.json` and `replay --summary-json`
write these fields (docs/architecture.md). The counts of decisions by outcome come from
`flashsale.counters`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from flashsale.counters import OUTCOME_COUNTS

__all__ = ["BUSINESS_FIELDS", "FIELDS", "NAMES", "SummaryField", "ordered"]


@dataclass(frozen=True, slots=True)
class SummaryField:
    """One field of the run summary."""

    name: str
    meaning: str
    #: True when the field describes what happened, not how fast: a replay of the run must
    #: give the same value (rates, latencies and durations depend on the machine; a broker's
    #: losses on the broker).
    business: bool = True


#: Every field of the run summary, in order.
FIELDS: Final = (
    SummaryField("scenario", "the scenario's name, from the headers of the run's restocks"),
    SummaryField("seed", "the scenario's seed, from the same headers"),
    SummaryField(
        "orders_produced",
        "`created` messages on `orders` (client retries included) plus malformed messages: "
        "one per order line sent",
    ),
    SummaryField("orders_processed", "decisions of `created` events plus dead letters"),
    *(
        SummaryField(count.summary, f"decisions with the outcome `{count.outcome}`")
        for count in OUTCOME_COUNTS
    ),
    SummaryField("dlq_messages", "malformed messages on the dead-letter topic"),
    SummaryField(
        "events_produced",
        "every message on `orders` but restocks: all lifecycle steps, retries and malformed "
        "messages",
    ),
    SummaryField("events_processed", "decisions of every event but restocks, plus dead letters"),
    SummaryField("gmv_cents_expected", "GMV of paid lines in euro cents, recomputed by verify"),
    SummaryField("gmv_cents_streamed", "GMV of paid lines in euro cents, the workers' total"),
    SummaryField("refunded_cents", "refunded amount in euro cents, recomputed by verify"),
    SummaryField("oversold_skus", "SKUs whose units went below zero (must be 0)"),
    SummaryField("sold_out_skus", "SKUs `inventory-events` names as sold out"),
    SummaryField("late_events", "events later than the window grace, the workers' total"),
    SummaryField("windows_closed", "closed 1 s and 1 min windows recomputed from `orders`"),
    SummaryField(
        "reconciled",
        "true only when every decision, count and cent matches the truth, sell-outs match one "
        "by one, units are conserved and no SKU is oversold",
    ),
    SummaryField("produce_rate_per_s", "events produced per second", business=False),
    SummaryField("process_rate_per_s", "events decided per second", business=False),
    SummaryField("e2e_latency_p50_ms", "median time from emit to decision, ms", business=False),
    SummaryField("e2e_latency_p99_ms", "99th percentile of the same, ms", business=False),
    SummaryField(
        "duration_s", "from the first event emitted to the last decided, s", business=False
    ),
    SummaryField(
        "broker_lost_messages",
        "messages of `orders` the workers applied that the broker no longer holds, at least "
        "(0 unless offsets are shown missing)",
        business=False,
    ),
    SummaryField(
        "acked_writes",
        "writes the producers' acknowledgement logs name (`--ack-log`), each looked up on "
        "`orders`; null without a log",
        business=False,
    ),
    SummaryField(
        "acked_lost",
        "acknowledged writes `orders` does not hold at their partition and offset with their "
        "seq and bytes (must be 0); null without a log",
        business=False,
    ),
    SummaryField(
        "acked_duplicated",
        "acknowledged writes whose seq was acknowledged at another offset too, or whose seq "
        "and bytes `orders` holds at another offset as well; null without a log",
        business=False,
    ),
)

#: The names of `FIELDS`, in order.
NAMES: Final = tuple(f.name for f in FIELDS)

#: The fields a replay of a run must repeat.
BUSINESS_FIELDS: Final = tuple(f.name for f in FIELDS if f.business)


def ordered(values: Mapping[str, Any]) -> dict[str, Any]:
    """A run summary of `values`: exactly the fields of `FIELDS`, in their order (a value
    missing or one too many is a `KeyError`)."""
    extra = values.keys() - set(NAMES)
    if extra:
        raise KeyError(f"not run-summary fields: {sorted(extra)}")
    return {name: values[name] for name in NAMES}
