"""The producer's counters count events as the run summary does (restocks not counted) and
its `flashsale_run_info` names the run it emits."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry

from flashsale import __version__
from flashsale.scenario import Scenario
from producers.generator import Generator
from producers.metrics import ProducerMetrics
from producers.pacing import produce_scenario
from producers.sinks.jsonl import JsonlSink

SCENARIO = Scenario.model_validate(
    {
        "name": "metrics-unit",
        "seed": 17,
        "curve": {"shape": "constant", "horizon_s": 600.0},
        "scale": {"peak_per_s": 2_000.0, "sample_ratio": 1.0, "compression": 1.0},
        "catalog": {"sku_count": 40},
        "mix": {"pay_delay_mean_s": 0.3, "unpaid_timeout_s": 1.0, "refund_rate": 0.05},
    }
)


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_a_run_counts_its_events_without_the_restocks_and_is_named(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = ProducerMetrics(registry)
    assert _value(registry, "flashsale_run_info", version=__version__) == 1.0
    sink = JsonlSink(tmp_path / "orders.jsonl", metrics)

    async def run() -> None:
        await sink.start()
        try:
            await produce_scenario(sink, Generator(SCENARIO), None, 3_000)
        finally:
            await sink.stop()

    asyncio.run(run())
    st = sink.stats
    assert st.restocks_sent == 40
    assert st.orders_sent == 3_000
    # The file holds the restocks too; the counters hold what the summary's events_* count.
    assert len((tmp_path / "orders.jsonl").read_bytes().splitlines()) == 3_040
    assert _value(registry, "flashsale_events_sent_total") == 3_000
    assert _value(registry, "flashsale_events_acked_total") == 3_000
    assert _value(registry, "flashsale_events_failed_total") == 0
    assert _value(registry, "flashsale_producer_in_flight") == 0
    run_info = {"scenario": "metrics-unit", "seed": "17", "version": __version__}
    assert _value(registry, "flashsale_run_info", **run_info) == 1.0
    # Once named, the version-only series is gone: one run, one series.
    assert _value(registry, "flashsale_run_info", version=__version__) is None


def test_restocks_settled_with_the_first_events_are_not_counted_as_events() -> None:
    # librdkafka's sink learns settlements late and in bulk: the restocks' acknowledgements
    # can arrive in one count with the first events'.
    registry = CollectorRegistry()
    metrics = ProducerMetrics(registry)
    metrics.count_sent(600, restocks=600)
    metrics.count_sent(1_000)
    metrics.count_settled(1_500, 2, in_flight=98)
    assert _value(registry, "flashsale_events_sent_total") == 1_000
    assert _value(registry, "flashsale_events_acked_total") == 900
    assert _value(registry, "flashsale_events_failed_total") == 2
    assert _value(registry, "flashsale_producer_in_flight") == 98
    # Restocks still unsettled stay out of the events in flight.
    metrics.count_sent(10, restocks=10)
    metrics.count_settled(4, 0, in_flight=104)
    assert _value(registry, "flashsale_events_acked_total") == 900
    assert _value(registry, "flashsale_producer_in_flight") == 98
