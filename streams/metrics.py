"""The worker's Prometheus metrics, on an injected registry; labelled children made once."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)

from flashsale import __version__
from flashsale.counters import MONEY, OUTCOME_COUNTS, OUTCOMES

# Counters would also export a `_created` timestamp series each, doubling what ops scrape
# and what docs/metrics.md must list; none of our panels or alerts needs it.
disable_created_metrics()

__all__ = [
    "DEAD_LETTER",
    "DLQ_REASONS",
    "LATENCY_BUCKETS",
    "DeadLetterCount",
    "WorkerMetrics",
    "observe_many",
]

# End-to-end latency spans a healthy few milliseconds to a worker that is minutes behind.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)

#: Bounded label values for dead-lettered messages (see flashsale.events.MalformedEvent).
DLQ_REASONS = (
    "empty",
    "not_json",
    "not_object",
    "unknown_version",
    "missing_field",
    "unknown_field",
    "wrong_type",
    "unknown_type",
    "out_of_range",
)

#: The `outcome` of a malformed message on the events-processed counter: with the decisions'
#: outcomes it sums to the run summary's `events_processed`.
DEAD_LETTER = "dead_letter"


class DeadLetterCount:
    """One dead-letter reason's count: `inc` counts the message by its reason and as an event
    processed with the outcome `dead_letter`."""

    __slots__ = ("by_reason", "processed")

    def __init__(self, by_reason: Counter, processed: Counter) -> None:
        self.by_reason = by_reason
        self.processed = processed

    def inc(self, amount: float = 1) -> None:
        """Count `amount` malformed messages of this reason."""
        self.by_reason.inc(amount)
        self.processed.inc(amount)


class WorkerMetrics:
    """Counters and histograms a Faust worker exports on `/metrics`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # Events, not order lines: every lifecycle step of a line is one event, as the run
        # summary's `events_processed` counts them (its `orders_*` fields count lines).
        processed = Counter(
            "flashsale_events_processed_total",
            "Events decided, by outcome, and malformed messages dead-lettered (outcome "
            "dead_letter); restocks are counted apart. Summed: the run summary's "
            "events_processed.",
            ["outcome"],
            registry=registry,
        )
        self.outcome = {o: processed.labels(o) for o in OUTCOMES}
        self.restocks = Counter(
            "flashsale_restocks_total", "Restock events applied.", registry=registry
        )
        self.gmv_cents = Counter(
            "flashsale_gmv_cents_total",
            "Revenue of paid order lines in euro cents (gross: refunds are not deducted).",
            registry=registry,
        )
        self.refunded_cents = Counter(
            "flashsale_refunded_cents_total",
            "Amount of refunded order lines in euro cents.",
            registry=registry,
        )
        self.latency = Histogram(
            "flashsale_e2e_latency_seconds",
            "From the producer's emit time to the worker's decision.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.sold_out = Counter(
            "flashsale_sell_outs_total",
            "Times a SKU's stock reached zero (a SKU sells out again after a cancellation gave "
            "units back).",
            registry=registry,
        )
        dlq = Counter(
            "flashsale_dlq_messages_total",
            "Malformed messages sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        dead_letters = processed.labels(DEAD_LETTER)
        self.dlq = {r: DeadLetterCount(dlq.labels(r), dead_letters) for r in DLQ_REASONS}
        self.redelivered = Counter(
            "flashsale_redelivered_skipped_total",
            "Messages at or below a partition's applied offset, seen again after a restart "
            "or rebalance and not applied twice.",
            registry=registry,
        )
        self.recovered_from_tail = Counter(
            "flashsale_state_tail_recoveries_total",
            "Partition states found newer in the changelog's tail than Faust's recovery gave.",
            registry=registry,
        )
        self.output_failures = Counter(
            "flashsale_output_failures_total",
            "Batches whose outputs Kafka refused (a broker that lost its topics): their "
            "partitions were re-derived from their last written state, the worker went on.",
            registry=registry,
        )
        self.gap_filled = Counter(
            "flashsale_gap_filled_total",
            "Messages the consumer skipped past the partition state and the worker read back "
            "itself, so none is lost.",
            registry=registry,
        )
        self.late = Counter(
            "flashsale_late_events_total",
            "Events later than the window grace: kept out of the windows, sent to the late "
            "topic (their lifecycle rules still apply).",
            registry=registry,
        )
        self.state_writes = Counter(
            "flashsale_state_writes_total",
            "Partition state records written to the changelog (at most one per partition per "
            "save interval).",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "flashsale_worker_batch_seconds",
            "Time to apply one batch, including awaiting its output deliveries.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry,
        )
        self.partitions = Gauge(
            "flashsale_worker_assigned_partitions",
            "Source partitions this worker holds.",
            registry=registry,
        )
        self.lag = Gauge(
            "flashsale_consumer_lag_messages",
            "Messages on orders in this worker's partitions not applied yet (high-water mark "
            "of its last fetch minus the applied offset).",
            registry=registry,
        )
        # Two gauges, not one with both labels: the states keep GMV by country and by
        # category apart (not by the pair), and one metric holding both breakdowns would
        # count every cent twice in `sum()`.
        self.country_gmv = Gauge(
            "flashsale_country_gmv_cents",
            "GMV of paid lines in this worker's partitions by the seller's country, euro cents "
            "(summed over workers and countries: the whole run's).",
            ["country"],
            registry=registry,
        )
        self.category_gmv = Gauge(
            "flashsale_category_gmv_cents",
            "GMV of paid lines in this worker's partitions by product category, euro cents "
            "(summed over workers and categories: the whole run's).",
            ["category"],
            registry=registry,
        )
        self.oversold = Gauge(
            "flashsale_oversold_skus",
            "SKUs in this worker's partitions whose stock is below zero (never expected).",
            registry=registry,
        )
        # A worker serves whichever run is on its topics: it knows its version, not the
        # run's scenario and seed (the producer's `flashsale_run_info` carries those).
        Info(
            "flashsale_run",
            "This process: flashsale's version (a producer adds the run's scenario and seed).",
            registry=registry,
        ).info({"version": __version__})
        #: The counter each counter of a partition state advances (`flashsale.counters`);
        #: dead letters are counted by reason, late events one by one.
        self.of_state: dict[str, Counter] = {
            **{count.field: self.outcome[count.outcome] for count in OUTCOME_COUNTS},
            **{name: getattr(self, name) for name, _ in MONEY},
            "restocks": self.restocks,
        }
        #: The GMV dimensions exported as gauges, each by its label.
        self.gmv_by: dict[str, Gauge] = {
            "country": self.country_gmv,
            "category": self.category_gmv,
        }


def observe_many(histogram: Histogram, values: npt.NDArray[np.float64]) -> None:
    """`histogram.observe(v)` for every v, bucketed with numpy: one increment per bucket.

    A packed message carries thousands of events; observing each costs a Python call per
    event. This adds the same counts to the same buckets (a value lands in the first bucket
    whose bound is >= it, as `Histogram.observe` does) through prometheus_client's own
    value objects.
    """
    if not len(values):
        return
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:  # another client version
        for value in values.tolist():
            histogram.observe(value)
        return
    where = np.searchsorted(np.asarray(bounds), values, side="left")
    for i, count in enumerate(np.bincount(where, minlength=len(bounds)).tolist()):
        if count:
            buckets[i].inc(count)
    total.inc(float(values.sum()))
