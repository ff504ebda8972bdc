"""The long-running commands: `produce` and `demo`, with live status and a summary table."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
import webbrowser
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import orjson
import yaml
from prometheus_client import CollectorRegistry, start_http_server
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from flashsale.broker import die_with_parent, stop_process
from flashsale.cli.processes import (
    WorkerProcess,
    bootstrap_for,
    broker_for,
    describe_broker,
    free_port,
    group_totals,
    prepare_run,
    settings_on,
    start_gateway,
    unprocessed,
)
from flashsale.kafka import end_offsets, ensure_run_topics
from flashsale.scenario import Scenario
from flashsale.settings import Settings
from flashsale.verify import VerifyResult, verify_live
from producers.emitter import (
    OrderEmitter,
    ProduceStats,
    acknowledged_positions,
    open_sink,
    produce_scenario,
)
from producers.generator import Generator
from producers.metrics import ProducerMetrics
from producers.parallel import ParallelRun

__all__ = [
    "print_verdict",
    "run_dashboard",
    "run_demo",
    "run_gateway",
    "run_loadtest",
    "run_produce",
]

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
    max_events: int | None,
    metrics_port: int,
    workers: int = 1,
    sink: str = "kafka",
    client: str = "aiokafka",
    resume: bool = False,
) -> int:
    """`flashsale produce`: emit the scenario with a progress bar; 0 when all was delivered."""
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
) -> ProduceStats:
    sink = open_sink(sink_spec, client, settings, metrics if sink_spec == "kafka" else None)
    await sink.start()
    try:
        task = asyncio.create_task(
            produce_scenario(
                sink,
                Generator(scenario),
                duration_s,
                max_events,
                warn=_warn,
                resume_from=resume_from,
            )
        )
        while not task.done():
            await asyncio.wait({task}, timeout=0.25)
            ticker.tick(sink.stats)
        return task.result()
    finally:
        await sink.stop()


def run_dashboard(
    worker_urls: list[str],
    bootstrap: str | None,
    topic_orders: str,
    producer_metrics: list[str],
    host: str,
    port: int,
) -> int:
    """`flashsale dashboard`: serve until Ctrl-C or SIGTERM."""
    from flashsale.dashboard.server import serve
    from flashsale.dashboard.source import DashboardSource

    async def main() -> None:
        source = DashboardSource(worker_urls, bootstrap, topic_orders, producer_metrics)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            async with serve(source, host, port) as url:
                console.print(f"dashboard: {url} (Ctrl-C to stop)")
                await stop.wait()
        except OSError as exc:
            console.print(f"[red]dashboard: cannot listen on {host}:{port}: {exc.strerror}[/red]")
            raise SystemExit(2) from None

    asyncio.run(main())
    return 0


def run_gateway(
    settings: Settings,
    scenario: Scenario,
    worker_url: str | None,
    host: str,
    port: int,
    restock: bool,
) -> int:
    """`flashsale gateway`: serve checkouts until Ctrl-C or SIGTERM."""
    from aiohttp import web

    from producers.emitter import send_restocks
    from producers.gateway import GatewayMetrics, make_gateway

    with bootstrap_for(settings) as bootstrap:
        run_settings = asyncio.run(ensure_run_topics(settings_on(settings, bootstrap), bootstrap))

        async def main() -> None:
            emitter = OrderEmitter(run_settings)
            await emitter.start()
            generator = Generator(scenario)
            if restock:
                await send_restocks(emitter, generator)
            metrics = GatewayMetrics(CollectorRegistry())
            app = make_gateway(
                generator.catalog,
                emitter,
                run_settings.max_in_flight,
                metrics,
                worker_url,
                rate_per_client=run_settings.gateway_rate_per_client,
                body_timeout_s=run_settings.gateway_request_timeout_s,
            )
            runner = web.AppRunner(
                app,
                handle_signals=False,
                shutdown_timeout=2.0,
                # From the connection (or the last answer) to a request's complete headers:
                # a client trickling them (slow-loris) is cut at this bound.
                keepalive_timeout=run_settings.gateway_request_timeout_s,
            )
            await runner.setup()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            try:
                try:
                    await web.TCPSite(runner, host, port).start()
                except OSError as exc:
                    console.print(
                        f"[red]gateway: cannot listen on {host}:{port}: {exc.strerror}[/red]"
                    )
                    raise SystemExit(2) from None
                console.print(
                    f"gateway: http://{host}:{port}/orders (POST), /openapi.json, /metrics "
                    f"— catalog of {scenario.name}, {len(generator.catalog.skus)} SKUs"
                )
                await stop.wait()
            finally:
                await runner.cleanup()
                await emitter.stop()

        asyncio.run(main())
    return 0


def run_loadtest(
    settings: Settings,
    scenario: Scenario,
    users: int,
    duration_s: float,
    shape: str,
    target: str,
    html: Path | None,
    csv: str | None,
    processes: int,
    rate: float,
) -> int:
    """`flashsale loadtest`: our stack, locust in its own process(es), then verify both."""
    from loadtests import locust_command

    workdir = Path(tempfile.mkdtemp(prefix="flashsale-loadtest-"))
    with bootstrap_for(settings) as bootstrap:
        run_settings = prepare_run(settings, bootstrap, scenario)
        worker = WorkerProcess(
            run_settings,
            free_port(settings.web_host, settings.web_port),
            log_path=workdir / "worker.log",
        )
        gateway: subprocess.Popen[bytes] | None = None
        locust: subprocess.Popen[bytes] | None = None
        scenario_file = workdir / "scenario.yaml"
        scenario_file.write_text(yaml.safe_dump(scenario.model_dump(mode="json")))
        env = {
            **os.environ,
            **run_settings.to_env(),
            "FLASHSALE_LOADTEST_SCENARIO": str(scenario_file),
            "FLASHSALE_LOADTEST_SHAPE": shape,
            "FLASHSALE_LOADTEST_USERS": str(users),
            "FLASHSALE_LOADTEST_DURATION": str(duration_s),
            "FLASHSALE_LOADTEST_RATE": str(rate),
        }
        try:
            worker.start()
            with console.status("waiting for the worker to join the consumer group..."):
                try:
                    worker.wait_ready()
                except (RuntimeError, TimeoutError) as exc:
                    raise RuntimeError(f"the worker did not start ({exc})") from None
            host = worker.url
            if target == "gateway":
                port = free_port(settings.web_host, settings.gateway_port)
                host = f"http://{settings.web_host}:{port}"
                gateway = start_gateway(
                    bootstrap, worker.url, scenario_file, settings.web_host, port, env, workdir
                )
                console.print(f"gateway: {host}/orders")
            args = locust_command(
                "--headless",
                "--host",
                host,
                "--only-summary",
                "--stop-timeout",
                "5",
            )
            if html:
                args += ["--html", str(html)]
            # Locust's CSV statistics, in the caller's place or ours: the summary reads them.
            stats_prefix = csv or str(workdir / "locust")
            args += ["--csv", stats_prefix]
            if processes > 1:
                args += ["--processes", str(processes)]
            args.append("ShopperUser" if target == "gateway" else "KafkaOrdersUser")
            console.print(f"locust: {users} users, {duration_s:g} s, shape {shape}, {target}")
            locust = subprocess.Popen(args, env=env, preexec_fn=die_with_parent())
            locust_rc = locust.wait()
            with console.status("waiting for the worker to apply every order..."):
                worker.wait_drained(timeout_s=600)
            accepted = _gateway_accepted(host) if gateway is not None else None
            result = asyncio.run(verify_live(run_settings, bootstrap))
        except (RuntimeError, TimeoutError) as exc:
            console.print(f"[red]loadtest stopped: {exc}; logs in {workdir}[/red]")
            return 1
        finally:
            for proc in (locust, gateway):
                if proc is not None:
                    stop_process(proc, 15.0)
            worker.stop()
    summary = result.summary
    table = Table(title="flashsale beside locust", show_header=False)
    sent, failed = _locust_totals(f"{stats_prefix}_stats.csv")
    rows = [
        ("locust exit code", str(locust_rc)),
        ("requests sent (locust)", f"{sent:,}"),
        ("locust failures", f"{failed:,}"),
        ("orders accepted by the gateway", "—" if accepted is None else f"{accepted:,}"),
        ("orders produced (order lines)", f"{summary['orders_produced']:,}"),
        ("orders processed", f"{summary['orders_processed']:,}"),
        ("events processed", f"{summary['events_processed']:,}"),
        ("GMV", f"€{summary['gmv_cents_streamed'] / 100:,.2f}"),
        (
            "e2e latency p50 / p99 ms",
            f"{summary['e2e_latency_p50_ms']} / {summary['e2e_latency_p99_ms']}",
        ),
        ("reconciled", "true" if result.reconciled else "false"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if not result.reconciled:
        for line in result.differences:
            console.print(f"[red]{line}[/red]")
    return 0 if locust_rc == 0 and result.reconciled else 1


def _locust_totals(stats_csv: str) -> tuple[int, int]:
    """Requests and failures of a locust run, from its `_stats.csv` (0, 0 when missing)."""
    import csv as csv_module

    try:
        with open(stats_csv, newline="") as fh:
            for row in csv_module.DictReader(fh):
                if row.get("Name") == "Aggregated":
                    return int(row["Request Count"]), int(row["Failure Count"])
    except (OSError, KeyError, ValueError):
        pass
    return 0, 0


def _gateway_accepted(host: str) -> int | None:
    """Checkouts the gateway accepted, from its /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"{host}/metrics", timeout=5) as resp:  # noqa: S310
            text = resp.read().decode()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "flashsale_gateway_orders_accepted_total":
                return int(sample.value)
    return None


