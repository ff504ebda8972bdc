"""`flashsale loadtest`: real headless locust runs against the gateway and, distributed,
straight into Kafka."""

from __future__ import annotations

import asyncio
import csv
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from flashsale.kafka.reading import read_topic
from flashsale.processes import free_port
from flashsale.scenario import DEFAULT_SCENARIO, load_scenario
from flashsale.settings import Settings
from loadtests import locust_command
from producers.generator import Generator
from tests.conftest import TestBroker

pytestmark = pytest.mark.integration

#: Order events the distributed Kafka run sends: its two locust workers split them.
EVENTS = 30_000


def _loadtest(
    broker: TestBroker,
    settings: Settings,
    tmp_path: Path,
    target: str,
    duration: int,
    *extra: str,
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestration",
            "loadtest",
            "--target",
            target,
            "--duration",
            str(duration),
            "--html",
            str(tmp_path / f"{target}.html"),
            "--csv",
            str(tmp_path / target),
            "--bootstrap-servers",
            broker.bootstrap,
            *extra,
        ],
        env={**os.environ, **broker.env(), **settings.to_env(), "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _settings(broker: TestBroker) -> Settings:
    # Ports of its own too: two runs at once must not both take the default ones.
    return broker.fresh_settings().model_copy(
        update={"web_port": free_port(), "gateway_port": free_port()}
    )


def _locust_worker(broker: TestBroker, master_port: int, log: Path) -> subprocess.Popen[bytes]:
    """A locust worker as on another machine: no `FLASHSALE_*` but the broker's client
    settings, so the scenario, the servers and the topic can only come from its master."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")}
    return subprocess.Popen(
        locust_command("--worker", "--master-port", str(master_port)),
        env={**env, **broker.env()},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _without_emit(value: bytes) -> bytes:
    doc = orjson.loads(value)
    doc.pop("emit_ns")
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def _one_process_stream(events: int) -> Counter[tuple[bytes, bytes]]:
    """(key, value without emit time) of the restocks and the first `events` order events
    one process generates for the default scenario."""
    from flashsale.events import encode_event

    generator = Generator(load_scenario(DEFAULT_SCENARIO))
    out: Counter[tuple[bytes, bytes]] = Counter(
        (r.sku.encode(), _without_emit(encode_event(r))) for r in generator.restocks()
    )
    for block in generator.blocks(None, events):
        out.update(zip(block.keys, map(_without_emit, block.values()), strict=True))
    return out


def _on_topic(broker: TestBroker, settings: Settings) -> Counter[tuple[bytes, bytes]]:
    parts = asyncio.run(read_topic(broker.bootstrap, settings.topic_orders))
    return Counter(
        (r.key or b"", _without_emit(r.value)) for records in parts.values() for r in records
    )


def test_gateway_and_distributed_kafka_runs_reconcile_and_kafka_sends_one_stream(
    broker: TestBroker, tmp_path: Path
) -> None:
    # Both at once: each has its own topics, consumer group and ports.
    gateway, kafka = _settings(broker), _settings(broker)
    master_port = free_port()
    runs = {
        # Locust's master and two worker processes of this machine: the distributed path.
        # The Singles' Day shape climbs from a tenth of its users to about two thirds in
        # these 20 s: 30 at the peak give a loaded machine's run some dozens of checkouts.
        "gateway": _loadtest(
            broker, gateway, tmp_path, "gateway", 20, "--users", "30", "--processes", "2"
        ),
        # A master waiting for two workers started apart, as on other machines, its options
        # passed to them by locust; the scenario's first EVENTS events, split between them.
        # The run ends when both have sent their part (the duration is only a bound).
        "kafka": _loadtest(
            broker,
            kafka,
            tmp_path,
            "kafka",
            300,
            "--users",
            "4",
            "--shape",
            "constant",
            "--rate",
            "20000",
            "--events",
            str(EVENTS),
            "--",
            "--master",
            "--expect-workers",
            "2",
            "--expect-workers-max-wait",
            "120",
            "--master-bind-port",
            str(master_port),
        ),
    }
    workers = [_locust_worker(broker, master_port, tmp_path / f"worker-{i}.log") for i in (0, 1)]
    outputs = {}
    try:
        for target, proc in runs.items():
            out, _ = proc.communicate(timeout=400)
            outputs[target] = out
            (tmp_path / f"{target}.out").write_text(out)  # kept for a failure's post-mortem
            assert proc.returncode == 0, out[-4000:]
        for worker in workers:
            assert worker.wait(timeout=30) == 0
    finally:
        for proc in [*runs.values(), *workers]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for target, out in outputs.items():
        assert "reconciled                     │ true" in out, out[-3000:]
        assert "locust exit code               │ 0" in out
        assert (tmp_path / f"{target}.html").stat().st_size > 10_000
        with (tmp_path / f"{target}_stats.csv").open() as fh:
            rows = {row["Name"]: row for row in csv.DictReader(fh)}
        total = rows["Aggregated"]
        assert int(total["Request Count"]) > 0, out[-3000:]
        assert int(total["Failure Count"]) == 0
        assert "locust failures                │ 0" in out, out[-3000:]
    # What the gateway accepted is what reached the topic and the worker.
    accepted = re.search(r"orders accepted by the gateway │ ([\d,]+)", outputs["gateway"])
    assert accepted is not None and int(accepted.group(1).replace(",", "")) > 0
    # The two workers sent the one-process stream between them: each event once, nothing else.
    assert _on_topic(broker, kafka) == _one_process_stream(EVENTS)
    # Locust counts order events, and says so in its reports.
    with (tmp_path / "kafka_stats.csv").open() as fh:
        rows = {row["Name"]: row for row in csv.DictReader(fh)}
    sent = int(rows[f"{kafka.topic_orders}: 1 request = 1 order event"]["Request Count"])
    assert sent == EVENTS, outputs["kafka"][-6000:]
    assert f"order events sent (locust)     │ {EVENTS:,}" in outputs["kafka"]
    assert f"events processed               │ {EVENTS:,}" in outputs["kafka"]
