"""`flashsale soak`: a long run at a steady rate that watches for leaks and a worker falling
behind, then verifies.

Everything of a demo runs (broker, one worker, the producer in this process) plus a checkout
gateway in its own process, fed a few checkouts a second. Every `sample_s` seconds the soak
samples the resident memory (RSS) of the broker, the worker, the gateway and this process
(the producer), the worker's consumer lag (end offsets of `orders` minus what it applied) and
its end-to-end latency p50/p99 over the last seconds (the live dashboard's own reading). At
the end it drains, verifies, writes `soak.json` (samples and verdict) and `soak.png`, and
fails (exit 1) when a process's memory grew past the bound after the warm-up, when the lag
kept rising, or when the run does not reconcile.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
import psutil
import yaml
from rich.live import Live
from rich.table import Table
from rich.text import Text

from flashsale.brokers.local import broker_for, describe_broker
from flashsale.processes import free_port
from flashsale.scenario import Scenario
from flashsale.settings import Settings
from orchestration.console import console, print_faults, print_verdict
from orchestration.faults import FaultRunner
from orchestration.processes import GatewayProcess, prepare_run
from producers.generator import Generator
from producers.pacing import produce_scenario
from producers.sinks.kafka import OrderEmitter
from streams.process import WorkerProcess
from verify.live import verify_live

__all__ = ["SoakSample", "judge", "run_soak"]

#: The first part of the run is warm-up: memory is compared from its end on.
WARMUP_SHARE: Final = 0.2
#: Lag below this many messages is never "rising" (a fetch or two of work in hand)...
LAG_FLOOR: Final = 1_000
#: ... nor below this many seconds of the worker's own rate: a backlog it clears in a few
#: seconds is a busy moment of the machine, not a worker falling behind, at any scale.
LAG_FLOOR_S: Final = 5.0
#: Processes sampled, in the order plots and tables show them.
PROCESSES: Final = ("broker", "worker", "gateway", "producer")
#: Judged for leaks. The embedded broker stores every message in memory (Tansu's memory
#: storage), so its RSS grows with the data by design: reported and plotted, not judged.
JUDGED: Final = ("worker", "gateway", "producer")


@dataclass
class SoakSample:
    """One reading of the run."""

    t_s: float
    rss_mb: dict[str, float | None] = field(default_factory=dict)
    lag: int | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    rate_per_s: float | None = None


def _rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        return float(psutil.Process(pid).memory_info().rss) / 2**20
    except psutil.Error:
        return None


def judge(samples: list[SoakSample], max_growth_mb: float) -> list[str]:
    """What went wrong, one line each (empty: the soak passed).

    Memory: each process's median RSS over the last three samples against its median over
    the three samples after the warm-up (the first `WARMUP_SHARE` of the run); growth beyond
    `max_growth_mb` fails. Lag: after the warm-up, the lag "kept rising" when the smallest
    lag of the last third is above the largest of the first third and above the floor (the
    larger of `LAG_FLOOR` messages and `LAG_FLOOR_S` seconds of the worker's median rate):
    the worker never caught up again.
    """
    problems: list[str] = []
    if len(samples) < 6:
        return [f"only {len(samples)} samples: run longer than a few sample intervals"]
    end_t = samples[-1].t_s
    settled = [s for s in samples if s.t_s >= WARMUP_SHARE * end_t]
    if len(settled) < 6:
        settled = samples[len(samples) // 5 :]
    for name in JUDGED:
        values = [s.rss_mb.get(name) for s in settled]
        known = [v for v in values if v is not None]
        if len(known) < 6:
            continue
        base = statistics.median(known[:3])
        end = statistics.median(known[-3:])
        if end - base > max_growth_mb:
            problems.append(
                f"{name} memory grew {end - base:,.0f} MB after the warm-up "
                f"({base:,.0f} → {end:,.0f} MB), past the bound of {max_growth_mb:,.0f} MB"
            )
    lags = [s.lag for s in settled if s.lag is not None]
    rates = [s.rate_per_s for s in settled if s.rate_per_s]
    floor = max(LAG_FLOOR, LAG_FLOOR_S * statistics.median(rates)) if rates else LAG_FLOOR
    if len(lags) >= 6:
        third = len(lags) // 3
        first, last = lags[:third], lags[-third:]
        if min(last) > floor and min(last) > max(first):
            problems.append(
                f"consumer lag kept rising: {max(first):,} at most in the first third after "
                f"the warm-up, {min(last):,} at least in the last third"
            )
    return problems


async def _checkouts(url: str, skus: list[str], per_s: float, stop: asyncio.Event) -> int:
    """Post checkouts to the gateway at `per_s` until `stop`; how many it accepted."""
    rng = random.Random(7)
    accepted = 0
    buyer = {"province": "Zhejiang", "channel": "app", "payment": "alipay"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while not stop.is_set():
            lines = [
                {"sku": rng.choice(skus), "quantity": rng.randint(1, 3)}
                for _ in range(rng.randint(1, 3))
            ]
            try:
                async with session.post(
                    f"{url}/orders", json={"lines": lines, "buyer": buyer}
                ) as r:
                    accepted += r.status == 202
            except (aiohttp.ClientError, TimeoutError):
                pass  # the gateway's own counters and the verdict tell the story
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1 / per_s)
    return accepted


async def _soak(
    settings: Settings,
    scenario: Scenario,
    duration_s: float,
    sample_s: float,
    pids: dict[str, int | None],
    worker: WorkerProcess,
    gateway_url: str,
    checkouts_per_s: float,
    runner: FaultRunner,
) -> tuple[list[SoakSample], int]:
    from dashboards.live.source import DashboardSource

    # The scenario starts now: the gateway stamps checkouts with the wall clock, and the
    # producer's orders must share that event-time line, or every order after the first
    # checkout would land behind the watermark as late.
    scenario = scenario.model_copy(update={"start": datetime.now(UTC)})
    generator = Generator(scenario)
    skus = [s.sku for s in generator.catalog.skus]
    source = DashboardSource([worker.url], settings.bootstrap_servers, settings.topic_orders)
    emitter = OrderEmitter(settings)
    await emitter.start()
    stop_checkouts = asyncio.Event()
    samples: list[SoakSample] = []
    started = time.monotonic()
    await source.start()  # polls the worker and the broker once a second
    runner.sent = lambda: emitter.stats.orders_sent
    faulting = observing = None
    try:
        produce = asyncio.create_task(
            produce_scenario(
                emitter,
                generator,
                duration_s,
                None,
                start_at=started,
                gate=runner.producer_gate if runner.faults else None,
            )
        )
        if runner.faults:
            faulting = asyncio.create_task(runner.run(started))
            observing = asyncio.create_task(_observe(runner, source, emitter))
        posting = asyncio.create_task(
            _checkouts(gateway_url, skus, checkouts_per_s, stop_checkouts)
        )
        with Live(console=console, refresh_per_second=2) as live:
            while True:
                t = time.monotonic() - started
                snap = source.snapshot  # a failed poll leaves gaps (None), not the end
                sample = SoakSample(
                    t_s=round(t, 2),
                    rss_mb={name: _rss_mb(pid) for name, pid in pids.items()},
                    lag=snap.get("lag"),
                    p50_ms=snap.get("latency_p50_ms"),
                    p99_ms=snap.get("latency_p99_ms"),
                    rate_per_s=snap.get("rate_per_s"),
                )
                samples.append(sample)
                live.update(_status(sample, duration_s))
                if produce.done():
                    break
                await asyncio.sleep(max(0.0, sample_s - (time.monotonic() - started - t)))
        await produce  # raises what the producer raised
        stop_checkouts.set()
        accepted = await posting
    finally:
        for task in (faulting, observing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # Whatever the timeline still holds down comes back: the run drains.
        await runner.undo_all()
        stop_checkouts.set()
        await emitter.stop()
        await source.stop()
    return samples, accepted


async def _observe(runner: FaultRunner, source: Any, emitter: OrderEmitter) -> None:
    """Feed the fault runner the lag, the p99 and the producer's lateness twice a second."""
    while True:
        snap = source.snapshot
        behind = runner.behind(emitter.stats.scenario_s)
        runner.observe(snap.get("lag"), snap.get("latency_p99_ms"), behind)
        await asyncio.sleep(0.5)


def _status(sample: SoakSample, duration_s: float) -> Text:
    rss = " ".join(f"{name} {mb:,.0f}" for name, mb in sample.rss_mb.items() if mb is not None)
    lag = "—" if sample.lag is None else f"{sample.lag:,}"
    p99 = "—" if sample.p99_ms is None else f"{sample.p99_ms:,.0f} ms"
    return Text(
        f"soak {sample.t_s / 60:4.1f}/{duration_s / 60:.1f} min · RSS MB {rss} · "
        f"lag {lag} · p99 {p99}"
    )


def run_soak(
    settings: Settings,
    scenario: Scenario,
    minutes: float,
    out: Path,
    max_growth_mb: float,
    sample_s: float,
    checkouts_per_s: float,
) -> int:
    """`flashsale soak`: 0 when memory stayed bounded, lag did not keep rising and the run
    reconciled; 1 otherwise."""
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="flashsale-soak-"))
    duration_s = minutes * 60
    with broker_for(settings, announce=False) as (bootstrap, broker):
        console.print(f"broker: {bootstrap} ({describe_broker(broker)})")
        run_settings = prepare_run(settings, bootstrap, scenario)
        worker = WorkerProcess(
            run_settings,
            free_port(settings.web_host, settings.web_port),
            log_path=workdir / "worker.log",
        )
        scenario_file = workdir / "scenario.yaml"
        scenario_file.write_text(yaml.safe_dump(scenario.model_dump(mode="json", by_alias=True)))
        gateway = None
        try:
            worker.start()
            with console.status("waiting for the worker to join the consumer group..."):
                worker.wait_ready()
            port = free_port(settings.web_host, settings.gateway_port)
            gateway = GatewayProcess(
                bootstrap,
                worker.url,
                scenario_file,
                settings.web_host,
                port,
                {**os.environ, **run_settings.to_env()},
                workdir,
                "--no-restock",
            )
            gateway.start()
            runner = FaultRunner(
                scenario,
                run_settings,
                cluster=broker,
                workers=[worker],
                gateway=gateway,
                say=console.print,
            )
            gateway_url = f"http://{settings.web_host}:{port}"
            console.print(
                f"soak: {scenario.name} for {minutes:g} min, a sample every {sample_s:g} s; "
                f"worker {worker.url}, gateway {gateway_url}; logs in {workdir}"
            )
            pids = {
                "broker": broker.pid if broker else None,
                "worker": worker.proc.pid if worker.proc else None,
                "gateway": gateway.pid,
                "producer": os.getpid(),
            }
            samples, accepted = asyncio.run(
                _soak(
                    run_settings,
                    scenario,
                    duration_s,
                    sample_s,
                    pids,
                    worker,
                    gateway_url,
                    checkouts_per_s,
                    runner,
                )
            )
            with console.status("waiting for the worker to apply every order..."):
                worker.wait_drained(timeout_s=600)
            result = asyncio.run(verify_live(run_settings, bootstrap))
        except (RuntimeError, TimeoutError) as exc:
            console.print(f"[red]soak stopped: {exc}; logs in {workdir}[/red]")
            return 1
        finally:
            if gateway is not None:
                gateway.stop()
            worker.stop()
    problems = judge(samples, max_growth_mb)
    if not result.reconciled:
        problems.append("the run did not reconcile: " + "; ".join(result.differences[:3]))
    from recordings.plots import plot_soak

    plot = plot_soak(samples, max_growth_mb, out / "soak.png")
    fault_log = runner.log()
    doc = {
        "scenario": scenario.name,
        "minutes": minutes,
        "sample_s": sample_s,
        "max_growth_mb": max_growth_mb,
        "checkouts_accepted": accepted,
        "passed": not problems,
        "problems": problems,
        "summary": result.summary | ({"faults": fault_log} if runner.faults else {}),
        "samples": [asdict(s) for s in samples],
    }
    (out / "soak.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    print_verdict(result)
    if runner.faults:
        print_faults(fault_log)
    console.print(_table(samples))
    console.print(f"soak: {plot} and {out / 'soak.json'}; {accepted:,} checkouts accepted")
    if problems:
        for line in problems:
            console.print(f"[red]soak failed: {line}[/red]")
        return 1
    console.print(
        f"[green]soak passed: memory within {max_growth_mb:,.0f} MB of its level after the "
        "warm-up, lag not rising, reconciled[/green]"
    )
    return 0


def _table(samples: list[SoakSample]) -> Table:
    """RSS after the warm-up and at the end, and the lag and p99 seen, per process."""
    table = Table(title="soak: resident memory (MB)", title_justify="left")
    for col in ("process", "after warm-up", "end", "peak"):
        table.add_column(col, justify="left" if col == "process" else "right")
    end_t = samples[-1].t_s if samples else 0.0
    settled = [s for s in samples if s.t_s >= WARMUP_SHARE * end_t] or samples
    for name in PROCESSES:
        known = [v for s in settled if (v := s.rss_mb.get(name)) is not None]
        if not known:
            table.add_row(name, "—", "—", "—")
            continue
        table.add_row(name, f"{known[0]:,.0f}", f"{known[-1]:,.0f}", f"{max(known):,.0f}")
    return table
