"""`flashsale loadtest`: a worker, the checkout gateway, and headless locust in processes of
its own; then locust's figures beside flashsale's verdict. Locust is never imported here: it
patches the process it runs in with gevent. The locustfile's options go on locust's command
line as its custom arguments (`loadtests/options.py`), so a master sends them to workers on
other machines too; the caller's own locust arguments come last and override ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml
from rich.table import Table

from dashboards.live.source import DashboardSource
from flashsale.brokers.local import broker_for
from flashsale.processes import die_with_parent, free_port
from flashsale.scenario import Scenario
from flashsale.settings import Settings
from loadtests.options import LoadOptions
from orchestration.console import console, print_faults
from orchestration.faults import FaultRunner, FaultThread
from orchestration.processes import GatewayProcess, prepare_run
from streams.process import WorkerProcess
from verify.live import verify_live

__all__ = ["locust_argv", "run_loadtest"]


def run_loadtest(
    settings: Settings,
    scenario: Scenario,
    load: LoadOptions,
    target: str,
    html: Path | None,
    csv: str | None,
    processes: int,
    locust_args: list[str],
) -> int:
    """`flashsale loadtest`: our stack, locust in its own process(es) with `load` (the
    scenario that `scenario` is, the shape, users, duration, rate, events) and then
    `locust_args`, then verify both."""
    workdir = Path(tempfile.mkdtemp(prefix="flashsale-loadtest-"))
    with broker_for(settings) as (bootstrap, broker):
        run_settings = prepare_run(settings, bootstrap, scenario)
        worker = WorkerProcess(
            run_settings,
            free_port(settings.web_host, settings.web_port),
            log_path=workdir / "worker.log",
        )
        gateway: GatewayProcess | None = None
        locust: subprocess.Popen[bytes] | None = None
        faults: FaultThread | None = None
        scenario_file = workdir / "scenario.yaml"
        scenario_file.write_text(yaml.safe_dump(scenario.model_dump(mode="json", by_alias=True)))
        env = {**os.environ, **run_settings.to_env()}
        load = dataclasses.replace(
            load, bootstrap_servers=bootstrap, topic=run_settings.topic_orders
        )
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
                gateway = GatewayProcess(
                    bootstrap, worker.url, scenario_file, settings.web_host, port, env, workdir
                )
                gateway.start()
                console.print(f"gateway: {host}/orders")
            # Locust's CSV statistics, in the caller's place or ours: the summary reads them.
            stats_prefix = csv or str(workdir / "locust")
            args = locust_argv(load, target, host, html, stats_prefix, processes, locust_args)
            console.print(
                f"locust: {load.users} users, {load.duration_s:g} s, shape {load.shape}, {target}"
                + (f", locust arguments {' '.join(locust_args)}" if locust_args else "")
            )
            runner = FaultRunner(
                scenario,
                run_settings,
                cluster=broker,
                workers=[worker],
                gateway=gateway,
                say=console.print,
            )
            if runner.faults:
                faults = FaultThread(
                    runner, DashboardSource([worker.url], bootstrap, run_settings.topic_orders)
                )
                # The scenario clock starts with locust's shape.
                faults.start(time.monotonic())
            # A group of its own: its forked worker processes are stopped with it.
            locust = subprocess.Popen(
                args, env=env, preexec_fn=die_with_parent(), start_new_session=True
            )
            locust_rc = locust.wait()
            if faults is not None:
                faults.stop()  # what is still broken comes back: the run drains
            with console.status("waiting for the worker to apply every order..."):
                worker.wait_drained(timeout_s=600)
            accepted = _gateway_accepted(host) if gateway is not None else None
            result = asyncio.run(verify_live(run_settings, bootstrap))
        except (RuntimeError, TimeoutError) as exc:
            console.print(f"[red]loadtest stopped: {exc}; logs in {workdir}[/red]")
            return 1
        finally:
            if faults is not None:
                faults.stop()
            if locust is not None:
                _stop_group(locust, 15.0)
            if gateway is not None:
                gateway.stop()
            worker.stop()
    summary = result.summary
    table = Table(title="flashsale beside locust", show_header=False)
    sent, failed = _locust_totals(f"{stats_prefix}_stats.csv")
    rows = [
        ("locust exit code", str(locust_rc)),
        (
            "requests sent (locust)" if gateway is not None else "order events sent (locust)",
            f"{sent:,}",
        ),
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
    if faults is not None:
        summary["faults"] = faults.runner.log()
        print_faults(summary["faults"])
    if not result.reconciled:
        for line in result.differences:
            console.print(f"[red]{line}[/red]")
    return 0 if locust_rc == 0 and result.reconciled else 1


def locust_argv(
    load: LoadOptions,
    target: str,
    host: str,
    html: Path | None,
    stats_prefix: str,
    processes: int,
    locust_args: list[str],
) -> list[str]:
    """Locust's command line: the user class, flashsale's own arguments, then the caller's
    unchanged, last, so that a repeated option overrides ours."""
    from loadtests import locust_command

    args = locust_command(
        "ShopperUser" if target == "gateway" else "KafkaOrdersUser",
        "--headless",
        "--host",
        host,
        "--only-summary",
        "--stop-timeout",
        "5",
        *load.args(),
        "--csv",
        stats_prefix,
    )
    if html:
        args += ["--html", str(html)]
    if processes > 1:
        # The master and the workers it forks meet on a port of this run's own, not locust's
        # fixed 5557: two load tests on one machine would share it.
        master = str(free_port())
        args += ["--processes", str(processes), "--master-bind-port", master]
        args += ["--master-port", master]
    return args + locust_args


def _stop_group(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM locust's process group (the master and the workers it forked), SIGKILL what is
    left of it after `timeout_s`; reap the master."""
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        proc.poll()  # reap the master, or the group stays alive as its zombie
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


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
