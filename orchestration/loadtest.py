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
from flashsale.processes import die_with_parent, free_port, stop_process
from flashsale.scenario import Scenario
from flashsale.settings import Settings
from loadtests.options import LoadOptions
from orchestration.console import console, print_faults
from orchestration.faults import FaultRunner, FaultThread
from orchestration.processes import GatewayProcess, prepare_run
from streams.process import WorkerProcess
from verify.live import verify_live

__all__ = ["gateway_disagreement", "kafka_disagreement", "locust_argv", "run_loadtest"]


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
        workers: list[subprocess.Popen[bytes]] = []
        worker_rcs: list[int] = []
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
            master_port = free_port() if processes > 1 else None
            args = locust_argv(
                load, target, host, html, stats_prefix, processes, locust_args, master_port
            )
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
            # A group of its own: what it forks is stopped with it.
            locust = subprocess.Popen(
                args, env=env, preexec_fn=die_with_parent(), start_new_session=True
            )
            if master_port is not None:
                for i in range(processes):
                    log = (workdir / f"locust-worker-{i}.log").open("wb")
                    workers.append(
                        subprocess.Popen(
                            locust_worker_argv(master_port),
                            env=env,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            preexec_fn=die_with_parent(),
                        )
                    )
                    log.close()
            locust_rc = locust.wait()
            # Told to quit by their master, the workers end on their own.
            worker_rcs = [_wait_or_stop(w, 15.0) for w in workers]
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
            for proc in workers:
                stop_process(proc, 15.0)
            if gateway is not None:
                gateway.stop()
            worker.stop()
    summary = result.summary
    table = Table(title="flashsale beside locust", show_header=False)
    rows_csv = _locust_rows(f"{stats_prefix}_stats.csv")
    sent, failed = rows_csv.get(("", "Aggregated"), (0, 0))
    rows = [
        ("locust exit code", str(locust_rc)),
        *([("locust workers' exit codes", ", ".join(map(str, worker_rcs)))] if worker_rcs else []),
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
    if gateway is not None:
        posted, posts_failed = rows_csv.get(("POST", "/orders"), (0, 0))
        disagreement = gateway_disagreement(posted - posts_failed, accepted, load.users)
    else:
        disagreement = kafka_disagreement(sent, summary["events_produced"])
    if disagreement is not None:
        console.print(f"[red]locust's statistics disagree with flashsale's: {disagreement}[/red]")
    if any(worker_rcs):
        console.print(f"[red]a locust worker failed: its log is in {workdir}[/red]")
    ok = locust_rc == 0 and not any(worker_rcs) and result.reconciled and disagreement is None
    return 0 if ok else 1


def kafka_disagreement(counted: int, on_topic: int) -> str | None:
    """Why locust's count of order events sent and the order events on the topic (the
    run's `events_produced`) disagree, or None: they must be equal."""
    if counted == on_topic:
        return None
    if counted < on_topic:
        return (
            f"locust counted {counted:,} order events sent, the topic holds {on_topic:,}: "
            "statistics of a locust process never reached its master (a worker lost, its "
            "heartbeats missed?), or a client retry wrote events twice (idempotence off)"
        )
    return f"locust counted {counted:,} order events sent, the topic holds only {on_topic:,}"


def gateway_disagreement(succeeded: int, accepted: int | None, users: int) -> str | None:
    """Why the checkouts locust counted as succeeded and those the gateway accepted
    disagree, or None. Each user may have had one checkout on the way when locust stopped
    it, accepted by the gateway but never answered: the gateway may count up to `users`
    more, never fewer."""
    if accepted is None:
        return "the gateway's /metrics did not answer"
    if succeeded <= accepted <= succeeded + users:
        return None
    return (
        f"locust counted {succeeded:,} successful checkouts, the gateway accepted {accepted:,} "
        f"(with {users} users, at most {users} more than locust may be on the way at its end)"
    )


def locust_argv(
    load: LoadOptions,
    target: str,
    host: str,
    html: Path | None,
    stats_prefix: str,
    processes: int,
    locust_args: list[str],
    master_port: int | None = None,
) -> list[str]:
    """Locust's command line: the user class, flashsale's own arguments, then the caller's
    unchanged, last, so that a repeated option overrides ours. With `processes` > 1, a
    master on `master_port` expecting that many workers (`locust_worker_argv`)."""
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
        # Workers of its own, each a new process, as on other machines: not locust's
        # --processes, whose workers are forks of its master (under a loaded machine's
        # suite, such forks fell silent as their first users spawned and were counted lost).
        # They meet on a port of this run's own, not locust's fixed 5557: two load tests on
        # one machine would share it. A worker that never comes stops the run in 120 s.
        port = str(master_port or free_port())
        args += ["--master", "--expect-workers", str(processes)]
        args += ["--expect-workers-max-wait", "120", "--master-bind-port", port]
    return args + locust_args


def locust_worker_argv(master_port: int) -> list[str]:
    """A locust worker of this machine's master on `master_port`: everything else its
    master sends it."""
    from loadtests import locust_command

    return locust_command(
        "--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)
    )


def _wait_or_stop(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    """The exit code of a process that should end by itself, stopped if it has not within
    `timeout_s`."""
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop_process(proc, 5.0)
        return proc.returncode


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


def _locust_rows(stats_csv: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(type, name) -> (requests, failures) of a locust run, from its `_stats.csv` (the
    total is ("", "Aggregated")); empty when missing."""
    import csv as csv_module

    rows: dict[tuple[str, str], tuple[int, int]] = {}
    try:
        with open(stats_csv, newline="") as fh:
            for row in csv_module.DictReader(fh):
                key = (row.get("Type") or "", row.get("Name") or "")
                rows[key] = (int(row["Request Count"]), int(row["Failure Count"]))
    except (OSError, KeyError, ValueError):
        pass
    return rows


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
