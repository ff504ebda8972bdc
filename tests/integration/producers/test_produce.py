"""`flashsale produce` on the embedded broker: both clients, split producers, files, pacing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from flashsale.kafka.reading import read_topic
from flashsale.settings import Settings
from tests.paths import ROOT

pytestmark = pytest.mark.integration


SCENARIO: dict[str, Any] = {
    "name": "produce-test",
    "seed": 3,
    "curve": {"shape": "constant", "horizon_s": 600.0},
    "scale": {"peak_per_s": 3_000.0, "sample_ratio": 1.0, "compression": 1.0},
    "catalog": {"sku_count": 120},
    "mix": {"pay_delay_mean_s": 0.5, "unpaid_timeout_s": 2.0, "duplicate_rate": 0.02},
}


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "produce-test.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    return path


def flashsale(
    settings: Settings | None, *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(settings.to_env() if settings else {}), "PYTHONPATH": str(ROOT)}
    if settings is None:
        env.pop("FLASHSALE_BOOTSTRAP_SERVERS", None)
    return subprocess.run(
        [sys.executable, "-m", "orchestration", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def without_emit(value: bytes) -> bytes:
    doc = orjson.loads(value)
    doc.pop("emit_ns")
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def topic_events(settings: Settings) -> list[tuple[bytes, bytes, int]]:
    """(key, value without emit time, partition) of every non-restock record on `orders`."""
    parts = asyncio.run(read_topic(settings.bootstrap_servers or "", settings.topic_orders))
    return [
        (r.key, without_emit(r.value), partition)
        for partition, records in parts.items()
        for r in records
        if b'"restock"' not in r.value
    ]


def file_events(path: Path) -> list[tuple[bytes, bytes]]:
    out = []
    for line in path.read_bytes().splitlines():
        doc = orjson.loads(line)
        if doc["value"]["type"] != "restock":
            value = doc["value"]
            value.pop("emit_ns")
            out.append((doc["key"].encode(), orjson.dumps(value, option=orjson.OPT_SORT_KEYS)))
    return out


def test_jsonl_runs_are_byte_identical_and_split_runs_hold_the_same_lines(
    scenario_file: Path, tmp_path: Path
) -> None:
    one, two, split = tmp_path / "one.jsonl", tmp_path / "two.jsonl", tmp_path / "split.jsonl"
    for path, workers in ((one, "1"), (two, "1"), (split, "3")):
        done = flashsale(
            None,
            "produce",
            "--scenario",
            str(scenario_file),
            "--events",
            "20000",
            "--workers",
            workers,
            "--sink",
            f"jsonl:{path}",
        )
        assert done.returncode == 0, done.stderr
    assert one.read_bytes() == two.read_bytes()
    lines = one.read_bytes().splitlines()
    restocks = [ln for ln in lines if b'"type":"restock"' in ln]
    assert len(restocks) == SCENARIO["catalog"]["sku_count"]
    assert len(lines) - len(restocks) == 20_000
    assert Counter(split.read_bytes().splitlines()) == Counter(lines)
    assert not list(tmp_path.glob("*.part*"))


@pytest.mark.parametrize("client", ["aiokafka", "confluent"])
def test_both_clients_deliver_the_file_stream_to_kafka(
    run_settings: Settings, scenario_file: Path, tmp_path: Path, client: str
) -> None:
    reference = tmp_path / "ref.jsonl"
    assert (
        flashsale(
            None,
            "produce",
            "--scenario",
            str(scenario_file),
            "--events",
            "6000",
            "--sink",
            f"jsonl:{reference}",
        ).returncode
        == 0
    )
    done = flashsale(
        run_settings,
        "produce",
        "--scenario",
        str(scenario_file),
        "--events",
        "6000",
        "--client",
        client,
    )
    assert done.returncode == 0, done.stderr
    on_topic = topic_events(run_settings)
    assert Counter((k, v) for k, v, _ in on_topic) == Counter(file_events(reference))
    # One SKU, one partition, whichever client sent it (murmur2, as Java and aiokafka).
    by_key: dict[bytes, set[int]] = {}
    for key, _, partition in on_topic:
        by_key.setdefault(key, set()).add(partition)
    assert all(len(p) == 1 for p in by_key.values())
    from aiokafka.partitioner import DefaultPartitioner

    partitioner = DefaultPartitioner()
    some = list(by_key.items())[:20]
    assert all(
        partitioner(k, list(range(run_settings.partitions)), []) == next(iter(p)) for k, p in some
    )


def test_split_producers_emit_the_one_process_stream(
    run_settings: Settings, scenario_file: Path, tmp_path: Path
) -> None:
    reference = tmp_path / "ref.jsonl"
    flashsale(
        None,
        "produce",
        "--scenario",
        str(scenario_file),
        "--events",
        "9000",
        "--sink",
        f"jsonl:{reference}",
    )
    done = flashsale(
        run_settings,
        "produce",
        "--scenario",
        str(scenario_file),
        "--events",
        "9000",
        "--workers",
        "2",
    )
    assert done.returncode == 0, done.stderr
    assert Counter((k, v) for k, v, _ in topic_events(run_settings)) == Counter(
        file_events(reference)
    )


@pytest.mark.solo  # 1% over three seconds holds on a machine the producer has to itself
def test_pacing_holds_the_scheduled_rate_each_second(
    run_settings: Settings, scenario_file: Path
) -> None:
    done = flashsale(
        run_settings,
        "produce",
        "--scenario",
        str(scenario_file),
        "--duration",
        "5",
        "--client",
        "confluent",
    )
    assert done.returncode == 0, done.stderr
    parts = asyncio.run(read_topic(run_settings.bootstrap_servers or "", run_settings.topic_orders))
    first_sent: dict[str, int] = {}
    for records in parts.values():
        for r in records:
            doc = orjson.loads(r.value)
            if doc["type"] == "created" and doc["line"] == 0:
                first_sent[doc["order_id"]] = min(
                    first_sent.get(doc["order_id"], doc["emit_ns"]), doc["emit_ns"]
                )
    # Orders per wall second (stamped when sent) against the 3,000/s the curve schedules.
    start = min(first_sent.values())
    per_second = Counter((ns - start) // 1_000_000_000 for ns in first_sent.values())
    full = [per_second[s] for s in range(1, 4)]
    # Each second within 10% (300 orders: 100 ms of the schedule moved across a second's
    # edge, which this shared machine's scheduler has done: 2,911, 2,885 then 3,184), and the
    # three together within 1%: a pace that drifts fails that, one that bursts and waits the
    # other.
    assert all(abs(n - 3_000) / 3_000 <= 0.10 for n in full), full
    assert abs(sum(full) - 9_000) / 9_000 <= 0.01, full


def test_a_producer_behind_schedule_says_so(run_settings: Settings, tmp_path: Path) -> None:
    # A million orders a second for 1.5 s: no client here keeps up, and librdkafka gets
    # through the 2.4 million events (lifecycle included) in seconds.
    fast = {**SCENARIO, "scale": {**SCENARIO["scale"], "peak_per_s": 1_000_000.0}}
    path = tmp_path / "too-fast.yaml"
    path.write_text(yaml.safe_dump(fast))
    done = flashsale(
        run_settings,
        "produce",
        "--scenario",
        str(path),
        "--duration",
        "1.5",
        "--client",
        "confluent",
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    assert "behind schedule" in out
