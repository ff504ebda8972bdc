"""The producer's Prometheus metrics, on an injected registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, disable_created_metrics

from flashsale import __version__

if TYPE_CHECKING:
    from flashsale.scenario import Scenario

# Counters would also export a `_created` timestamp series each, doubling what ops scrape
# and what docs/metrics.md must list; none of our panels or alerts needs it.
disable_created_metrics()

__all__ = ["ProducerMetrics"]


class ProducerMetrics:
    """What a producer exports on its own `/metrics`.

    Its counters count events, as the run summary's `events_*` fields do: every lifecycle
    step of an order line and every malformed message, not the catalog's restocks (its
    `orders_*` fields count order lines, `created` events, which no producer counter does).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.sent = Counter(
            "flashsale_events_sent_total",
            "Events handed to the Kafka client (the catalog's restocks not counted).",
            registry=registry,
        )
        self.acked = Counter(
            "flashsale_events_acked_total",
            "Events the broker acknowledged (restocks not counted).",
            registry=registry,
        )
        self.errors = Counter(
            "flashsale_events_failed_total",
            "Events the broker did not acknowledge after the client's retries (restocks not "
            "counted).",
            registry=registry,
        )
        self.in_flight = Gauge(
            "flashsale_producer_in_flight",
            "Events sent and not yet acknowledged.",
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
        self.run = Info(
            "flashsale_run",
            "The run this producer emits: its scenario and seed, and flashsale's version.",
            registry=registry,
        )
        self.run.info({"version": __version__})
        # Restocks sent and not yet acknowledged or failed (see `count_settled`).
        self._restocks_unsettled = 0

    def describe_run(self, scenario: Scenario) -> None:
        """Label `flashsale_run_info` with the run's scenario and seed."""
        self.run.info(
            {"scenario": scenario.name, "seed": str(scenario.seed), "version": __version__}
        )

    def count_sent(self, events: int, restocks: int = 0) -> None:
        """Count `events` handed to the client, `restocks` of them restocks."""
        if events > restocks:
            self.sent.inc(events - restocks)
        self._restocks_unsettled += restocks

    def count_settled(self, acked: int, errors: int, in_flight: int) -> None:
        """Count `acked` and `errors` newly settled, with `in_flight` (restocks included)
        still unsettled."""
        # The restocks are flushed before the first order event is sent
        # (`producers.pacing.send_restocks`), so the first events to settle are theirs.
        restocks = min(acked, self._restocks_unsettled)
        acked -= restocks
        failed = min(errors, self._restocks_unsettled - restocks)
        errors -= failed
        self._restocks_unsettled -= restocks + failed
        if acked:
            self.acked.inc(acked)
        if errors:
            self.errors.inc(errors)
        self.in_flight.set(max(in_flight - self._restocks_unsettled, 0))
