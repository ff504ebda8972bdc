"""`flashsale demo --system CMD`: the demo's run with another team's stream processor in place
of flashsale's workers. The broker and topics are flashsale's; the system is started by its
command, waited for in its consumer group, fed the scenario, drained (its group's committed
offsets at the end of `orders`) and judged on its output topic (`verify --against`,
docs/contract.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry
from rich.live import Live
from rich.text import Text

from flashsale.brokers.local import broker_for, describe_broker
from flashsale.kafka.clients import aiokafka_security
from flashsale.kafka.reading import end_offsets
from flashsale.processes import die_with_parent
from flashsale.scenario import Scenario
from flashsale.settings import Settings
from orchestration.console import console, print_judgement, print_produced, warn
from orchestration.processes import prepare_run
from orchestration.produce import RunPace
from producers.generator import Generator
from producers.metrics import ProducerMetrics
from producers.pacing import produce_scenario
from producers.sinks.kafka import OrderEmitter
from verify.against import Judgement
from verify.live import NoSuchTopic, judge_live

__all__ = ["SYSTEM_READY_TIMEOUT_S", "SystemUnderTest", "run_system_demo"]

#: How long the system may take to join its consumer group.
SYSTEM_READY_TIMEOUT_S = 120.0
#: How long the drain may go without the system committing anything new.
DRAIN_STALL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class SystemUnderTest:
    """Another team's stream processor: how to start it, and what to judge it by."""

    #: The command line; `{bootstrap}` and `{orders}` are replaced by the run's servers and
    #: orders topic (also in its environment: FLASHSALE_BOOTSTRAP_SERVERS, FLASHSALE_TOPIC_ORDERS).
    command: str
    #: Its consumer group on `orders`: joined = ready; committed up to the end of every topic
    #: it reads = drained.
    group: str
    #: Its output topic, and the contract's level it writes.
    against: str
    level: str

    def argv(self, bootstrap: str, orders: str) -> list[str]:
        """The command's arguments for one run."""
        return [
            part.replace("{bootstrap}", bootstrap).replace("{orders}", orders)
            for part in shlex.split(self.command)
        ]


def run_system_demo(
    settings: Settings,
    scenario: Scenario,
    duration_s: float,
    summary_json: Path | None,
    system: SystemUnderTest,
) -> int:
    """Broker and topics, the system, the scenario, the drain, the verdict; 0 when the
    system's output has no anomaly."""
    workdir = Path(tempfile.mkdtemp(prefix="flashsale-system-"))
    log_path = workdir / "system.log"
    with broker_for(settings, announce=False) as (bootstrap, broker):
        console.print(f"broker: {bootstrap} ({describe_broker(broker)})")
        run_settings = prepare_run(settings, bootstrap, scenario)
        argv = system.argv(bootstrap, run_settings.topic_orders)
        console.print(f"system under test: {shlex.join(argv)} (log: {log_path})")
        env = {
            **os.environ,
            "FLASHSALE_BOOTSTRAP_SERVERS": bootstrap,
            "FLASHSALE_TOPIC_ORDERS": run_settings.topic_orders,
        }
        with log_path.open("wb") as log:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    preexec_fn=die_with_parent(),
                    start_new_session=True,
                )
            except OSError as exc:
                console.print(f"[red]the system did not start: {exc}[/red]")
                return 1
            try:
                outcome = asyncio.run(
                    _run(run_settings, bootstrap, scenario, duration_s, system, proc, log_path)
                )
            finally:
                _stop_group(proc)
    if outcome is None:
        return 1
    verdict, producer = outcome
    print_judgement(verdict)
    if summary_json:
        summary = {
            **verdict.to_json(),
            # The demo summary's names for what `flashsale rate` holds a trial to.
            "reconciled": verdict.passed,
            "e2e_latency_p99_ms": verdict.latency(0.99),
            "producer": producer,
        }
        summary_json.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
        console.print(f"run summary: {summary_json}")
    return 0 if verdict.passed else 1


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the system's process group (a launcher's children too), SIGKILL after 15 s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def _group_state(admin: AIOKafkaAdminClient, group: str) -> tuple[str, int]:
    """The consumer group's state (`Stable`, `PreparingRebalance`, `Empty`, `Dead`, ...) and
    its member count."""
    try:
        described = await admin.describe_consumer_groups([group])
    except KafkaError:  # no coordinator yet: a fresh cluster creates its offsets topic
        return "Unknown", 0
    for response in described:
        for entry in response.groups:
            # (error_code, group_id, state, protocol_type, protocol, members, ...)
            if entry[1] == group:
                return str(entry[2]), len(entry[5])
    return "Dead", 0