def print_verdict(result: VerifyResult) -> None:
    """The run summary as a table, then the differences or a reconciled line."""
    s = result.summary
    table = Table(title="flashsale run summary", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", justify="right")
    for key, value in s.items():
        if "_cents" in key and isinstance(value, int):
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
            "[green]reconciled: GMV, refunds and every outcome (accepted, rejected, paid, "
            "cancelled, refunded, duplicate, orphan, mismatch) match the truth exactly; "
            "units conserved, no SKU oversold[/green]"
        )
    else:
        console.print("[red]NOT reconciled:[/red]")
        for diff in result.differences:
            console.print(f"  - {diff}")


def run_demo(
    settings: Settings,
    scenario: Scenario,
    duration_s: float,
    summary_json: Path | None,
    workers: int = 1,
    open_browser: bool = False,
    record: Path | None = None,
) -> int:
    """`flashsale demo`: the whole slice end to end; 0 only when the run reconciles.

    With `record`, every topic of the run is captured into that run directory after the
    workers stopped and before the broker does (`flashsale record`)."""
    registry = CollectorRegistry()
    metrics = ProducerMetrics(registry)
    workdir = Path(tempfile.mkdtemp(prefix="flashsale-demo-"))
    with broker_for(settings, announce=False) as (bootstrap, broker):
        console.print(f"broker: {bootstrap} ({describe_broker(broker)})")
        run_settings = prepare_run(settings, bootstrap, scenario)
        group: list[WorkerProcess] = []
        for i in range(workers):
            port = free_port(settings.web_host, settings.web_port + i)
            log = workdir / (f"worker-{i}.log" if workers > 1 else "worker.log")
            group.append(WorkerProcess(run_settings, port, log_path=log))
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
                        _demo(run_settings, scenario, duration_s, metrics, group, workdir),
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
            from flashsale.cli.recording import record_run

            record_run(bootstrap, record, run_settings, worker_settings=run_settings)
            console.print(f"run recorded: {record} (flashsale verify / replay / report {record})")
    if result is None:
        return 1
    print_verdict(result)
    if summary_json:
        summary_json.write_bytes(orjson.dumps(result.summary, option=orjson.OPT_INDENT_2))
        console.print(f"run summary: {summary_json}")
    return 0 if result.reconciled else 1


