"""`flashsale produce`: the scenario emitted with a progress bar, in one process or split over
several, with the producer's metrics served while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from flashsale.brokers.local import bootstrap_for, settings_on
from flashsale.kafka.admin import ensure_run_topics
from flashsale.processes import free_port
from flashsale.scenario import Scenario
from flashsale.settings import Settings
from orchestration.console import console, warn
from producers.generator import Generator
from producers.metrics import ProducerMetrics
from producers.pacing import produce_scenario
from producers.parallel import ParallelRun
from producers.resume import acknowledged_positions
from producers.sinks import open_sink
from producers.sinks.base import ProduceStats

__all__ = ["RunPace", "metrics_server", "run_produce"]


@dataclass
class RunPace:
    """What the live status line of a run (the demo's, the system demo's) shows and watches:
    orders sent per second since the last look, and a drain whose lag has not moved for
    `stall_s`."""

    stats: ProduceStats
    stall_s: float
    _looked: tuple[float, int] = field(default_factory=lambda: (time.monotonic(), 0))
    _lag: int | None = None
    _moved: float = field(default_factory=time.monotonic)

    def orders_per_s(self) -> float:
        """Orders sent per second since the last call."""
        now, sent = time.monotonic(), self.stats.orders_sent
        rate = (sent - self._looked[1]) / max(now - self._looked[0], 1e-6)
        self._looked = (now, sent)
        return rate

    def stalled(self, lag: int | None) -> bool:
        """True once `lag` has stayed the same for longer than `stall_s`."""
        now = time.monotonic()
        if lag != self._lag:
            self._lag, self._moved = lag, now
            return False
        return now - self._moved > self.stall_s


@contextlib.contextmanager
def metrics_server(registry: CollectorRegistry, host: str, port: int) -> Iterator[int]:
    """Serve `registry` on http://host:port/metrics for the block; yield the port."""
    port = free_port(host, port or None)
    server, thread = start_http_server(port, addr=host, registry=registry)
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def run_produce(
    settings: Settings,
    scenario: Scenario,
    duration_s: float | None,
    max_events: int | None,
    metrics_port: int,
    workers: int = 1,
    sink: str = "kafka",
    client: str = "aiokafka",
    resume: bool = False,
    ack_log: Path | None = None,
) -> int:
    """`flashsale produce`: emit the scenario with a progress bar; 0 when all was delivered.
    `ack_log`: log every acknowledged write there (one producer process only)."""
    registry = CollectorRegistry()
    metrics = ProducerMetrics(registry)
    to_kafka = sink == "kafka"
    resume_from: dict[int, int] | None = None
    with contextlib.ExitStack() as stack:
        run_settings = settings
        if to_kafka:
            bootstrap = stack.enter_context(bootstrap_for(settings))
            run_settings = asyncio.run(
                ensure_run_topics(settings_on(settings, bootstrap), bootstrap)
            )
            if resume:
                # A ResumeError reaches the CLI: one line, exit 2.
                resume_from = asyncio.run(acknowledged_positions(run_settings))
                console.print(
                    "resuming after the acknowledged positions "
                    + (
                        ", ".join(f"[{p}] {s:,}" for p, s in sorted(resume_from.items()))
                        or "(none)"
                    )
                )
            port = stack.enter_context(metrics_server(registry, settings.web_host, metrics_port))
            console.print(f"producer metrics: http://{settings.web_host}:{port}/metrics")
        progress = _progress_bar()
        stack.enter_context(progress)
        wall_total = _wall_total(scenario, duration_s)
        task = progress.add_task(
            f"{scenario.name} → {sink if to_kafka else sink.removeprefix('jsonl:')}",
            total=wall_total * scenario.scale.compression,
            sent="0",
            rate="",
        )
        ticker = _Ticker(progress, task, metrics if workers > 1 else None)
        if workers > 1:
            # Split producers have no metrics of their own: the ticker counts what they
            # send into this registry, and the run is named here.
            metrics.describe_run(scenario)
            restocks = ProduceStats()
            stats = ParallelRun(
                run_settings, scenario, workers, duration_s, max_events, sink, client
            ).run(ticker.tick, restocks)
            stats.restocks_sent = restocks.sent
        else:
            stats = asyncio.run(
                _produce_here(
                    run_settings,
                    scenario,
                    duration_s,
                    max_events,
                    metrics,
                    sink,
                    client,
                    ticker,
                    resume_from,
                    ack_log,
                )
            )
        ticker.tick(stats, final=True)
    kind = "events" if to_kafka else "lines"
    console.print(
        f"produced {stats.orders_sent:,} order events ({stats.restocks_sent:,} restocks) "
        f"{'to ' + sink.removeprefix('jsonl:') if not to_kafka else ''}; "
        f"acknowledged {stats.acked:,} {kind}, failed {stats.errors:,}; "
        f"{stats.orders_sent / max(stats.duration_s, 1e-9):,.0f} events/s"
    )
    if stats.resumed_skipped:
        console.print(f"resumed: {stats.resumed_skipped:,} events were on the broker already")
    if stats.max_behind_s > 1.0:
        console.print(
            f"[yellow]the producer fell up to {stats.max_behind_s:.1f} s behind schedule[/yellow]"
        )
    if ack_log is not None:
        console.print(f"acknowledged writes logged in {ack_log}")
    if stats.errors:
        console.print(f"[red]last error: {stats.last_error}[/red]")
    return 0 if stats.errors == 0 else 1