async def _lag(
    admin: AIOKafkaAdminClient, bootstrap: str, settings: Settings, group: str
) -> int | None:
    """Messages past the group's committed offsets on `orders` and on every other topic the
    group commits (a system that repartitions reads its own topics too: drained means those
    as well). None while the ends are unknown."""
    try:
        committed = await admin.list_consumer_group_offsets(group)
    except KafkaError:  # the coordinator moving: ask again at the next look
        return None
    done = {(tp.topic, tp.partition): meta.offset for tp, meta in committed.items()}
    lag = 0
    for topic in {settings.topic_orders} | {tp.topic for tp in committed}:
        ends = await end_offsets(bootstrap, topic, settings)
        if not ends:
            return None
        lag += sum(max(end - max(done.get((topic, p), 0), 0), 0) for p, end in ends.items())
    return lag


async def _run(
    settings: Settings,
    bootstrap: str,
    scenario: Scenario,
    duration_s: float,
    system: SystemUnderTest,
    proc: subprocess.Popen[bytes],
    log_path: Path,
) -> tuple[Judgement, dict[str, Any]] | None:
    admin = AIOKafkaAdminClient(
        **aiokafka_security(
            settings, "admin", bootstrap_servers=bootstrap, client_id="flashsale-judge"
        )
    )
    await admin.start()
    try:
        return await _feed_and_judge(
            settings, bootstrap, scenario, duration_s, system, proc, log_path, admin
        )
    finally:
        await admin.close()


async def _feed_and_judge(
    settings: Settings,
    bootstrap: str,
    scenario: Scenario,
    duration_s: float,
    system: SystemUnderTest,
    proc: subprocess.Popen[bytes],
    log_path: Path,
    admin: AIOKafkaAdminClient,
) -> tuple[Judgement, dict[str, Any]] | None:
    started = time.monotonic()
    with console.status(f"waiting for the system to join consumer group {system.group}..."):
        while True:
            if proc.poll() is not None:
                console.print(f"[red]the system exited with {proc.returncode}; see {log_path}[/]")
                return None
            state, members = await _group_state(admin, system.group)
            if state == "Stable" and members:
                break
            if time.monotonic() - started > SYSTEM_READY_TIMEOUT_S:
                console.print(
                    f"[red]the system did not join consumer group {system.group} in "
                    f"{SYSTEM_READY_TIMEOUT_S:.0f} s (state {state}); see {log_path}[/red]"
                )
                return None
            await asyncio.sleep(0.5)
    console.print(f"system ready in {time.monotonic() - started:.1f} s")
    emitter = OrderEmitter(settings, ProducerMetrics(CollectorRegistry()))
    await emitter.start()
    try:
        task = asyncio.create_task(
            produce_scenario(emitter, Generator(scenario), duration_s, None, warn=warn)
        )
        with Live(console=console, refresh_per_second=4) as live:
            pace = RunPace(emitter.stats, DRAIN_STALL_TIMEOUT_S)
            while True:
                await asyncio.sleep(0.5)
                lag = await _lag(admin, bootstrap, settings, system.group)
                st = emitter.stats
                phase = "producing" if not task.done() else "draining"
                live.update(
                    Text(
                        f"{phase} {scenario.name}  {time.monotonic() - started:5.1f}s  "
                        f"orders/s {pace.orders_per_s():8,.0f}  sent {st.orders_sent:,}  "
                        "system lag "
                        f"{'?' if lag is None else f'{lag:,}'}"
                    )
                )
                if proc.poll() is not None:
                    console.print(
                        f"[red]the system exited with {proc.returncode}; see {log_path}[/]"
                    )
                    return None
                if not task.done():
                    continue
                task.result()  # re-raise a producer failure
                if lag == 0:
                    break
                if pace.stalled(lag):
                    console.print("[red]the system stopped committing; judging what it wrote[/red]")
                    break
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await emitter.stop()
    st = emitter.stats
    print_produced(st, acknowledged=False)
    producer = st.schedule()
    with console.status(f"judging {system.against} against the truth recomputed from orders..."):
        try:
            verdict = await judge_live(settings, bootstrap, system.against, system.level)
        except NoSuchTopic as exc:
            console.print(f"[red]{exc}: the system wrote nothing[/red]")
            return None
    return verdict, producer
