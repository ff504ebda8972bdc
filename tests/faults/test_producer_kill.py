"""A producer SIGKILLed mid-run and started again with `--resume` loses no order and sends
none twice: `orders` ends up holding exactly the scenario's stream, and the run reconciles."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from flashsale.events import decode_packed, encode_event, packed_count
from flashsale.kafka.admin import ensure_run_topics
from flashsale.kafka.clients import aiokafka_producer
from flashsale.kafka.reading import end_offsets, read_topic
from flashsale.processes import free_port
from flashsale.scenario import Scenario
from flashsale.settings import Settings
from producers.generator import Generator
from producers.pacing import produce_scenario
from producers.sinks.jsonl import JsonlSink
from streams.process import WorkerProcess
from tests.paths import ROOT
from verify.live import verify_live

pytestmark = pytest.mark.integration

EVENTS = 12_000

# About 4,000 events/s on schedule: the kill lands with a few seconds of stream still to go.
SCENARIO: dict[str, Any] = {
    "name": "producer-kill",
    "seed": 11,
    "curve": {"shape": "constant", "horizon_s": 600.0},
    "scale": {"peak_per_s": 2_500.0, "sample_ratio": 1.0, "compression": 1.0},
    "catalog": {"sku_count": 150},
    "mix": {"pay_delay_mean_s": 0.5, "unpaid_timeout_s": 2.0, "duplicate_rate": 0.02},
}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestration", *args]


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT), "COLUMNS": "200"}


def _without_emit(value: bytes) -> bytes:
    doc = orjson.loads(value)
    doc.pop("emit_ns")
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def _topic_stream(settings: Settings) -> Counter[tuple[bytes, bytes]]:
    """(key, value without emit time) of every event on `orders`, packed messages unpacked."""
    parts = asyncio.run(read_topic(settings.bootstrap_servers or "", settings.topic_orders))
    out: Counter[tuple[bytes, bytes]] = Counter()
    for records in parts.values():
        for r in records:
            if packed_count(r.headers) is None:
                out[(r.key or b"", _without_emit(r.value))] += 1
                continue
            batch = decode_packed(r.value)
            for i in range(batch.n):
                ev = batch.event(i)
                out[(ev.sku.encode(), _without_emit(encode_event(ev)))] += 1
    return out


def _file_stream(path: Path) -> Counter[tuple[bytes, bytes]]:
    out: Counter[tuple[bytes, bytes]] = Counter()
    for line in path.read_bytes().splitlines():
        doc = orjson.loads(line)
        out[(doc["key"].encode(), _without_emit(orjson.dumps(doc["value"])))] += 1
    return out


async def _write_reference(path: Path) -> None:
    """What `flashsale produce --sink jsonl:PATH` writes for the same scenario and events."""
    sink = JsonlSink(path)
    await sink.start()
    try:
        await produce_scenario(sink, Generator(Scenario.model_validate(SCENARIO)), None, EVENTS)
    finally:
        await sink.stop()


def _on_topic(settings: Settings) -> int:
    ends = asyncio.run(end_offsets(settings.bootstrap_servers or "", settings.topic_orders))
    return sum(ends.values())


@pytest.mark.parametrize("pack", [0, pytest.param(200, marks=pytest.mark.slow)])
def test_producer_sigkilled_mid_run_resumes_without_losing_or_repeating_an_order(
    run_settings: Settings, tmp_path: Path, pack: int
) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO))
    reference = tmp_path / "reference.jsonl"
    common = ["--scenario", str(scenario), "--events", str(EVENTS), "--pack", str(pack)]
    asyncio.run(_write_reference(reference))

    bootstrap = ["--bootstrap-servers", run_settings.bootstrap_servers or ""]
    log = (tmp_path / "first.log").open("wb")
    first = subprocess.Popen(
        _command("produce", *bootstrap, *common),
        env=_env(run_settings), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    worker: WorkerProcess | None = None
    try:
        # Kill it with about a third of the messages on the broker and more in flight.
        deadline = time.monotonic() + 30
        while _on_topic(run_settings) < (EVENTS // 3 if not pack else 20):
            assert first.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "the producer sent nothing in 30 s"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        at_kill = _on_topic(run_settings)

        resumed = subprocess.run(
            _command("produce", *bootstrap, *common, "--resume"),
            env=_env(run_settings), cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "resumed:" in resumed.stdout, resumed.stdout

        # Exactly the scenario's first EVENTS events (and its restocks), each once.
        expected = _file_stream(reference)
        got = _topic_stream(run_settings)
        assert sum(got.values()) > at_kill  # the restart sent the rest
        assert got - expected == Counter(), "sent twice or foreign"
        assert expected - got == Counter(), "lost"

        worker = WorkerProcess(run_settings, free_port(), log_path=tmp_path / "worker.log")
        worker.start()
        worker.wait_ready()
        worker.wait_drained(timeout_s=120)
        result = asyncio.run(verify_live(run_settings, run_settings.bootstrap_servers or ""))
        assert result.differences == [], "\n".join(result.differences)
        assert result.summary["reconciled"] is True
        assert result.summary["events_processed"] == EVENTS
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        log.close()
        if worker is not None:
            worker.stop()


def test_resume_on_a_topic_another_client_wrote_last_is_one_line_and_exit_2(
    run_settings: Settings,
) -> None:
    async def send_foreign() -> None:
        await ensure_run_topics(run_settings, run_settings.bootstrap_servers or "")
        producer = aiokafka_producer(run_settings, "foreign")
        await producer.start()
        try:
            await producer.send_and_wait(run_settings.topic_orders, b"{}", key=b"X", partition=1)
        finally:
            await producer.stop()

    asyncio.run(send_foreign())
    done = subprocess.run(
        _command("produce", "--bootstrap-servers", run_settings.bootstrap_servers or "",
                 "--events", "10", "--resume"),
        env=_env(run_settings), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "[1] (offset 0) has no flashsale.seq header" in lines[0]