async def _with_dashboard(
    settings: Settings,
    group: list[WorkerProcess],
    producer_url: str,
    open_browser: bool,
    run: Coroutine[Any, Any, VerifyResult | None],
) -> VerifyResult | None:
    """Serve the live dashboard of the demo while `run` runs (and open it when asked)."""
    from flashsale.dashboard.server import serve
    from flashsale.dashboard.source import DashboardSource

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
        result = await run
        # The page keeps the final numbers: show the drained run before closing.
        await source.refreshed()
        return result


def _warn(line: str) -> None:
    """A producer's warning (behind schedule), as a yellow line."""
    console.print(f"[yellow]warning: {line}[/yellow]")


def _wait_group_ready(group: list[WorkerProcess], partitions: int, timeout_s: float) -> float:
    """Block until the workers together hold every partition, settled; the seconds it took."""
    started = time.monotonic()
    while True:
        totals = group_totals(group)
        if totals["ready"] and len(totals["partitions"]) >= partitions:
            return time.monotonic() - started
        dead = [w for w in group if not w.alive()]
        if dead:
            raise RuntimeError(f"a worker exited with {dead[0].proc and dead[0].proc.returncode}")
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"workers not ready in {timeout_s:.0f}s")
        time.sleep(0.2)


async def _demo(
    settings: Settings,
    scenario: Scenario,
    duration_s: float,
    metrics: ProducerMetrics,
    group: list[WorkerProcess],
    workdir: Path,
) -> VerifyResult | None:
    bootstrap = settings.bootstrap_list()[0]
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
                _wait_group_ready, group, settings.partitions, WORKER_READY_TIMEOUT_S
            )
        except (RuntimeError, TimeoutError) as exc:
            console.print(f"[red]{exc}; logs in {workdir}[/red]")
            return None
    console.print(f"{what.removeprefix('the ')} ready in {took:.1f} s")
    emitter = OrderEmitter(settings, metrics)
    await emitter.start()
    try:
        task = asyncio.create_task(
            produce_scenario(
                emitter,
                Generator(scenario),
                duration_s,
                None,
                warn=_warn,
            )
        )
        with Live(console=console, refresh_per_second=4) as live:
            last = (time.monotonic(), 0)
            stalled_since = time.monotonic()
            last_lag: int | None = None
            while True:
                await asyncio.sleep(0.5)
                totals = await asyncio.to_thread(group_totals, group)
                ends = await end_offsets(bootstrap, settings.topic_orders, settings)
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
                if not all(w.alive() for w in group):
                    console.print(f"[red]a worker died; logs in {workdir}[/red]")
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
    if not console.is_terminal:
        console.line()  # a piped status line ends without one
    st = emitter.stats
    console.print(
        f"produced {st.orders_sent:,} order events ({st.restocks_sent:,} restocks) in "
        f"{st.duration_s:.1f} s; {st.acked:,} messages acknowledged, {st.errors:,} failed"
    )
    if st.max_behind_s > 1.0:
        console.print(
            f"[yellow]the producer fell up to {st.max_behind_s:.1f} s behind schedule[/yellow]"
        )
    with console.status("verifying against the truth recomputed from topic orders..."):
        return await verify_live(settings, bootstrap)
