"""The long-running commands: `produce` and `demo`, with live status and a summary table."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, start_http_server
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from flashsale.cli.processes import WorkerProcess, bootstrap_for, free_port, unprocessed
from flashsale.kafka import end_offsets, ensure_run_topics
from flashsale.scenario import Scenario
from flashsale.settings import Settings
from flashsale.verify import VerifyResult, verify_live
from producers.emitter import OrderEmitter, produce_scenario
from producers.generator import Generator
from producers.metrics import ProducerMetrics

__all__ = ["print_verdict", "run_demo", "run_produce"]

console = Console(highlight=False)
WORKER_READY_TIMEOUT_S = 90.0
DRAIN_STALL_TIMEOUT_S = 60.0


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
    max_orders: int | None,
    metrics_port: int,
) -> int:
    """`flashsale produce`: emit the scenario with a live status line; 0 when all acked."""
    registry = CollectorRegistry()
    metrics = ProducerMetrics(registry)
    with (
        bootstrap_for(settings) as bootstrap,
        metrics_server(registry, settings.web_host, metrics_port) as port,
    ):
        console.print(f"producer metrics: http://{settings.web_host}:{port}/metrics")
        run_settings = settings.model_copy(update={"bootstrap_servers": bootstrap})
        stats = asyncio.run(_produce(run_settings, scenario, duration_s, max_orders, metrics))
    console.print(
        f"produced {stats.orders_sent:,} orders ({stats.restocks_sent:,} restocks), "
        f"acknowledged {stats.acked:,}, failed {stats.errors:,}, "
        f"{stats.orders_sent / stats.duration_s:,.0f} orders/s"
    )
    if stats.errors:
        console.print(f"[red]last error: {stats.last_error}[/red]")
    return 0 if stats.errors == 0 else 1


async def _produce(
    settings: Settings,
    scenario: Scenario,
    duration_s: float | None,
    max_orders: int | None,
    metrics: ProducerMetrics,
) -> Any:
    await ensure_run_topics(settings, settings.bootstrap_list()[0])
    emitter = OrderEmitter(settings, metrics)
    await emitter.start()
    try:
        task = asyncio.create_task(
            produce_scenario(emitter, Generator(scenario), duration_s, max_orders)
        )
        with Live(console=console, refresh_per_second=4, transient=True) as live:
            last = (time.monotonic(), 0)
            while not task.done():
                await asyncio.wait({task}, timeout=0.5)
                now = time.monotonic()
                st = emitter.stats
                rate = (st.acked - last[1]) / max(now - last[0], 1e-6)
                last = (now, st.acked)
                live.update(
                    Text(
                        f"producing {scenario.name}: {st.orders_sent:,} orders sent, "
                        f"{st.acked:,} acked, {rate:,.0f}/s, in flight {st.in_flight:,}"
                    )
                )
        return task.result()
    finally:
        await emitter.stop()


def print_verdict(result: VerifyResult) -> None:
    """The run summary as a table, then the differences or a reconciled line."""
    s = result.summary
    table = Table(title="flashsale run summary", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", justify="right")
    for key, value in s.items():
        if key.endswith("_cents_expected") or key.endswith("_cents_streamed"):
            shown = f"{value:,} (€{value / 100:,.2f})"
        elif isinstance(value, bool):
            shown = "yes" if value else "NO"
        elif isinstance(value, int):
            shown = f"{value:,}"
        elif isinstance(value, float):
            shown = f"{value:,.2f}"
        else:
            shown = str(value)
        table.add_row(key, shown)
    console.print(table)
    if result.reconciled:
        console.print(
            "[green]reconciled: GMV, accepted, rejected and duplicates match "
            "the truth exactly; no SKU oversold[/green]"
        )
    else:
        console.print("[red]NOT reconciled:[/red]")
        for diff in result.differences:
            console.print(f"  - {diff}")


def run_demo(
    settings: Settings, scenario: Scenario, duration_s: float, summary_json: Path | None
) -> int:
    """`flashsale demo`: the whole slice end to end; 0 only when the run reconciles."""
    registry = CollectorRegistry()
    metrics = ProducerMetrics(registry)
    workdir = Path(tempfile.mkdtemp(prefix="flashsale-demo-"))
    with bootstrap_for(settings, announce=False) as bootstrap:
        embedded = not settings.bootstrap_servers
        console.print(
            f"broker: {bootstrap} ({'embedded Tansu, memory storage' if embedded else 'external'})"
        )
        run_settings = settings.model_copy(update={"bootstrap_servers": bootstrap})
        asyncio.run(ensure_run_topics(run_settings, bootstrap))
        worker = WorkerProcess(
            run_settings,
            free_port(settings.web_host, settings.web_port),
            log_path=workdir / "worker.log",
        )
        with metrics_server(registry, settings.web_host, 0) as producer_port:
            console.print(f"producer metrics: http://{settings.web_host}:{producer_port}/metrics")
            worker.start()
            try:
                result = asyncio.run(
                    _demo(run_settings, scenario, duration_s, metrics, worker, workdir)
                )
            finally:
                worker.stop()
            console.print(f"worker metrics:   {worker.url}/metrics  (stopped)")
            console.print(
                f"producer metrics: http://{settings.web_host}:{producer_port}/metrics  (stopped)"
            )
    if result is None:
        return 1
    print_verdict(result)
    if summary_json:
        summary_json.write_bytes(orjson.dumps(result.summary, option=orjson.OPT_INDENT_2))
        console.print(f"run summary: {summary_json}")
    return 0 if result.reconciled else 1


async def _demo(
    settings: Settings,
    scenario: Scenario,
    duration_s: float,
    metrics: ProducerMetrics,
    worker: WorkerProcess,
    workdir: Path,
) -> VerifyResult | None:
    bootstrap = settings.bootstrap_list()[0]
    console.print(f"worker: {worker.url}/totals and {worker.url}/metrics")
    started = time.monotonic()
    with console.status("waiting for the worker to join its consumer group..."):
        try:
            took = await asyncio.to_thread(worker.wait_ready, WORKER_READY_TIMEOUT_S)
        except (RuntimeError, TimeoutError) as exc:
            console.print(f"[red]{exc}; its log: {workdir / 'worker.log'}[/red]")
            return None
    console.print(f"worker ready in {took:.1f} s")
    emitter = OrderEmitter(settings, metrics)
    await emitter.start()
    try:
        task = asyncio.create_task(produce_scenario(emitter, Generator(scenario), duration_s, None))
        with Live(console=console, refresh_per_second=4) as live:
            last = (time.monotonic(), 0)
            stalled_since = time.monotonic()
            last_lag: int | None = None
            while True:
                await asyncio.sleep(0.5)
                totals = await asyncio.to_thread(worker.totals)
                ends = await end_offsets(bootstrap, settings.topic_orders)
                lag = unprocessed(totals, ends)
                now = time.monotonic()
                st = emitter.stats
                rate = (st.orders_sent - last[1]) / max(now - last[0], 1e-6)
                last = (now, st.orders_sent)
                phase = "producing" if not task.done() else "draining"
                live.update(
                    Text(
                        f"{phase} {scenario.name}  {now - started:5.1f}s  "
                        f"orders/s {rate:8,.0f}  sent {st.orders_sent:,}  "
                        f"GMV €{totals.get('gmv_cents', 0) / 100:,.2f}  "
                        f"sold out {totals.get('sold_out_skus', 0)}  "
                        f"lag {'?' if lag is None else f'{lag:,}'}"
                    )
                )
                if not worker.alive():
                    console.print(f"[red]worker died; log: {workdir / 'worker.log'}[/red]")
                    return None
                if task.done():
                    task.result()  # re-raise a producer failure
                    if lag == 0:
                        break
                    if lag != last_lag:
                        stalled_since = now
                    elif now - stalled_since > DRAIN_STALL_TIMEOUT_S:
                        console.print("[red]the worker stopped making progress[/red]")
                        break
                    last_lag = lag
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await emitter.stop()
    st = emitter.stats
    console.print(
        f"produced {st.orders_sent:,} orders in {st.duration_s:.1f} s; "
        f"{st.acked:,} messages acknowledged, {st.errors:,} failed"
    )
    with console.status("verifying against the truth recomputed from topic orders..."):
        return await verify_live(settings, bootstrap)
