"""The producer's Prometheus metrics, on an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics

# Counters would also export a `_created` timestamp series each, doubling what ops scrape
# and what docs/metrics.md must list; none of our panels or alerts needs it.
disable_created_metrics()

__all__ = ["ProducerMetrics"]


class ProducerMetrics:
    """What a producer exports on its own `/metrics`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.sent = Counter(
            "flashsale_orders_sent_total",
            "Order events handed to the Kafka client (duplicates from client retries included).",
            registry=registry,
        )
        self.acked = Counter(
            "flashsale_orders_acked_total",
            "Order events the broker acknowledged.",
            registry=registry,
        )
        self.errors = Counter(
            "flashsale_produce_errors_total",
            "Order events the broker did not acknowledge after the client's retries.",
            registry=registry,
        )
        self.in_flight = Gauge(
            "flashsale_producer_in_flight",
            "Order events sent and not yet acknowledged.",
            registry=registry,
        )
        self.behind = Gauge(
            "flashsale_producer_behind_schedule_seconds",
            "How far the producer's last block left after its scheduled time (0 when on time).",
            registry=registry,
        )
        self.scenario_seconds = Gauge(
            "flashsale_producer_scenario_seconds",
            "Scenario clock: seconds of the scenario emitted so far (after its 00:00).",
            registry=registry,
        )
        self.scenario_end_seconds = Gauge(
            "flashsale_producer_scenario_end_seconds",
            "Scenario second at which this run stops (its duration or the scenario's horizon).",
            registry=registry,
        )
