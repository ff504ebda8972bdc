"""The dashboard's arithmetic: metrics parsing, latency quantiles, rates, the run's history,
the scenario's time zone and numbered sell-outs."""

from __future__ import annotations

import math
from datetime import datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dashboards.live.source import (
    MAX_POINTS,
    DashboardSource,
    histogram_quantile,
    number_sell_outs,
    parse_metrics,
    scenario_zone,
)
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


def test_rates_of_applied_and_produced_and_the_recent_latency_window() -> None:
    source = DashboardSource(["http://127.0.0.1:1"])
    assert source._rates(100.0, 1_000, 1_500) == (None, None)  # one poll: no rate yet
    assert source._rates(101.0, 3_000, 4_000) == (pytest.approx(2_000), pytest.approx(2_500))
    assert source._rates(102.0, 3_000, 4_000) == (0.0, 0.0)
    # Without the broker's end offsets only what was applied is known.
    assert source._rates(104.0, 5_000, None) == (pytest.approx(1_000), None)
    # A slow poll (1.95 s), then one 0.05 s later: that one is measured from the poll
    # before the slow one, so a burst in between is no spike.
    assert source._rates(105.95, 6_000, 7_000)[0] == pytest.approx(1_000 / 1.95)
    assert source._rates(106.0, 6_700, 7_600)[0] == pytest.approx(1_700 / 2.0)
    assert source._rates(107.0, 7_700, 8_600) == (pytest.approx(1_000), pytest.approx(1_000))
    early = {0.01: 10.0, 1.0: 10.0, math.inf: 10.0}
    assert source._latency_quantiles(0.0, early)[0] == pytest.approx(0.005)
    # Ten seconds later only what was observed since counts: 10 slow observations.
    later = {0.01: 10.0, 1.0: 20.0, math.inf: 20.0}
    p50, _ = source._latency_quantiles(11.0, later)
    assert p50 is not None and p50 > 0.01


def test_the_history_spans_the_whole_run_and_merges_neighbours_past_the_limit() -> None:
    source = DashboardSource(["http://127.0.0.1:1"])
    for i in range(MAX_POINTS):
        source._record([float(i), None if i == 0 else 10.0 * i, 5.0, float(i % 7), 20.0])
    series = source.series()
    assert series["t"][0] == 0.0 and series["t"][-1] == MAX_POINTS - 1  # from the start on
    assert series["produced_per_s"][:2] == [None, 10.0]
    source._record([float(MAX_POINTS), 1.0, 5.0, 100.0, None])
    series = source.series()
    # One point more than the limit: pairs merge, the odd newest point stays as it was.
    assert len(series["t"]) == MAX_POINTS // 2 + 1
    assert series["t"][:2] == [1.0, 3.0] and series["t"][-1] == MAX_POINTS
    assert series["produced_per_s"][:2] == [10.0, 25.0]  # rates averaged (None ignored)
    assert series["lag"][:3] == [1.0, 3.0, 5.0]  # lag (and p99) the larger of the two
    assert series["lag"][-1] == 100.0 and series["p99_ms"][-1] is None


def test_faults_are_placed_on_the_run_axis() -> None:
    source = DashboardSource(["http://127.0.0.1:1"])
    assert source._faults(30.0) == []
    source.marks = lambda: [[-20.0, -18.0, "stall producer"], [-3.0, None, "kill worker"]]
    assert source._faults(30.0) == [[10.0, 12.0, "stall producer"], [27.0, None, "kill worker"]]


@pytest.mark.parametrize(
    ("start", "zone"),
    [
        ("2020-11-10T16:00:00Z", (8 * 3600, "UTC+8")),  # the Singles' Day presets
        ("2020-11-11T00:00:00+08:00", (8 * 3600, "UTC+8")),  # the same instant
        ("2024-11-29T05:00:00Z", (-5 * 3600, "UTC-5")),  # Black Friday in New York
        ("2024-11-28T18:30:00Z", (5 * 3600 + 1800, "UTC+5:30")),
        ("2024-11-29T00:00:00Z", (0, "UTC")),
        ("2024-11-29T12:00:00Z", (12 * 3600, "UTC+12")),
        ("2024-11-29T10:00:00Z", (-10 * 3600, "UTC-10")),
        # No local midnight anywhere: the offset it was written with.
        ("2024-11-29T10:17:00Z", (0, "UTC")),
        ("2024-11-29T10:17:00+02:00", (2 * 3600, "UTC+2")),
    ],
)
def test_the_scenario_zone_is_where_its_start_is_midnight(
    start: str, zone: tuple[int, str]
) -> None:
    assert scenario_zone(datetime.fromisoformat(start)) == zone


def test_without_a_scenario_the_page_shows_utc() -> None:
    assert scenario_zone(None) == (0, "UTC")


def _sell_out(sku: str, ts: int) -> dict[str, object]:
    return {"sku": sku, "event_ts_ms": ts, "time_to_sell_out_s": ts / 1000, "stock_now": 0}


def test_a_sku_that_sells_out_again_is_numbered_and_keeps_its_number() -> None:
    seen: dict[str, list[int]] = {}
    first = number_sell_outs([_sell_out("A", 2_000), _sell_out("B", 1_000)], seen)
    assert [(r["sku"], r["nth"]) for r in first] == [("A", 1), ("B", 1)]
    # A sold out again, twice; the view lists newest first.
    rows = [_sell_out("A", 9_000), _sell_out("A", 5_000), _sell_out("A", 2_000)]
    rows.append(_sell_out("B", 1_000))
    numbered = number_sell_outs(rows, seen)
    assert [(r["sku"], r["nth"]) for r in numbered] == [("A", 3), ("A", 2), ("A", 1), ("B", 1)]
    assert numbered[0]["time_to_sell_out_s"] == 9.0  # the worker's fields stay
    # Only the newest are shown, and older sell-outs out of the view's list still count.
    newest = number_sell_outs([_sell_out("A", 12_000), _sell_out("A", 9_000)], seen, shown=1)
    assert [(r["sku"], r["nth"]) for r in newest] == [("A", 4)]


def test_the_source_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="worker"):
        DashboardSource([])
