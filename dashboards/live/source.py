"""What the live dashboard shows, gathered once a second from the workers and the broker.

It never reads orders: GMV, breakdowns, hot products and sell-outs come from a worker's
whole-run views (any worker answers for the whole run); latency, dead letters and late events
from every worker's `/metrics`; lag from the broker's end offsets of `orders` against the
offsets the workers have applied; the scenario clock from the producer's `/metrics`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from flashsale.kafka.reading import high_watermarks, start_reader

__all__ = ["DashboardSource", "Scrape", "histogram_quantile", "parse_metrics"]

#: Seconds of orders/s history the chart shows.
HISTORY_S = 300
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


class DashboardSource:
    """Polls the run once a second and keeps the newest snapshot and the orders/s history."""

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
        self.updated = asyncio.Event()
        self._history: deque[tuple[float, float]] = deque()
        self._applied: deque[tuple[float, int]] = deque()
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
                    self._get(f"{url}/views/sold-out?limit=15"),
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
        applied_offsets = {int(p): int(o) for p, o in gmv.get("partitions", {}).items()}
        applied = sum(o + 1 for o in applied_offsets.values() if o >= 0)
        rate = self._rate(now, applied)
        lag = None
        if ends is not None:
            lag = sum(max(end - (applied_offsets.get(p, -1) + 1), 0) for p, end in ends.items())
        p50, p99 = self._latency_quantiles(now, scrape.latency_buckets)
        progress = None
        if scrape.scenario_s is not None and scrape.scenario_end_s:
            progress = min(scrape.scenario_s / scrape.scenario_end_s, 1.0)
        return {
            "ready": True,
            "t": now,
            "gmv_cents": gmv["gmv_cents"],
            "accepted": gmv["accepted"],
            "paid": gmv["paid"],
            "cancelled": gmv["cancelled"],
            "paid_to_created": gmv.get("paid_to_created"),
            "cancellation_rate": gmv.get("cancellation_rate"),
            "by_country": _top(gmv.get("by_country", {})),
            "by_category": _top(gmv.get("by_category", {})),
            "applied": applied,
            "rate_per_s": rate,
            "history": [[round(t - now, 1), round(r, 1)] for t, r in self._history],
            "faults": self.marks() if self.marks is not None else [],
            "top_skus": top.get("top", []),
            "top_window_start_ms": top.get("window_start_ms"),
            "sold_out": sold,
            "latency_p50_ms": None if p50 is None else round(p50 * 1000, 1),
            "latency_p99_ms": None if p99 is None else round(p99 * 1000, 1),
            "lag": lag,
            "dlq": int(scrape.dlq),
            "late": int(gmv.get("late", scrape.late)),
            "scenario_s": scrape.scenario_s,
            "scenario_end_s": scrape.scenario_end_s,
            "progress": progress,
            "workers_up": workers_up,
            "workers": len(self.worker_urls),
        }

    def _rate(self, now: float, applied: int) -> float:
        """Messages applied per second since the previous poll; kept in the history."""
        samples = self._applied
        samples.append((now, applied))
        while len(samples) > 2:
            samples.popleft()
        rate = 0.0
        if len(samples) == 2:
            (t0, a0), (t1, a1) = samples
            rate = max(a1 - a0, 0) / max(t1 - t0, 1e-6)
            self._history.append((now, rate))
        while self._history and now - self._history[0][0] > HISTORY_S:
            self._history.popleft()
        return rate

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


def _top(by: Mapping[str, int], n: int = 8) -> list[list[Any]]:
    """The n largest entries, as [name, cents] pairs."""
    return [[k, v] for k, v in sorted(by.items(), key=lambda kv: -kv[1])[:n]]
