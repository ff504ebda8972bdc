"""Recorded runs end to end: `demo --record`, offline `verify RUN_DIR`, `replay`, `record`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest

from flashsale.kafka.admin import ensure_topics
from flashsale.kafka.reading import read_topic
from flashsale.settings import Settings
from producers.generator import Generator
from producers.pacing import produce_scenario
from producers.sinks.kafka import OrderEmitter
from recordings.format import load_run
from tests.conftest import TestBroker
from tests.integration.helpers import SMALL
from verify.summary import BUSINESS_FIELDS

# One test process takes this file whole, with test_report.py: both use the session's
# recorded run, made once per process.
pytestmark = pytest.mark.xdist_group("recorded_run")


def flashsale(
    *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestration", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def business(summary: dict[str, object]) -> dict[str, object]:
    return {k: summary[k] for k in BUSINESS_FIELDS}


def demo_summary(run_dir: Path) -> dict[str, object]:
    doc: dict[str, object] = json.loads((run_dir.parent / "demo-summary.json").read_text())
    return doc


def test_offline_verify_of_a_recorded_demo_gives_the_live_verdict(
    recorded_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "offline.json"
    done = flashsale("verify", str(recorded_run), "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reconciled: GMV" in done.stdout
    offline = json.loads(out.read_text())
    live = demo_summary(recorded_run)
    assert offline["reconciled"] is True
    assert offline["orders_produced"] > 1000
    assert business(offline) == business(live)


def test_replay_into_fresh_broker_and_worker_verifies_equal_to_the_original(
    recorded_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "replay.json"
    done = flashsale("replay", str(recorded_run), "--speed", "max", "--summary-json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the replay equals the recorded run" in done.stdout
    replayed = json.loads(out.read_text())
    assert replayed["reconciled"] is True
    assert business(replayed) == business(demo_summary(recorded_run))
    # emit_ns was moved to the replay's clock: latency is the replay's, not the age of the run.
    assert replayed["e2e_latency_p50_ms"] < 5_000


def test_replay_keeps_partitions_keys_headers_order_and_scales_the_pace(
    recorded_run: Path, broker: TestBroker
) -> None:
    run = load_run(recorded_run)
    source = run.topic("orders")
    topic = f"replayed-{uuid.uuid4().hex[:8]}"
    done = flashsale(
        "replay",
        str(recorded_run),
        "--speed",
        "4",
        "--keep-emit-ns",
        "--bootstrap-servers",
        broker.bootstrap,
        env={**broker.env(), "FLASHSALE_TOPIC_ORDERS": topic},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    got = asyncio.run(read_topic(broker.bootstrap, topic))
    assert sorted(got) == sorted(source)
    for partition, recorded in source.items():
        replayed = got[partition]
        assert [(m.key, m.value, list(m.headers)) for m in recorded] == [
            (r.key, r.value, list(r.headers)) for r in replayed
        ]

    def span_ms(stamps: list[int]) -> int:
        return max(stamps) - min(stamps)

    recorded_span = span_ms([m.timestamp_ms for msgs in source.values() for m in msgs])
    replayed_span = span_ms([r.timestamp for recs in got.values() for r in recs])
    assert recorded_span > 5_000
    assert 0.2 * recorded_span < replayed_span < 0.4 * recorded_span


def test_replay_into_a_topic_with_fewer_partitions_is_a_one_line_error(
    recorded_run: Path, broker: TestBroker
) -> None:
    topic = f"narrow-{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topics(broker.bootstrap, [topic], 1))
    done = flashsale(
        "replay",
        str(recorded_run),
        "--bootstrap-servers",
        broker.bootstrap,
        env={**broker.env(), "FLASHSALE_TOPIC_ORDERS": topic},
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"topic {topic} has 1 partitions, the recorded orders had 4" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


async def _fill(settings: Settings, events: int) -> int:
    emitter = OrderEmitter(settings)
    await emitter.start()
    try:
        await produce_scenario(emitter, Generator(SMALL), None, events, paced=False)
    finally:
        await emitter.stop()
    return emitter.stats.acked


def test_sigint_during_record_leaves_a_capture_that_a_second_record_completes(
    broker: TestBroker, tmp_path: Path
) -> None:
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    settings = broker.fresh_settings(topic_orders=topic)
    asyncio.run(ensure_topics(broker.bootstrap, [topic], 4))
    total = asyncio.run(_fill(settings, 150_000))
    args = ["record", "--topics", topic, "--bootstrap-servers", broker.bootstrap]
    whole, parts = tmp_path / "whole", tmp_path / "parts"

    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestration", *args, "--out", str(parts)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **broker.env()},
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("recording "):
            break
    # Interrupt once the first row group (50,000 messages) is on disk, not after a fixed
    # sleep: on a busy machine the capture may not have read anything by then.
    first_part = parts / "topics" / topic / "part-00000.parquet"
    deadline = time.monotonic() + 30
    while not first_part.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    first = orjson.loads((parts / "manifest.json").read_bytes())
    assert first["complete"] is False
    assert 0 < first["messages"] < total
    assert first["sessions"][0]["interrupted"] is True

    again = flashsale(*args, "--out", str(parts))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "(resumed)" in again.stdout
    assert flashsale(*args, "--out", str(whole)).returncode == 0

    resumed, uninterrupted = load_run(parts), load_run(whole)
    assert resumed.manifest["complete"] is True
    assert len(resumed.manifest["topics"][topic]["files"]) == 2
    assert resumed.manifest["messages"] == uninterrupted.manifest["messages"] == total
    assert resumed.topics == uninterrupted.topics
