"""`flashsale bench` on a local Apache Kafka it starts and stops itself, at a tiny size.

This checks the plumbing, not speed: every stage reports our rate and its ceiling, each peer's
per-SKU sums equal the bare loop's, and no JVM outlives the run. No figure is asserted.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import orjson
import pytest

from benchmarks import bench
from flashsale.brokers.apache import KafkaToolMissing, fetch_kafka
from flashsale.settings import Settings
from tests.conftest import children_of, skip_or_fail

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

TINY = bench.Sizes(
    produce=5_000, aiokafka=2_000, process=2_000, packed=10_000, record=5_000, locust_s=2
)


@pytest.mark.timeout(240)
def test_bench_on_kafka_reports_ours_and_ceiling_per_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        fetch_kafka()
    except KafkaToolMissing as exc:
        skip_or_fail(str(exc))
    for package in ("bytewax", "quixstreams"):
        if bench.peer_python(package) is None:
            skip_or_fail(f"the bench's peer {package} (`make test` installs it)")
    monkeypatch.setattr(bench, "PRODUCE_ROUNDS", 1)
    monkeypatch.setattr(bench, "PROCESS_ROUNDS", 1)
    # Children of this process before: a broker another test of this process started.
    before = set(children_of(os.getpid()))
    out = tmp_path / "bench.json"
    rc = bench.run_bench(Settings(), quick=True, json_path=out, brokers=("kafka",), sizes=TINY)
    doc = orjson.loads(out.read_bytes())
    assert rc == 0, doc
    assert "embedded" not in doc
    assert doc["skipped"] == {}
    half = doc["kafka"]
    assert half["broker"].startswith("Apache Kafka ")
    stages = half["stages"]
    for name in (
        "generate",
        "produce_confluent",
        "produce_aiokafka",
        "process_stream",
        "process_per_order",
        "locust_kafka",
        "process_packed",
        "record",
        "replay",
    ):
        assert stages[name]["ours_per_s"] > 0, name
        assert stages[name]["ceiling_per_s"] > 0, name
        assert stages[name]["ratio"] is not None, name
    for peer in ("bytewax_per_sku", "quixstreams_per_sku"):
        assert stages[peer]["correct"], stages[peer]
        assert stages[peer]["paid_cents"] == stages[peer]["expected_paid_cents"] > 0
    # The JVM, workers and peers were this process's children: none may be left.
    left = set(children_of(os.getpid())) - before
    for pid in left:  # started by this run, so ours to end
        os.kill(pid, signal.SIGKILL)
    assert not left, f"the bench left processes running: {sorted(left)}"
