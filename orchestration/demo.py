"""`flashsale demo`: broker, topics, workers, producer, metrics and the live dashboard; a
live status line while the scenario runs, then the drain, the verdict and a clean shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import webbrowser
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CollectorRegistry
from rich.live import Live
from rich.text import Text

from flashsale.acklog import read_ack_log
from flashsale.brokers.local import broker_for, describe_broker
from flashsale.kafka.reading import end_offsets
from flashsale.processes import free_port
from flashsale.scenario import Scenario
from flashsale.settings import Settings
from orchestration.console import console, print_faults, print_produced, print_verdict, warn
from orchestration.faults import FaultRunner
from orchestration.processes import prepare_run
from orchestration.produce import RunPace, metrics_server
from producers.generator import Generator
from producers.metrics import ProducerMetrics
from producers.pacing import produce_scenario
from producers.sinks.kafka import OrderEmitter
from recordings.format import FAULTS_FILE
from streams.process import WorkerProcess, group_totals, unprocessed, wait_group_ready
from verify.live import verify_live
from verify.reconcile import VerifyResult

if TYPE_CHECKING:
    from dashboards.live.source import DashboardSource

__all__ = ["DRAIN_STALL_TIMEOUT_S", "WORKER_READY_TIMEOUT_S", "run_demo"]

WORKER_READY_TIMEOUT_S = 90.0


DRAIN_STALL_TIMEOUT_S = 60.0


def run_demo(
    settings: Settings,
    scenario: Scenario,
    duration_s: float,
    summary_json: Path | None,
    workers: int = 1,
    open_browser: bool = False,
    record: Path | None = None,
    ack_log: Path | None = None,
) -> int:
    """`flashsale demo`: the whole slice end to end; 0 only when the run reconciles and the
    broker kept every write it acknowledged.

    With `record`, every topic of the run is captured into that run directory after the
    workers stopped and before the broker does (`flashsale record`). The producer logs
    every acknowledged write to `ack_log` (default: `acks.csv` in the demo's folder of
    worker logs), and the verdict checks each on `orders` (`verify --ack-log`)."""
    registry = CollectorRegistry()
    metrics = ProducerMetrics(registry)
    workdir = Path(tempfile.mkdtemp(prefix="flashsale-demo-"))
    acks = ack_log or workdir / "acks.csv"
    with broker_for(settings, announce=False) as (bootstrap, broker):
        console.print(f"broker: {bootstrap} ({describe_broker(broker)})")
        run_settings = prepare_run(settings, bootstrap, scenario)
        group: list[WorkerProcess] = []
        for i in range(workers):
            port = free_port(settings.web_host, settings.web_port + i)
            log = workdir / (f"worker-{i}.log" if workers > 1 else "worker.log")
            group.append(WorkerProcess(run_settings, port, log_path=log))
        runner = FaultRunner(
            scenario, run_settings, cluster=broker, workers=group, say=console.print
        )
        with metrics_server(registry, settings.web_host, 0) as producer_port:
            console.print(f"producer metrics: http://{settings.web_host}:{producer_port}/metrics")
            try:
                for worker in group:
                    worker.start()
                producer_url = f"http://{settings.web_host}:{producer_port}/metrics"
                result = asyncio.run(
                    _with_dashboard(
                        run_settings,
                        group,
                        producer_url,
                        open_browser,
                        lambda source: _demo(
                            run_settings,
                            scenario,
                            duration_s,
                            metrics,
                            group,
                            workdir,
                            runner,
                            source,
                            ack_log=acks,
                        ),
                    )
                )
            finally:
                for worker in group:
                    worker.stop()
            for worker in group:
                console.print(f"worker metrics:   {worker.url}/metrics  (stopped)")
            console.print(
                f"producer metrics: http://{settings.web_host}:{producer_port}/metrics  (stopped)"
            )
        if record is not None:
            from orchestration.recording import record_run

            record_run(bootstrap, record, run_settings, worker_settings=run_settings)
            console.print(f"run recorded: {record} (flashsale verify / replay / report {record})")
    if result is None:
        return 1
    print_verdict(result)
    if runner.faults:
        result.summary["faults"] = runner.log()
        print_faults(result.summary["faults"])
        if record is not None:
            # Beside the recorded topics: `flashsale report` marks the faults on its plots.
            (record / FAULTS_FILE).write_bytes(
                orjson.dumps(result.summary["faults"], option=orjson.OPT_INDENT_2)
            )
    if summary_json:
        summary_json.write_bytes(orjson.dumps(result.summary, option=orjson.OPT_INDENT_2))
        console.print(f"run summary: {summary_json}")
    return 0 if result.passed else 1


async def _with_dashboard(
    settings: Settings,
    group: list[WorkerProcess],
    producer_url: str,
    open_browser: bool,
    run: Callable[[DashboardSource], Coroutine[Any, Any, VerifyResult | None]],
) -> VerifyResult | None:
    """Serve the live dashboard of the demo while `run` runs (and open it when asked)."""
    from dashboards.live.server import serve
    from dashboards.live.source import DashboardSource

    source = DashboardSource(
        [w.url for w in group],
        settings.bootstrap_servers,
        settings.topic_orders,
        [producer_url],
    )
    port = free_port(settings.web_host, settings.dashboard_port)
    async with serve(source, settings.web_host, port) as url:
        console.print(f"dashboard: {url}")
        if open_browser and not webbrowser.open(url):
            console.print("no browser to open here: open the dashboard's URL yourself")
        result = await run(source)
        # The page keeps the final numbers: show the drained run before closing.
        await source.refreshed()
        return result


async def _demo(
    settings: Settings,
    scenario: Scenario,
    duration_s: float,
    metrics: ProducerMetrics,
    group: list[WorkerProcess],
    workdir: Path,
    runner: FaultRunner,
    source: DashboardSource,
    ack_log: Path,
) -> VerifyResult | None:
    bootstrap = settings.bootstrap_list()[0]
    source.scenario_start = scenario.start  # the page shows its times in the scenario's zone
    # Every server: a fault timeline may take down the first.
    servers = settings.bootstrap_servers or bootstrap
    for worker in group:
        console.print(
            f"worker: {worker.url}/views/gmv (whole run; also /views/top-skus, "
            f"/views/sold-out, /views/stock/SKU), {worker.url}/metrics"
        )
    started = time.monotonic()
    what = "the worker" if len(group) == 1 else f"the {len(group)} workers"
    with console.status(f"waiting for {what} to join the consumer group..."):
        try:
            took = await asyncio.to_thread(
                wait_group_ready, group, settings.partitions, WORKER_READY_TIMEOUT_S
            )
        except (RuntimeError, TimeoutError) as exc:
            console.print(f"[red]{exc}; logs in {workdir}[/red]")
            return None
    console.print(f"{what.removeprefix('the ')} ready in {took:.1f} s")
    emitter = OrderEmitter(settings, metrics, ack_log)
    await emitter.start()
    runner.sent = lambda: emitter.stats.orders_sent
    if runner.faults:
        source.marks = runner.marks
    faulting: asyncio.Task[None] | None = None
    try:
        t0 = time.monotonic()
        task = asyncio.create_task(
            produce_scenario(
                emitter,
                Generator(scenario),
                duration_s,
                None,
                warn=warn,
                start_at=t0,
                gate=runner.producer_gate if runner.faults else None,
            )
        )
        if runner.faults:
            faulting = asyncio.create_task(runner.run(t0))
        with Live(console=console, refresh_per_second=4) as live:
            pace = RunPace(emitter.stats, DRAIN_STALL_TIMEOUT_S)
            while True:
                await asyncio.sleep(0.5)
                totals = await asyncio.to_thread(group_totals, group)
                if runner.faults:
                    ends = await _ends_or_none(servers, settings)
                else:
                    ends = await end_offsets(bootstrap, settings.topic_orders, settings)
                lag = unprocessed(totals, ends) if ends else None
                if runner.faults:
                    runner.observe(
                        lag,
                        source.snapshot.get("latency_p99_ms"),
                        runner.behind(emitter.stats.scenario_s, not task.done()),
                    )
                st = emitter.stats
                phase = "producing" if not task.done() else "draining"
                live.update(
                    Text(
                        f"{phase} {scenario.name}  {time.monotonic() - started:5.1f}s  "
                        f"orders/s {pace.orders_per_s():8,.0f}  sent {st.orders_sent:,}  "
                        f"GMV €{totals.get('gmv_cents', 0) / 100:,.2f}  "
                        f"sold out {totals.get('sold_out_skus', 0)}  "
                        f"lag {'?' if lag is None else f'{lag:,}'}"
                    )
                )
                if any(not w.alive() and i not in runner.down_workers for i, w in enumerate(group)):
                    console.print(f"[red]a worker died; logs in {workdir}[/red]")
                    return None
                if task.done():
                    task.result()  # re-raise a producer failure
                    if faulting is not None:
                        # Whatever the timeline still holds down comes back: the run drains.
                        faulting.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await faulting
                        faulting = None
                        await runner.undo_all()
                    if lag == 0:
                        break
                    if pace.stalled(lag):
                        console.print("[red]the worker stopped making progress[/red]")
                        break
    finally:
        if faulting is not None:
            faulting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await faulting
        await runner.undo_all()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await emitter.stop()
    st = emitter.stats
    print_produced(st)
    with console.status("verifying against the truth recomputed from topic orders..."):
        acknowledged = read_ack_log(ack_log, settings.topic_orders)
        console.print(f"acknowledged writes logged in {ack_log}")
        result = await verify_live(settings, bootstrap, acknowledged)
    # Beside the verdict: whether the producer kept the scenario's schedule (`flashsale rate`
    # holds a trial to it).
    result.summary["producer"] = st.schedule()
    return result


async def _ends_or_none(bootstrap: str, settings: Settings) -> dict[int, int]:
    """The end offsets of `orders`, or {} when the brokers do not answer within 10 s (a fault
    timeline took a leader down). In a task of its own: aiokafka may end a consumer it stops
    mid-retry with a CancelledError, which must not read as this run being cancelled."""
    probe = asyncio.create_task(end_offsets(bootstrap, settings.topic_orders, settings))
    done, _ = await asyncio.wait({probe}, timeout=10.0)
    if not done:
        probe.cancel()
        return {}
    if probe.cancelled() or probe.exception() is not None:
        return {}
    return probe.result()
