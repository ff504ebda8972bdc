"""Broker faults at the peak on a three-node Apache Kafka (replication factor 3,
min.insync.replicas 2), each node in a network namespace of its own: `flashsale demo` runs a
scenario whose fault timeline SIGKILLs the leader of orders/0 at the peak and starts it again
10 s later, or cuts it off the network for 10 s, with the workers at least once or exactly
once. The producer and the worker ride it out, every write the brokers acknowledged is on
`orders` once with its bytes, and verify reconciles.
docs/reliability.md records what the runs measured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from flashsale.brokers.netns import namespaces_unavailable
from flashsale.scenario import get_scenario, load_scenario
from tests.conftest import skip_or_fail
from tests.paths import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

#: The preset of each fault, whose timeline the test keeps.
PRESETS = {"kill": "leader-kill-at-peak", "partition": "partition-at-peak"}
#: When the test's scenario peaks, and its fault happens (scenario seconds).
PEAK_S = 8.0
#: How long its fault lasts (the presets' 10 s, shortened for the suite's time).
FOR_S = 6.0


def _scenario(tmp_path: Path, preset: str) -> Path:
    """The preset at 0.1% of the real orders (about 580 orders/s at the peak) instead of
    0.5%, its peak and its fault 8 s after midnight instead of 26 s, the fault 6 s long
    instead of 10: the same day shape and the same fault, shorter and lighter on a two-core
    machine that runs other tests beside it. docs/reliability.md has the presets' own runs."""
    doc: dict[str, Any] = get_scenario(preset).model_dump(mode="json", by_alias=True)
    doc["scale"]["sample_ratio"] = 0.001
    doc["curve"]["peak_offset_s"] = PEAK_S
    (fault,) = doc["faults"]
    fault["at"] = PEAK_S
    fault["for"] = FOR_S
    path = tmp_path / f"{preset}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _demo(
    tmp_path: Path, scenario: Path, guarantee: str, network: str, duration_s: float
) -> tuple[dict[str, Any], str]:
    """`flashsale demo` of `scenario` on its own three-node Apache Kafka; its summary and
    output (the assertion that it exited 0 shows the output's tail)."""
    summary_path = tmp_path / "summary.json"
    # The test's own broker and guarantee, whatever the environment says (its ports stay).
    mine = (
        "BOOTSTRAP_SERVERS",
        "LOCAL_BROKER",
        "KAFKA_NODES",
        "KAFKA_NETWORK",
        "PROCESSING_GUARANTEE",
    )
    env = {k: v for k, v in os.environ.items() if k.removeprefix("FLASHSALE_") not in mine}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestration",
            "demo",
            "--kafka",
            "--kafka-nodes",
            "3",
            "--kafka-network",
            network,
            "--scenario",
            str(scenario),
            "--processing-guarantee",
            guarantee,
            "--duration",
            str(duration_s),
            "--summary-json",
            str(summary_path),
        ],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=280 + 2 * duration_s,
        check=False,
        cwd=ROOT,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    return orjson.loads(summary_path.read_bytes()), out


@pytest.mark.parametrize(
    ("fault", "guarantee"),
    [
        ("kill", "at_least_once"),
        ("partition", "exactly_once"),
        # The other two pairs cost `make test` another three minutes on two cores: they run
        # with the slow tests (`make test-all`), and docs/reliability.md records them.
        pytest.param("kill", "exactly_once", marks=pytest.mark.slow),
        pytest.param("partition", "at_least_once", marks=pytest.mark.slow),
    ],
)
def test_a_broker_fault_at_the_peak_loses_and_double_counts_nothing(
    fault: str, guarantee: str, tmp_path: Path
) -> None:
    why = namespaces_unavailable()
    if why is not None:
        skip_or_fail(why)
    summary, out = _demo(tmp_path, _scenario(tmp_path, PRESETS[fault]), guarantee, "namespaces", 18)
    # Nothing lost, nothing counted twice: every decision, total and sell-out matches the
    # truth recomputed from orders, and every write a broker acknowledged is on orders once,
    # at its partition and offset, with its bytes.
    assert summary["reconciled"] is True
    assert summary["broker_lost_messages"] == 0
    assert summary["acked_lost"] == 0
    assert summary["acked_duplicated"] == 0
    # Every message the producer sent was acknowledged (restocks and events): none failed.
    assert summary["acked_writes"] == summary["events_produced"] + 600
    assert summary["events_processed"] == summary["events_produced"]
    # The fault happened at the peak, to the broker leading orders/0 then, and was undone.
    (entry,) = summary["faults"]
    assert "error" not in entry, entry["error"]
    assert entry["action"] == fault
    assert entry["resolved"].startswith("broker-")
    assert entry["resolved"].endswith("(broker-leader-of:orders/0)")
    assert PEAK_S <= entry["started_s"] <= PEAK_S + 2.0, entry
    # Undone no earlier than its time (a killed node is back once the metadata lists it).
    assert entry["ended_s"] - entry["started_s"] >= FOR_S, entry
    assert f"fault at {entry['started_s']:.1f} s: {fault} {entry['resolved']}" in out
    for key in ("recovered_after_s", "lag_before", "lag_max", "events_delayed"):
        assert key in entry


@pytest.mark.slow
@pytest.mark.parametrize(
    "example", sorted(p.stem for p in (ROOT / "examples" / "faults").glob("*.yaml"))
)
def test_the_example_fault_timelines_lose_and_double_count_nothing(
    example: str, tmp_path: Path
) -> None:
    """The timelines of examples/faults/ (the controller killed at the peak, a rolling
    restart, a worker killed while a broker is down) at 0.2% of the real orders, at least
    once: every acknowledged write kept once, reconciled. `slow`: about two minutes each."""
    doc: dict[str, Any] = load_scenario(
        ROOT / "examples" / "faults" / f"{example}.yaml"
    ).model_dump(mode="json", by_alias=True)
    doc["scale"]["sample_ratio"] = 0.002
    path = tmp_path / f"{example}.yaml"
    path.write_text(yaml.safe_dump(doc))
    summary, _ = _demo(
        tmp_path, path, "at_least_once", "loopback", 90 if example == "rolling-restart" else 50
    )
    assert summary["reconciled"] is True
    assert summary["acked_lost"] == 0
    assert summary["acked_duplicated"] == 0
    assert summary["acked_writes"] == summary["events_produced"] + 600
    assert summary["faults"] and all("error" not in e for e in summary["faults"])
    assert all(e["ended_s"] is not None for e in summary["faults"])
