"""The worker's metrics: events processed sum to the run summary's `events_processed`, dead
letters included, and the process says its version."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from flashsale import __version__
from flashsale.counters import OUTCOMES
from streams.metrics import DEAD_LETTER, DLQ_REASONS, WorkerMetrics


def test_a_dead_letter_is_counted_by_its_reason_and_as_an_event_processed() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    metrics.dlq["not_json"].inc()
    metrics.dlq["out_of_range"].inc(2)
    metrics.outcome["accepted"].inc(5)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("flashsale_dlq_messages_total", reason="not_json") == 1
    assert value("flashsale_dlq_messages_total", reason="out_of_range") == 2
    assert value("flashsale_events_processed_total", outcome=DEAD_LETTER) == 3
    processed = sum(
        value("flashsale_events_processed_total", outcome=o) or 0 for o in (*OUTCOMES, DEAD_LETTER)
    )
    assert processed == 8
    # Every outcome and reason is exported from the start, at 0 until it happens.
    assert value("flashsale_events_processed_total", outcome="orphan") == 0
    assert all(value("flashsale_dlq_messages_total", reason=r) is not None for r in DLQ_REASONS)
    assert DEAD_LETTER not in OUTCOMES


def test_the_worker_says_its_version_and_not_a_run() -> None:
    registry = CollectorRegistry()
    WorkerMetrics(registry)
    assert registry.get_sample_value("flashsale_run_info", {"version": __version__}) == 1.0
