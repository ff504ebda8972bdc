"""The dashboard's arithmetic: metrics parsing, latency quantiles, rates, lag-free snapshots."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dashboards.live.source import DashboardSource, histogram_quantile, parse_metrics
from producers.metrics import ProducerMetrics
from streams.metrics import WorkerMetrics


def test_quantiles_interpolate_inside_the_bucket_as_prometheus_does() -> None:
    buckets = {0.1: 50.0, 0.2: 90.0, 0.5: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.2 + 0.3 * 0.9)
    assert histogram_quantile(0.5, {0.1: 0.0, math.inf: 0.0}) is None
    # Beyond the last finite bound all that is known is that bound.
    assert histogram_quantile(0.99, {1.0: 10.0, math.inf: 100.0}) == 1.0


def test_parse_sums_real_exposition_of_workers_and_producer() -> None:
    pages = []
    for latencies in ([0.004, 0.02], [0.3]):
        registry = CollectorRegistry()
        m = WorkerMetrics(registry)
        for v in latencies:
            m.latency.observe(v)
        m.dlq["not_json"].inc(2)
        m.late.inc()
        pages.append(generate_latest(registry).decode())
    registry = CollectorRegistry()
    producer = ProducerMetrics(registry)
    producer.scenario_seconds.set(26.0)
    producer.scenario_end_seconds.set(60.0)
    pages.append(generate_latest(registry).decode())
    scrape = parse_metrics(pages)
    assert scrape.dlq == 4
    assert scrape.late == 2
    assert scrape.latency_buckets[math.inf] == 3
    assert scrape.scenario_s == 26.0 and scrape.scenario_end_s == 60.0
    assert histogram_quantile(0.5, scrape.latency_buckets) <= 0.025


def test_rate_history_and_recent_latency_window() -> None:
    source = DashboardSource(["http://127.0.0.1:1"])
    assert source._rate(100.0, 1_000) == 0.0
    assert source._rate(101.0, 3_000) == pytest.approx(2_000)
    assert source._rate(102.0, 3_000) == 0.0
    assert [r for _, r in source._history] == [2_000, 0.0]
    early = {0.01: 10.0, 1.0: 10.0, math.inf: 10.0}
    assert source._latency_quantiles(0.0, early)[0] == pytest.approx(0.005)
    # Ten seconds later only what was observed since counts: 10 slow observations.
    later = {0.01: 10.0, 1.0: 20.0, math.inf: 20.0}
    p50, _ = source._latency_quantiles(11.0, later)
    assert p50 is not None and p50 > 0.01


def test_the_source_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="worker"):
        DashboardSource([])
