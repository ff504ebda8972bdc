"""What the live dashboard shows, gathered once a second from the workers and the broker.

It never reads orders: GMV, breakdowns, hot products and sell-outs come from a worker's
whole-run views (any worker answers for the whole run); latency, dead letters and late events
from every worker's `/metrics`; lag from the broker's end offsets of `orders` against the
offsets the workers have applied; the scenario clock from the producer's `/metrics`. It keeps
the run's history for the charts (events produced and applied per second, lag, p99 latency)
from its first answer on, and numbers each SKU's sell-outs so a repeat says so.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from flashsale.kafka.reading import high_watermarks, start_reader

__all__ = [
    "DashboardSource",
    "Scrape",
    "histogram_quantile",
    "number_sell_outs",
    "parse_metrics",
    "scenario_zone",
]

#: Points of history the charts get at most: past this, neighbouring points merge in pairs
#: (a run of any length fits its axis and a snapshot stays small).
MAX_POINTS = 1800
#: Sell-outs asked of a worker per poll (the view's maximum), and those the feed shows.
SOLD_OUT_ASKED = 1000
SOLD_OUT_SHOWN = 15
#: Rates are measured over at least this many poll intervals.
RATE_MIN_INTERVALS = 0.8
#: Latency percentiles are over the observations of about this many recent seconds.
LATENCY_WINDOW_S = 10


@dataclass(slots=True)
class Scrape:
    """The samples of one or more `/metrics` pages that the dashboard uses, summed."""

    latency_buckets: dict[float, float] = field(default_factory=dict)
    dlq: float = 0.0
    late: float = 0.0
    scenario_s: float | None = None
    scenario_end_s: float | None = None


def parse_metrics(texts: Iterable[str]) -> Scrape:
    """Sum the dashboard's samples over several Prometheus text pages."""
    out = Scrape()
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name, labels, value = sample.name, sample.labels, sample.value
                if name == "flashsale_e2e_latency_seconds_bucket":
                    bound = float(labels["le"])
                    out.latency_buckets[bound] = out.latency_buckets.get(bound, 0.0) + value
                elif name == "flashsale_dlq_messages_total":
                    out.dlq += value
                elif name == "flashsale_late_events_total":
                    out.late += value
                elif name == "flashsale_producer_scenario_seconds":
                    out.scenario_s = (out.scenario_s or 0.0) + value
                elif name == "flashsale_producer_scenario_end_seconds":
                    out.scenario_end_s = max(out.scenario_end_s or 0.0, value)
    return out


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The q-quantile of cumulative `le` buckets, interpolated in its bucket as Prometheus's
    `histogram_quantile` does; None without observations."""
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower  # beyond the last finite bucket: its bound is what we know
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


def scenario_zone(start: datetime | None) -> tuple[int, str]:
    """The scenario's time zone as (seconds east of UTC, label such as "UTC+8").

    A scenario's clock counts from its 00:00 (the Singles' Day presets start at 16:00 UTC, 00:00
    China time), so its zone is the one, from UTC-11 to UTC+12, in which its start is
    midnight. A start that is no local midnight anywhere (not on a quarter hour) keeps the
    offset it was written with (UTC for `Z`); without a start, UTC.
    """
    if start is None:
        return 0, "UTC"
    utc = start.astimezone(UTC)
    offset = -(utc.hour * 3600 + utc.minute * 60 + utc.second) % 86_400
    if offset > 12 * 3600:  # of the two offsets a day apart, the one in UTC-11..UTC+12
        offset -= 86_400
    if offset % 900 or utc.microsecond:
        own = start.utcoffset()
        offset = 0 if own is None else int(own.total_seconds())
    if offset == 0:
        return 0, "UTC"
    hours, minutes = divmod(abs(offset) // 60, 60)
    sign = "+" if offset > 0 else "-"
    return offset, f"UTC{sign}{hours}" + (f":{minutes:02d}" if minutes else "")


def number_sell_outs(
    rows: Iterable[Mapping[str, Any]], seen: dict[str, list[int]], shown: int = SOLD_OUT_SHOWN
) -> list[dict[str, Any]]:
    """The newest `shown` sell-outs, each with `nth`: which sell-out of its SKU it is (1 the
    first, 2 when it sold out again after units came back...).

    `rows` are a worker's sell-outs, newest first; `seen` keeps every sell-out time (event ms)
    of each SKU met so far, poll after poll, so a sell-out keeps its number after older ones
    drop out of the view's list.
    """
    rows = list(rows)
    for row in rows:
        stamps = seen.setdefault(row["sku"], [])
        ts = int(row["event_ts_ms"])
        at = bisect.bisect_left(stamps, ts)
        if at == len(stamps) or stamps[at] != ts:
            stamps.insert(at, ts)
    return [
        {**row, "nth": bisect.bisect_right(seen[row["sku"]], int(row["event_ts_ms"]))}
        for row in rows[:shown]
    ]


class DashboardSource:
    """Polls the run once a second and keeps the newest snapshot and the run's history."""

    def __init__(
        self,
        worker_urls: list[str],
        bootstrap: str | None = None,
        topic_orders: str = "orders",
        producer_metrics: list[str] | None = None,
        interval_s: float = 1.0,
    ) -> None:
        if not worker_urls:
            raise ValueError("the dashboard needs at least one worker URL")
        self.worker_urls = [u.rstrip("/") for u in worker_urls]
        self.bootstrap = bootstrap
        self.topic_orders = topic_orders
        self.producer_metrics = producer_metrics or []
        self.interval_s = interval_s
        self.snapshot: dict[str, Any] = {"ready": False}
        #: The run's faults so far, for the chart (`orchestration.faults.FaultRunner.marks`).
        self.marks: Callable[[], list[Any]] | None = None
        #: The scenario's time 0 (`Scenario.start`): the page shows its times in its zone.
        self.scenario_start: datetime | None = None
        self.updated = asyncio.Event()
        #: Wall time of the first answer: 0 on the charts' axis.
        self._t0: float | None = None
        #: [run s, produced/s, applied/s, lag, p99 ms] a poll (see `MAX_POINTS`).
        self._history: list[list[float | None]] = []
        #: (wall time, offsets applied, end offsets) of the last two polls, for the rates.
        self._offsets: deque[tuple[float, int, int | None]] = deque()
        #: Every sell-out time (event ms) of each SKU seen so far, to number repeats.
        self._sold: dict[str, list[int]] = {}
        self._latency: deque[tuple[float, dict[float, float]]] = deque()
        self._session: aiohttp.ClientSession | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin polling in the background."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3))
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop polling and close connections."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._reader is not None:
            await self._reader.stop()

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                self.snapshot = await self.collect()
            except Exception as exc:  # a poll that fails shows as such; the next one retries
                self.snapshot = {**self.snapshot, "ready": False, "error": str(exc)[:200]}
            self.updated.set()
            self.updated = asyncio.Event()
            await asyncio.sleep(max(0.05, self.interval_s - (time.monotonic() - started)))

    async def refreshed(self, timeout_s: float = 5.0) -> None:
        """Return once a snapshot taken after this call has been published (or on timeout)."""
        for _ in range(2):  # the poll under way may have started before the call
            event = self.updated
            try:
                await asyncio.wait_for(event.wait(), timeout_s)
            except TimeoutError:
                return
        await asyncio.sleep(0.2)  # time for the event streams to send it

    async def _get(self, url: str, as_json: bool = True) -> Any:
        assert self._session is not None
        async with self._session.get(url) as resp:
            resp.raise_for_status()
            return await (resp.json() if as_json else resp.text())

    async def _views(self) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
        """GMV, hot products and sell-outs from the first worker that answers."""
        last: Exception | None = None
        for url in self.worker_urls:
            try:
                return await asyncio.gather(
                    self._get(f"{url}/views/gmv"),
                    self._get(f"{url}/views/top-skus"),
                    self._get(f"{url}/views/sold-out?limit={SOLD_OUT_ASKED}"),
                )
            except (TimeoutError, aiohttp.ClientError) as exc:
                last = exc
        raise RuntimeError(f"no worker answers ({last})")

    async def _metrics(self) -> tuple[Scrape, int]:
        urls = [f"{u}/metrics" for u in self.worker_urls] + self.producer_metrics
        pages = await asyncio.gather(
            *(self._get(u, as_json=False) for u in urls), return_exceptions=True
        )
        texts = [p for p in pages if isinstance(p, str)]
        workers_up = sum(1 for p in pages[: len(self.worker_urls)] if isinstance(p, str))
        return parse_metrics(texts), workers_up

    async def _ends(self) -> dict[int, int] | None:
        if not self.bootstrap:
            return None
        if self._reader is None:
            self._reader = await start_reader(self.bootstrap)
        reader = self._reader
        if not self._tps:  # asked until the topic exists, then kept
            await reader._client.force_metadata_update()
            parts = reader.partitions_for_topic(self.topic_orders) or set()
            self._tps = [TopicPartition(self.topic_orders, p) for p in sorted(parts)]
        tps = self._tps
        ends = await high_watermarks(reader, tps) if tps else {}
        return {tp.partition: end for tp, end in ends.items()}

    async def collect(self) -> dict[str, Any]:
        """One snapshot of the run (also kept as `snapshot` by the poller)."""
        (gmv, top, sold), (scrape, workers_up), ends = await asyncio.gather(
            self._views(), self._metrics(), self._ends()
        )
        now = time.time()
        if self._t0 is None:
            self._t0 = now
        run_s = now - self._t0
        applied_offsets = {int(p): int(o) for p, o in gmv.get("partitions", {}).items()}
        applied = sum(o + 1 for o in applied_offsets.values() if o >= 0)
        # No partitions yet (the topic is not there): nothing known, rather than 0 produced.
        produced = sum(ends.values()) if ends else None
        rate, produced_rate = self._rates(now, applied, produced)
        lag = None
        if ends is not None:
            lag = sum(max(end - (applied_offsets.get(p, -1) + 1), 0) for p, end in ends.items())
        p50, p99 = self._latency_quantiles(now, scrape.latency_buckets)
        p99_ms = None if p99 is None else round(p99 * 1000, 1)
        self._record([round(run_s, 1), produced_rate, rate, lag, p99_ms])
        progress = None
        if scrape.scenario_s is not None and scrape.scenario_end_s:
            progress = min(scrape.scenario_s / scrape.scenario_end_s, 1.0)
        offset_s, zone = scenario_zone(self.scenario_start)
        start = self.scenario_start
        return {
            "ready": True,
            "t": now,
            "run_s": round(run_s, 1),
            "zone": {"offset_s": offset_s, "label": zone},
            "scenario_start_ms": None if start is None else round(start.timestamp() * 1000),
            "gmv_cents": gmv["gmv_cents"],
            "accepted": gmv["accepted"],
            "paid": gmv["paid"],
            "cancelled": gmv["cancelled"],
            "paid_to_created": gmv.get("paid_to_created"),
            "cancellation_rate": gmv.get("cancellation_rate"),
            "by_country": _top(gmv.get("by_country", {})),
            "by_category": _top(gmv.get("by_category", {})),
            "applied": applied,
            "rate_per_s": rate or 0.0,
            "produced_per_s": produced_rate,
            "series": self.series(),
            "faults": self._faults(run_s),
            "top_skus": top.get("top", []),
            "top_window_start_ms": top.get("window_start_ms"),
            "sold_out": number_sell_outs(sold, self._sold),
            "latency_p50_ms": None if p50 is None else round(p50 * 1000, 1),
            "latency_p99_ms": p99_ms,
            "lag": lag,
            "dlq": int(scrape.dlq),
            "late": int(gmv.get("late", scrape.late)),
            "scenario_s": scrape.scenario_s,
            "scenario_end_s": scrape.scenario_end_s,
            "progress": progress,
            "workers_up": workers_up,
            "workers": len(self.worker_urls),
        }

    def _rates(
        self, now: float, applied: int, produced: int | None
    ) -> tuple[float | None, float | None]:
        """Messages of `orders` applied and produced per second since the newest poll at least
        `RATE_MIN_INTERVALS` poll intervals back (None on the first poll, and produced None
        without the broker's end offsets): measured from a poll right after a slow one, a
        burst (the catalog's restocks) would show as a rate it never had over a second."""
        samples = self._offsets
        samples.append((now, applied, produced))
        while len(samples) > 2 and now - samples[1][0] >= RATE_MIN_INTERVALS * self.interval_s:
            samples.popleft()
        if len(samples) < 2:
            return None, None
        (t0, a0, p0), (t1, a1, p1) = samples[0], samples[-1]
        dt = max(t1 - t0, 1e-6)
        applied_rate = max(a1 - a0, 0) / dt
        produced_rate = None if p0 is None or p1 is None else max(p1 - p0, 0) / dt
        return applied_rate, produced_rate

    def _record(self, point: list[float | None]) -> None:
        """Keep one poll's point; past `MAX_POINTS`, merge neighbours in pairs."""
        history = self._history
        history.append(point)
        if len(history) > MAX_POINTS:
            merged = [_merge(a, b) for a, b in zip(history[::2], history[1::2], strict=False)]
            self._history = merged + ([history[-1]] if len(history) % 2 else [])

    def series(self) -> dict[str, list[float | None]]:
        """The run's history as columns (x first), as the page's charts take them."""
        columns = list(zip(*self._history, strict=True)) or [(), (), (), (), ()]
        names = ("t", "produced_per_s", "applied_per_s", "lag", "p99_ms")
        return {
            name: [v if v is None else round(v, 1) for v in column]
            for name, column in zip(names, columns, strict=True)
        }

    def _faults(self, run_s: float) -> list[list[Any]]:
        """The run's faults as [start, end or None (still on), label], in seconds on the
        charts' axis."""
        if self.marks is None:
            return []
        return [
            [round(run_s + began, 1), None if ended is None else round(run_s + ended, 1), label]
            for began, ended, label in self.marks()
        ]

    def _latency_quantiles(
        self, now: float, buckets: dict[float, float]
    ) -> tuple[float | None, float | None]:
        """p50 and p99 of the latencies observed over the last `LATENCY_WINDOW_S` seconds
        (of everything so far until that much history exists)."""
        kept = self._latency
        kept.append((now, buckets))
        while len(kept) > 1 and now - kept[1][0] >= LATENCY_WINDOW_S:
            kept.popleft()
        base = kept[0][1] if len(kept) > 1 and now - kept[0][0] >= LATENCY_WINDOW_S else {}
        recent = {b: c - base.get(b, 0.0) for b, c in buckets.items()}
        if not recent or max(recent.values()) <= 0:
            recent = buckets
        return histogram_quantile(0.5, recent), histogram_quantile(0.99, recent)


def _merge(a: list[float | None], b: list[float | None]) -> list[float | None]:
    """Two neighbouring points as one, at the later time: rates averaged, lag and p99 the
    larger (a peak stays on the chart)."""

    def mean(x: float | None, y: float | None) -> float | None:
        return x if y is None else y if x is None else (x + y) / 2

    def most(x: float | None, y: float | None) -> float | None:
        return x if y is None else y if x is None else max(x, y)

    return [b[0], mean(a[1], b[1]), mean(a[2], b[2]), most(a[3], b[3]), most(a[4], b[4])]


def _top(by: Mapping[str, int], n: int = 8) -> list[list[Any]]:
    """The n largest entries, as [name, cents] pairs."""
    return [[k, v] for k, v in sorted(by.items(), key=lambda kv: -kv[1])[:n]]
