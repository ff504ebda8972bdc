"""`flashsale produce --workers N`: the scenario split across N producer processes.

Worker `w` emits the orders whose sequence number is `w` modulo N (with all their lifecycle
events and retries), paced on one shared start time, so the N streams together are exactly
the one-process stream at the same rate. Restocks are sent once, by the parent, before the
workers start. Progress flows back through shared counters; Ctrl-C or the parent's death
stops every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.sharedctypes import SynchronizedArray
from pathlib import Path
from typing import Any

from flashsale.scenario import Scenario
from flashsale.settings import Settings
from producers.generator import Generator
from producers.pacing import produce_scenario, send_restocks
from producers.sinks import open_sink
from producers.sinks.base import ProduceStats

__all__ = ["ParallelRun", "part_path"]

# Per worker in the shared array: sent, acked, errors, scenario ms, behind ms, done.
_FIELDS = 6


def part_path(path: Path, worker: int) -> Path:
    """The file worker `worker` of a split JSON-lines run writes."""
    return path.with_name(f"{path.name}.part{worker}")


@dataclass(slots=True)
class _Job:
    settings_env: dict[str, str]
    scenario: Scenario
    worker: int
    workers: int
    duration_s: float | None
    until: tuple[float, int, int, int, int] | None
    max_events: int | None
    sink: str
    client: str
    start_at: float


def _child(job: _Job, shared: SynchronizedArray[Any]) -> None:
    """One producer process: its share of the stream, counters published every block."""
    import os

    from flashsale.processes import die_with_parent

    die_with_parent()
    # The parent handles Ctrl-C and tells us through SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    os.environ.update(job.settings_env)
    settings = Settings()
    generator = Generator(job.scenario, worker=job.worker, workers=job.workers)
    sink_spec = job.sink
    if sink_spec.startswith("jsonl:"):
        sink_spec = f"jsonl:{part_path(Path(sink_spec.removeprefix('jsonl:')), job.worker)}"
    base = job.worker * _FIELDS
    stats = ProduceStats()

    def publish() -> bool:
        with shared.get_lock():
            shared[base] = stats.sent
            shared[base + 1] = stats.acked
            shared[base + 2] = stats.errors
            shared[base + 3] = int(stats.scenario_s * 1000)
            shared[base + 4] = int(stats.behind_s * 1000)
        return stop

    async def run() -> None:
        nonlocal stats
        # aiokafka's producer must be created inside the running loop.
        sink = open_sink(sink_spec, job.client, settings)
        stats = sink.stats
        await sink.start()
        try:
            await produce_scenario(
                sink,
                generator,
                job.duration_s,
                job.max_events,
                publish,
                until=job.until,
                restocks=False,
                start_at=job.start_at,
                warn=lambda line: print(f"producer {job.worker}: {line}", file=sys.stderr),
            )
        finally:
            await sink.stop()
            publish()

    try:
        asyncio.run(run())
    finally:
        with shared.get_lock():
            shared[base + 5] = 1


class ParallelRun:
    """N producer processes for one scenario; `run` blocks and reports progress."""

    def __init__(
        self,
        settings: Settings,
        scenario: Scenario,
        workers: int,
        duration_s: float | None,
        max_events: int | None,
        sink: str,
        client: str,
    ) -> None:
        self.settings = settings
        self.scenario = scenario
        self.workers = workers
        self.duration_s = duration_s
        self.max_events = max_events
        self.sink = sink
        self.client = client
        self.ctx = mp.get_context("spawn")
        self.shared: SynchronizedArray[Any] = self.ctx.Array("q", workers * _FIELDS)
        self.procs: list[Any] = []

    def totals(self) -> ProduceStats:
        """The workers' counters summed (scenario time and lag: the slowest worker's)."""
        st = ProduceStats()
        with self.shared.get_lock():
            values = [int(v) for v in self.shared[:]]
        rows = [values[i * _FIELDS : (i + 1) * _FIELDS] for i in range(self.workers)]
        st.sent = sum(r[0] for r in rows)
        st.orders_sent = st.sent
        st.acked = sum(r[1] for r in rows)
        st.errors = sum(r[2] for r in rows)
        st.scenario_s = min(r[3] for r in rows) / 1000
        st.behind_s = max(r[4] for r in rows) / 1000
        return st

    def done(self) -> bool:
        """Every worker finished."""
        with self.shared.get_lock():
            return all(self.shared[i * _FIELDS + 5] for i in range(self.workers))

    def run(self, on_tick: Callable[[ProduceStats], None], restocks: ProduceStats) -> ProduceStats:
        """Send restocks, start the workers, tick until they finish; stop them on Ctrl-C."""
        until = None
        if self.max_events is not None:
            # Every worker stops at the key of the stream's N-th event: N in all, exactly.
            until = Generator(self.scenario).cutoff(self.max_events, self.duration_s)
        asyncio.run(self._restock(restocks))
        start_at = time.monotonic() + 1.0  # time for the processes to import and connect
        for w in range(self.workers):
            job = _Job(
                settings_env=self.settings.to_env(),
                scenario=self.scenario,
                worker=w,
                workers=self.workers,
                duration_s=self.duration_s,
                until=until,
                max_events=None,
                sink=self.sink,
                client=self.client,
                start_at=start_at,
            )
            proc = self.ctx.Process(target=_child, args=(job, self.shared), daemon=True)
            proc.start()
            self.procs.append(proc)
        try:
            while not self.done():
                time.sleep(0.25)
                on_tick(self.totals())
                if any(p.exitcode not in (None, 0) for p in self.procs):
                    raise RuntimeError("a producer process failed; see its output above")
        finally:
            self.stop()
        if self.sink.startswith("jsonl:"):
            self._join_parts(Path(self.sink.removeprefix("jsonl:")))
        return self.totals()

    async def _restock(self, stats: ProduceStats) -> None:
        sink = open_sink(self.sink, self.client, self.settings)
        await sink.start()
        try:
            await send_restocks(sink, Generator(self.scenario))
        finally:
            await sink.stop()
        stats.sent = stats.restocks_sent = sink.stats.sent
        stats.acked = sink.stats.acked

    def _join_parts(self, path: Path) -> None:
        """Restocks first, then each worker's lines, in worker order."""
        with path.open("ab") as out:
            for w in range(self.workers):
                part = part_path(path, w)
                with part.open("rb") as src:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
                part.unlink()

    def stop(self) -> None:
        """Ask every worker to stop, then make sure it has."""
        for proc in self.procs:
            if proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()  # SIGTERM: the worker flushes and exits
        deadline = time.monotonic() + 15
        for proc in self.procs:
            proc.join(timeout=max(deadline - time.monotonic(), 0.1))
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
