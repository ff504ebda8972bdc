"""Every write the broker acknowledged, proven on `orders`: `flashsale produce --ack-log` then
`flashsale verify --ack-log`, on each broker; a log the topic does not hold fails verify by
itself, naming the writes; a producer SIGKILLed mid-run leaves a log whose every line is on
the topic."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from flashsale.acklog import AckedWrite, ack_line, read_ack_log
from flashsale.events import packed_count
from flashsale.kafka.reading import end_offsets, read_topic
from flashsale.processes import free_port
from flashsale.settings import Settings
from streams.process import WorkerProcess
from tests.conftest import TestBroker
from tests.paths import ROOT
from verify.acks import check_acks

pytestmark = pytest.mark.integration

EVENTS = 3_000

# About 4,000 events/s on schedule: a run of EVENTS takes about a second.
SCENARIO: dict[str, Any] = {
    "name": "ack-log",
    "seed": 13,
    "curve": {"shape": "constant", "horizon_s": 600.0},
    "scale": {"peak_per_s": 2_500.0, "sample_ratio": 1.0, "compression": 1.0},
    "catalog": {"sku_count": 100},
    "mix": {"pay_delay_mean_s": 0.5, "unpaid_timeout_s": 2.0, "duplicate_rate": 0.02},
}


def _flashsale(
    settings: Settings, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestration", *args,
         "--bootstrap-servers", settings.bootstrap_servers or ""],
        env={**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT), "COLUMNS": "250"},
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@dataclass
class AckedRun:
    settings: Settings
    log: Path
    workdir: Path


@pytest.fixture(scope="module")
def acked_run(broker: TestBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AckedRun]:
    """A run produced with an ack log and applied by a worker, once per broker kind."""
    workdir = tmp_path_factory.mktemp(f"acks-{broker.kind}")
    settings = broker.fresh_settings()
    scenario = workdir / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO))
    log = workdir / "acks.csv"
    produced = _flashsale(
        settings, "produce", "--scenario", str(scenario), "--events", str(EVENTS),
        "--ack-log", str(log),
    )  # fmt: skip
    assert produced.returncode == 0, produced.stdout + produced.stderr
    assert f"acknowledged writes logged in {log}" in produced.stdout.replace("\n", "")
    worker = WorkerProcess(settings, free_port(), log_path=workdir / "worker.log")
    try:
        worker.start()
        worker.wait_ready()
        worker.wait_drained(timeout_s=120)
    finally:
        worker.stop()
    yield AckedRun(settings, log, workdir)


def test_produce_then_verify_proves_every_acknowledged_write(acked_run: AckedRun) -> None:
    summary_path = acked_run.workdir / "summary.json"
    done = _flashsale(
        acked_run.settings, "verify", "--ack-log", str(acked_run.log), "--json", str(summary_path)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = orjson.loads(summary_path.read_bytes())
    restocks = sum(1 for ack in read_ack_log(acked_run.log) if ack.seq is not None and ack.seq < 0)
    assert restocks > 0
    # One line per message the producer sent: every event and restock, each acknowledged.
    assert summary["acked_writes"] == EVENTS + restocks
    assert summary["acked_lost"] == 0
    assert summary["acked_duplicated"] == 0
    assert summary["reconciled"] is True
    assert f"acknowledged writes: all {EVENTS + restocks:,} on orders" in done.stdout


def test_a_log_the_topic_lacks_fails_verify_naming_the_writes(acked_run: AckedRun) -> None:
    """Kafka cannot drop a record from the middle of a partition, so the loss is planted in
    the log instead: two writes acknowledged past the partitions' ends (as a broker that
    acknowledged and then truncated would leave them) and one whose bytes differ."""
    acks = read_ack_log(acked_run.log)
    ends = asyncio.run(
        end_offsets(acked_run.settings.bootstrap_servers or "", acked_run.settings.topic_orders)
    )
    planted = [
        AckedWrite(0, ends[0] + 3, EVENTS + 1, 1),
        AckedWrite(1, ends[1], EVENTS + 2, 2),
    ]
    changed = acks[10]
    tampered = acked_run.workdir / "tampered.csv"
    body = acked_run.log.read_bytes().replace(
        ack_line(changed.partition, changed.offset, changed.seq, changed.crc32),
        ack_line(changed.partition, changed.offset, changed.seq, changed.crc32 ^ 0xFF),
    )
    tampered.write_bytes(
        body + b"".join(ack_line(a.partition, a.offset, a.seq, a.crc32) for a in planted)
    )
    summary_path = acked_run.workdir / "tampered.json"
    done = _flashsale(
        acked_run.settings, "verify", "--ack-log", str(tampered), "--json", str(summary_path)
    )
    assert done.returncode == 1, done.stdout + done.stderr
    summary = orjson.loads(summary_path.read_bytes())
    # The business verdict stands as it was; the lost writes fail verify by themselves.
    assert summary["reconciled"] is True
    assert summary["acked_writes"] == len(acks) + 2
    assert summary["acked_lost"] == 3
    assert summary["acked_duplicated"] == 0
    out = " ".join(done.stdout.split())
    assert "acknowledged writes NOT all kept as acknowledged" in out
    assert f"3 of {len(acks) + 2:,} acknowledged writes lost" in out
    assert (
        f"partition {changed.partition} offset {changed.offset} seq {changed.seq} "
        "(the message there has other bytes" in out
    )
    assert (
        f"partition 0 offset {ends[0] + 3} seq {EVENTS + 1} (past the partition's last "
        f"offset, {ends[0] - 1})" in out
    )
    assert f"partition 1 offset {ends[1]} seq {EVENTS + 2} (past the partition's" in out


@pytest.mark.parametrize(
    ("client", "pack"),
    [("aiokafka", 0), ("confluent", 0), pytest.param("aiokafka", 50, id="aiokafka-packed")],
)
def test_a_producer_killed_mid_run_leaves_a_log_of_writes_all_on_the_topic(
    run_settings: Settings, tmp_path: Path, client: str, pack: int
) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(
        yaml.safe_dump({**SCENARIO, "scale": {**SCENARIO["scale"], "peak_per_s": 1_000.0}})
    )
    log = tmp_path / "acks.csv"
    bootstrap = run_settings.bootstrap_servers or ""
    producer = subprocess.Popen(
        [sys.executable, "-m", "orchestration", "produce", "--bootstrap-servers", bootstrap,
         "--scenario", str(scenario), "--events", "20000", "--client", client,
         "--pack", str(pack), "--ack-log", str(log)],
        env={**os.environ, **run_settings.to_env(), "PYTHONPATH": str(ROOT)},
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # SIGKILL it once the log names a few hundred messages, acknowledgements in flight.
        deadline = time.monotonic() + 60
        while not log.exists() or log.stat().st_size < 8_000:
            assert producer.poll() is None, "the producer ended before the kill"
            assert time.monotonic() < deadline, "no acknowledgement logged in 60 s"
            time.sleep(0.05)
        producer.send_signal(signal.SIGKILL)
        producer.wait(10)
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()
    acks = read_ack_log(log, run_settings.topic_orders)
    orders = asyncio.run(read_topic(bootstrap, run_settings.topic_orders))
    on_topic = sum(len(records) for records in orders.values())
    check = check_acks(orders, acks)
    assert 300 < check.writes <= on_topic
    assert (check.lost, check.duplicated) == ([], [])
    # Packed or not, one line per message, each with its seq; restocks first.
    assert all(ack.seq is not None for ack in acks)
    assert min(ack.seq for ack in acks if ack.seq is not None) < 0
    if pack:
        packed = [r for records in orders.values() for r in records if packed_count(r.headers)]
        assert len(packed) > 0
