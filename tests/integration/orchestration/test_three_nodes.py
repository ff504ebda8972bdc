"""The commands against a three-node Apache Kafka given as `--bootstrap-servers`: every topic
flashsale makes (Faust's included) is replicated three times with min.insync.replicas 2, the
demo reconciles, its recorded run replays onto the cluster, and a load test reconciles."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from flashsale.kafka.admin import leader_topic
from flashsale.kafka.reading import read_topic
from flashsale.processes import free_port
from flashsale.settings import Settings
from recordings.format import load_run
from tests.conftest import TestBroker
from tests.paths import ROOT
from verify.summary import BUSINESS_FIELDS

# One test process takes this file whole (kafka3, started once per process).
pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.xdist_group("kafka3")]


def _run(settings: Settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestration", *args],
        env={**os.environ, **settings.to_env(), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


async def _replication(bootstrap: str, topics: list[str]) -> dict[str, tuple[int, str]]:
    """Per topic: replicas of each partition (all equal, or -1) and its min.insync.replicas."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
        )
    finally:
        await admin.close()
    isr = {}
    for response in configs:
        for resource in response.resources:
            name, entries = resource[3], resource[4]
            isr[name] = next(e[1] for e in entries if e[0] == "min.insync.replicas")
    out = {}
    for topic in described:
        counts = {len(p["replicas"]) for p in topic["partitions"]}
        out[topic["topic"]] = (counts.pop() if len(counts) == 1 else -1, isr[topic["topic"]])
    return out


# `slow` (two to three minutes on two cores, with the cluster's start): the fault runs of
# tests/faults/test_cluster_faults.py run `flashsale demo` on three nodes in `make test`.
@pytest.mark.slow
def test_demo_on_three_nodes_reconciles_with_every_topic_replicated_three_times(
    kafka3: TestBroker, tmp_path: Path
) -> None:
    settings = kafka3.fresh_settings(web_port=free_port(), dashboard_port=free_port())
    run_dir = tmp_path / "run"
    summary = tmp_path / "summary.json"
    done = _run(
        settings,
        "demo",
        "--bootstrap-servers",
        kafka3.bootstrap,
        "--duration",
        "10",
        "--record",
        str(run_dir),
        "--summary-json",
        str(summary),
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    doc = json.loads(summary.read_text())
    assert doc["reconciled"] is True
    assert doc["orders_produced"] > 1000
    assert doc["orders_processed"] == doc["orders_produced"]
    assert doc["oversold_skus"] == 0

    topics = [*settings.run_topics(), settings.state_changelog_topic(), leader_topic(settings)]
    replication = asyncio.run(_replication(kafka3.bootstrap, topics))
    assert replication == {t: (3, "2") for t in topics}

    # The recording replays onto the cluster, into topics of its own, message for message.
    target = kafka3.fresh_settings()
    replayed = _run(
        target,
        "replay",
        str(run_dir),
        "--speed",
        "max",
        "--keep-emit-ns",
        "--bootstrap-servers",
        kafka3.bootstrap,
    )
    assert replayed.returncode == 0, replayed.stdout[-3000:] + replayed.stderr[-2000:]
    source = load_run(run_dir).topic(settings.topic_orders)
    got = asyncio.run(read_topic(kafka3.bootstrap, target.topic_orders))
    assert {p: [(m.key, m.value) for m in msgs] for p, msgs in source.items()} == {
        p: [(r.key, r.value) for r in recs] for p, recs in got.items()
    }
    # And its live verdict is what an offline verify of the recording says.
    offline = tmp_path / "offline.json"
    checked = _run(settings, "verify", str(run_dir), "--json", str(offline))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert {k: json.loads(offline.read_text())[k] for k in BUSINESS_FIELDS} == {
        k: doc[k] for k in BUSINESS_FIELDS
    }


# `slow` (about two minutes on two cores): the three-node demo above, and the fault runs of
# tests/faults/test_cluster_faults.py, hold three nodes in `make test`.
@pytest.mark.slow
def test_load_test_and_soak_on_three_nodes_reconcile(kafka3: TestBroker, tmp_path: Path) -> None:
    settings = kafka3.fresh_settings(
        web_port=free_port(), gateway_port=free_port(), dashboard_port=free_port()
    )
    load = _run(
        settings,
        "loadtest",
        "--bootstrap-servers",
        kafka3.bootstrap,
        "--target",
        "kafka",
        "--duration",
        "10",
        "--users",
        "2",
        "--shape",
        "constant",
        "--rate",
        "1000",
    )
    assert load.returncode == 0, load.stdout[-4000:] + load.stderr[-2000:]
    assert "reconciled                     │ true" in load.stdout, load.stdout[-3000:]

    soak = kafka3.fresh_settings(
        web_port=free_port(), gateway_port=free_port(), dashboard_port=free_port()
    )
    out = tmp_path / "soak"
    done = _run(
        soak,
        "soak",
        "--bootstrap-servers",
        kafka3.bootstrap,
        "--minutes",
        "0.2",
        "--sample-s",
        "1",
        "--out",
        str(out),
    )
    report = json.loads((out / "soak.json").read_text())
    assert report["summary"]["reconciled"] is True, done.stdout[-3000:]
    assert len(report["samples"]) >= 8
    # Twelve seconds on three JVMs sharing two cores: the lag judgement (made for runs of
    # minutes) may fail on a busy machine; nothing else may.
    others = [p for p in report["problems"] if "consumer lag kept rising" not in p]
    assert others == [], report["problems"]
    assert done.returncode == (0 if not report["problems"] else 1), done.stdout[-3000:]
