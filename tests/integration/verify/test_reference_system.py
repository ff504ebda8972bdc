"""`flashsale verify --against` judging a system that is not flashsale's: the Quix Streams
reference of examples/quix-orders (its own virtualenv, no flashsale code), on Apache Kafka.

One orders topic (a few seconds of singles-day-2020, client retries included) serves both
tests: the app as written passes both levels; with its planted bug (a retried payment counted
again) verify fails, naming double counting and the GMV cells it moved.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from benchmarks import bench
from flashsale.kafka.reading import end_offsets, read_topic
from flashsale.settings import Settings
from tests.conftest import TestBroker, skip_or_fail
from tests.paths import ROOT
from verify.truth import compute_truth

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize(
        "broker", [pytest.param("kafka", marks=pytest.mark.kafka)], indirect=True
    ),
]

APP = ROOT / "examples" / "quix-orders" / "app.py"
#: The scenario's first events (restocks aside): about 9 s on schedule, with client retries
#: of every step, payments among them (4 retried payments: the scenario is deterministic).
EVENTS = 6_000
#: Seconds the app may take to decide the whole topic (its start-up creates five topics).
DRAIN_S = 90.0


@dataclass
class OrdersRun:
    settings: Settings
    messages: int
    workdir: Path
    #: The interpreter that has quixstreams (.venv/quix), without flashsale.
    python: str


def _flashsale(
    settings: Settings, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestration", *args,
         "--bootstrap-servers", settings.bootstrap_servers or ""],
        env={**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT), "COLUMNS": "250"},
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def orders_run(broker: TestBroker, tmp_path_factory: pytest.TempPathFactory) -> OrdersRun:
    """The scenario's first EVENTS events on a fresh orders topic, with retries in it."""
    python = _quix_python()
    settings = broker.fresh_settings()
    produced = _flashsale(
        settings, "produce", "--scenario", "singles-day-2020", "--events", str(EVENTS)
    )
    assert produced.returncode == 0, produced.stdout + produced.stderr
    bootstrap = settings.bootstrap_servers or ""
    orders = asyncio.run(read_topic(bootstrap, settings.topic_orders))
    truth = compute_truth(orders, settings.dedupe_window)
    retried_payments = sum(
        1
        for partition, records in orders.items()
        for rec in records
        if truth.outcomes[(partition, rec.offset)] == "duplicate"
        and orjson.loads(rec.value or b"{}").get("type") == "paid"
    )
    # The planted bug needs retried payments; the clean run is judged with retries in it.
    assert retried_payments > 0, truth.duplicates
    messages = sum(len(records) for records in orders.values())
    return OrdersRun(settings, messages, tmp_path_factory.mktemp("reference"), python)


def _quix_python() -> str:
    python = bench.peer_python("quixstreams")
    if python is None:
        skip_or_fail("quixstreams in .venv/quix (`make test` installs it)")
    assert python is not None
    return python


async def _drained(bootstrap: str, group: str, orders: str) -> bool:
    """True when the group has committed every topic it reads (orders, and the repartition
    topic of the GMV cells) up to its end: every output is then written."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    except KafkaError:  # no coordinator yet: on a fresh broker, the group's first commit
        return False
    finally:
        await admin.close()
    done = {(tp.topic, tp.partition): meta.offset for tp, meta in committed.items()}
    for topic in {topic for topic, _ in done} | {orders}:
        for partition, end in (await end_offsets(bootstrap, topic)).items():
            if done.get((topic, partition), 0) < end:
                return False
    return True


@dataclass
class Judged:
    decisions: dict[str, Any]
    totals: dict[str, Any]
    returncodes: tuple[int, int]
    output: str


@pytest.fixture
def run_app(orders_run: OrdersRun) -> Iterator[Any]:
    """Run the app (flags given) on the shared orders topic until it has decided all of it,
    stop it with SIGTERM, and judge its two topics at both levels."""
    started: list[subprocess.Popen[bytes]] = []

    def run(*flags: str) -> Judged:
        tag = uuid.uuid4().hex[:8]
        settings = orders_run.settings
        bootstrap = settings.bootstrap_servers or ""
        decisions, totals, group = f"quix-decisions-{tag}", f"quix-totals-{tag}", f"quix-{tag}"
        log = orders_run.workdir / f"app-{tag}.log"
        # Without PYTHONPATH and outside the repository's root: no flashsale to import.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [orders_run.python, str(APP), "--bootstrap-servers", bootstrap,
                 "--orders", settings.topic_orders, "--decisions", decisions, "--totals", totals,
                 "--group", group, "--dedupe-window", str(settings.dedupe_window), *flags],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=orders_run.workdir,
            )  # fmt: skip
        started.append(proc)
        deadline = time.monotonic() + DRAIN_S
        while not asyncio.run(_drained(bootstrap, group, settings.topic_orders)):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
        verdicts = []
        codes = []
        output = ""
        for level, topic in (("decisions", decisions), ("totals", totals)):
            path = orders_run.workdir / f"verdict-{level}-{tag}.json"
            done = _flashsale(
                settings, "verify", "--against", topic, "--level", level, "--json", str(path)
            )
            output += done.stdout + done.stderr
            assert done.returncode in (0, 1), output
            codes.append(done.returncode)
            verdicts.append(orjson.loads(path.read_bytes()))
        return Judged(verdicts[0], verdicts[1], (codes[0], codes[1]), output)

    try:
        yield run
    finally:
        for proc in started:  # ours: stopped above unless a check failed first
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


def _counts(verdict: dict[str, Any]) -> dict[str, int]:
    return {name: anomaly["count"] for name, anomaly in verdict["anomalies"].items()}


@pytest.mark.timeout(240)
def test_the_reference_passes_both_levels(orders_run: OrdersRun, run_app: Any) -> None:
    judged = run_app()
    assert judged.returncodes == (0, 0), judged.output
    for verdict in (judged.decisions, judged.totals):
        assert verdict["passed"] is True, judged.output
        assert set(_counts(verdict).values()) == {0}, judged.output
        assert verdict["events"] == orders_run.messages
    assert judged.decisions["level"] == "decisions"
    assert judged.totals["level"] == "totals"
    # One decision per message of orders, none repeated (the app was not restarted).
    assert judged.decisions["records"] == orders_run.messages
    assert judged.decisions["latency_p50_ms"] is not None


@pytest.mark.timeout(240)
def test_a_payment_counted_at_every_delivery_fails_both_levels(
    orders_run: OrdersRun, run_app: Any
) -> None:
    judged = run_app("--bug", "gmv-every-delivery")
    assert judged.returncodes == (1, 1), judged.output
    decisions, totals = _counts(judged.decisions), _counts(judged.totals)
    assert judged.decisions["passed"] is False
    assert judged.totals["passed"] is False
    assert decisions["double_counted"] > 0, judged.output
    assert decisions["gmv_window"] > 0, judged.output
    assert totals["gmv_window"] > 0, judged.output
    # Only GMV moves: every other outcome, the units and the stock stay right.
    for name in ("lost", "wrong_outcome", "wrong_amount", "oversold", "conflicting", "phantom"):
        assert decisions[name] == 0, (name, judged.output)
    for name in ("units_sold", "stock", "sell_outs", "oversold"):
        assert totals[name] == 0, (name, judged.output)