def _wall_total(scenario: Scenario, duration_s: float | None) -> float:
    horizon = scenario.curve.horizon_s / scenario.scale.compression
    return horizon if duration_s is None else min(duration_s, horizon)


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("scenario {task.completed:,.0f}/{task.total:,.0f} s"),
        TextColumn("sent {task.fields[sent]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


class _Ticker:
    """Turns producer counters into progress-bar updates (and, for split runs, metrics)."""

    def __init__(self, progress: Progress, task: TaskID, metrics: ProducerMetrics | None) -> None:
        self.progress = progress
        self.task = task
        self.metrics = metrics
        self.last = (time.monotonic(), 0)
        self.counted = ProduceStats()

    def tick(self, st: ProduceStats, final: bool = False) -> None:
        now = time.monotonic()
        rate = (st.sent - self.last[1]) / max(now - self.last[0], 1e-6)
        self.last = (now, st.sent)
        behind = f"  [yellow]behind {st.behind_s:.1f} s[/yellow]" if st.behind_s > 1.0 else ""
        self.progress.update(
            self.task,
            completed=st.scenario_s,
            sent=f"{st.sent:,}",
            rate=("" if final else f"{rate:,.0f}/s") + behind,
        )
        m = self.metrics
        if m is not None:
            c = self.counted
            if st.sent > c.sent:
                m.sent.inc(st.sent - c.sent)
            if st.acked > c.acked:
                m.acked.inc(st.acked - c.acked)
            if st.errors > c.errors:
                m.errors.inc(st.errors - c.errors)
            m.in_flight.set(st.in_flight)
            m.behind.set(st.behind_s)
            self.counted = ProduceStats(sent=st.sent, acked=st.acked, errors=st.errors)


async def _produce_here(
    settings: Settings,
    scenario: Scenario,
    duration_s: float | None,
    max_events: int | None,
    metrics: ProducerMetrics,
    sink_spec: str,
    client: str,
    ticker: _Ticker,
    resume_from: dict[int, int] | None = None,
    ack_log: Path | None = None,
) -> ProduceStats:
    sink = open_sink(
        sink_spec, client, settings, metrics if sink_spec == "kafka" else None, ack_log
    )
    await sink.start()
    try:
        task = asyncio.create_task(
            produce_scenario(
                sink,
                Generator(scenario),
                duration_s,
                max_events,
                warn=warn,
                resume_from=resume_from,
            )
        )
        while not task.done():
            await asyncio.wait({task}, timeout=0.25)
            ticker.tick(sink.stats)
        return task.result()
    finally:
        await sink.stop()
