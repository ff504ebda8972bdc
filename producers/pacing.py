"""A scenario's run on the wall clock: the catalog's restocks, then each 10 ms block of events
at its scheduled time (or as fast as a file takes them), saying so whenever it falls
behind the schedule.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

import numpy as np

from producers.generator import GRID_S, Generator
from producers.resume import Resume
from producers.sinks.base import ProduceStats, Sink

__all__ = ["BEHIND_WARN_EVERY_S", "BEHIND_WARN_S", "produce_scenario", "send_restocks"]

#: Behind schedule by more than this many seconds: the run says so.
BEHIND_WARN_S = 1.0


#: ... and repeats it at most this often.
BEHIND_WARN_EVERY_S = 10.0


async def send_restocks(sink: Sink, generator: Generator, resume: Resume | None = None) -> None:
    """The catalog's restocks, carrying the run's identity so `verify` can name it; stream
    positions -R..-1 (on a resumed run, only those not on the broker yet)."""
    scenario = generator.scenario
    identity = [
        ("flashsale.scenario", scenario.name.encode()),
        ("flashsale.seed", str(scenario.seed).encode()),
    ]
    restocks = generator.restocks()
    seqs = np.arange(-len(restocks), 0, dtype=np.int64)
    if resume is not None:
        keep = resume.unsent(np.arange(len(restocks)), seqs)
        restocks = [r for r, k in zip(restocks, keep.tolist(), strict=True) if k]
        seqs = seqs[keep]
    if restocks:
        await sink.send(restocks, headers=identity, seqs=seqs.tolist())
    await sink.flush()


async def produce_scenario(
    sink: Sink,
    generator: Generator,
    duration_s: float | None,
    max_events: int | None,
    should_stop: Callable[[], bool] = lambda: False,
    *,
    until: tuple[float, int, int, int, int] | None = None,
    restocks: bool = True,
    paced: bool | None = None,
    start_at: float | None = None,
    warn: Callable[[str], None] | None = None,
    resume_from: Mapping[int, int] | None = None,
    gate: Callable[[], Awaitable[None]] | None = None,
) -> ProduceStats:
    """Restock the catalog, then emit the scenario's events; flush at the end.

    Paced (the default for Kafka sinks): each 10 ms block leaves at its scheduled wall time,
    counted from `start_at` (a `time.monotonic()` value shared by split producers). Unpaced
    (the default for files): as fast as the sink takes it, on the scenario clock. A sink whose
    `pack` > 0 gets packed messages of up to that many events of one partition (restocks
    stay single). `resume_from` (see `acknowledged_positions`): skip what the broker holds
    already and go on from there, the rest of the schedule shifted to start now. `gate` is
    awaited before each block: a stalled producer (a fault timeline's `stall producer`) waits
    there, then sends what fell due meanwhile as fast as the sink takes it.
    """
    pack = sink.pack
    resume = None
    if resume_from is not None:
        resume = Resume(generator, await sink.partitions(), resume_from, sink.stats)
    if restocks:
        await send_restocks(sink, generator, resume)
    shifted = False
    partitions = await sink.partitions() if pack else 0
    paced = sink.wall_clock if paced is None else paced
    st = sink.stats
    metrics = sink.metrics
    compression = generator.scenario.scale.compression
    start = time.monotonic() if start_at is None else start_at
    last_warned = -BEHIND_WARN_EVERY_S
    if metrics:
        metrics.describe_run(generator.scenario)
        horizon = generator.scenario.curve.horizon_s
        end = horizon if duration_s is None else min(duration_s * compression, horizon)
        metrics.scenario_end_seconds.set(end)
    blocks = generator.blocks(duration_s, max_events, GRID_S if paced else 0.1, until)
    for block in blocks:
        if should_stop():
            break
        if gate is not None:
            await gate()
        if resume is not None and len(block):
            if resume.done_after(int(block.index[0])):
                resume = None
            else:
                block = block.select(resume.unsent(block.rows["sku"], block.index))
        if not shifted and st.resumed_skipped:
            if not len(block):
                # Still inside what the broker holds: no waiting for the schedule.
                st.scenario_s = block.end_s * compression
                continue
            # The first block with something left to send leaves now, the rest of the
            # schedule after it.
            start = time.monotonic() - block.start_s
            shifted = True
        if paced:
            delay = start + block.start_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                behind = 0.0
            else:
                behind = -delay
                await asyncio.sleep(0)  # still let acknowledgements and status run
            st.behind_s = behind
            st.max_behind_s = max(st.max_behind_s, behind)
            if metrics:
                metrics.behind.set(behind)
            now = time.monotonic()
            if behind > BEHIND_WARN_S and warn and now - last_warned >= BEHIND_WARN_EVERY_S:
                last_warned = now
                warn(
                    f"producer is {behind:.1f} s behind schedule at scenario second "
                    f"{block.start_s * compression:,.0f}: the client or broker cannot keep "
                    "up with this rate"
                )
        if len(block):
            emit_ns = time.time_ns() if sink.wall_clock else None
            if pack:
                await sink.send_packed(block.packed_with_seq(pack, partitions, emit_ns))
            else:
                await sink.send_raw(block.keys, block.values(emit_ns), seqs=block.index.tolist())
        st.scenario_s = block.end_s * compression
        if metrics:
            metrics.scenario_seconds.set(st.scenario_s)
    await sink.flush()
    if metrics:
        metrics.behind.set(0)
    st.behind_s = 0.0
    return st
