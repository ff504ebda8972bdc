"""The local Apache Kafka manager: jars checked and reused, nodes that stop, die and come
back, a cluster that restarts on its data, and one line when Java or Maven is missing."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from flashsale.brokers.apache import (
    KAFKA_VERSION,
    KafkaCluster,
    cluster_brokers,
    fetch_kafka,
    kafka_cache,
)
from flashsale.kafka.reading import read_topic
from tests.conftest import start_kafka
from tests.paths import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def _create(bootstrap: str, topic: str, partitions: int, replicas: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, replicas)])
    finally:
        await admin.close()


def _values(bootstrap: str, topic: str) -> list[bytes]:
    got = asyncio.run(read_topic(bootstrap, topic))
    return [r.value for p in sorted(got) for r in got[p] if r.value is not None]


def _wait_brokers(bootstrap: str, wanted: list[int], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    seen: list[int] = []
    while time.monotonic() < deadline:
        try:
            seen = cluster_brokers(bootstrap)
        except Exception:  # a node on its way down or up
            seen = []
        if seen == wanted:
            return
        time.sleep(0.2)
    raise AssertionError(f"metadata lists brokers {seen}, not {wanted}")


def test_a_topic_and_its_records_survive_restarts_of_the_cluster_and_of_its_folder(
    tmp_path: Path,
) -> None:
    data = tmp_path / "kafka"
    values = [f"order-{i}".encode() for i in range(50)]
    cluster = start_kafka(1, data=data)
    try:
        asyncio.run(_create(cluster.bootstrap, "durable", 2, replicas=1))
        asyncio.run(_produce(cluster.bootstrap, "durable", values))
        cluster.restart()  # every node stopped and started on its data
        assert sorted(_values(cluster.bootstrap, "durable")) == sorted(values)
        cluster.kill_node(1)  # a crash, not a clean stop: the log is recovered at start
        assert cluster.pid is None
        cluster.start_node(1)
        assert sorted(_values(cluster.bootstrap, "durable")) == sorted(values)
        first_id, first_ports = cluster.cluster_id, cluster.bootstrap
    finally:
        cluster.stop()
    assert (data / "node-1" / "logs" / "meta.properties").is_file()  # kept: it was given
    # A new manager on the same folder: the same cluster, on the same ports when free.
    again = start_kafka(1, data=data)
    try:
        assert again.cluster_id == first_id
        assert again.bootstrap == first_ports
        assert sorted(_values(again.bootstrap, "durable")) == sorted(values)
    finally:
        again.stop()
    with pytest.raises(Exception, match="holds a 1-node cluster, not 3"):
        KafkaCluster(nodes=3, data=data).start()


# `slow`: tests/faults/test_cluster_faults.py's kill run SIGKILLs and restarts a node of three
# in `make test`, with every acknowledged write found again.
@pytest.mark.slow
def test_three_nodes_lose_and_regain_one_node_and_replicated_data_stays_readable() -> None:
    cluster = start_kafka(3)
    try:
        assert cluster_brokers(cluster.bootstrap) == [1, 2, 3]
        mem = cluster.memory_mb()
        assert sorted(mem) == [1, 2, 3] and all(50 < mb < 2048 for mb in mem.values()), mem
        asyncio.run(_create(cluster.bootstrap, "replicated", 3, replicas=3))
        values = [f"v{i}".encode() for i in range(30)]
        asyncio.run(_produce(cluster.bootstrap, "replicated", values))
        cluster.kill_node(2)
        others = ",".join(f"127.0.0.1:{n.port}" for n in cluster.nodes if n.node_id != 2)
        _wait_brokers(others, [1, 3])
        assert sorted(_values(others, "replicated")) == sorted(values)
        cluster.start_node(2)
        assert cluster_brokers(cluster.bootstrap) == [1, 2, 3]
        cluster.stop_node(3)  # SIGTERM: a controlled shutdown
        assert cluster.node(3).proc is None
        _wait_brokers(others.split(",")[0], [1, 2])
        cluster.start_node(3)
        assert sorted(_values(cluster.bootstrap, "replicated")) == sorted(values)
    finally:
        cluster.stop()
    assert all(n.proc is None for n in cluster.nodes)


def test_jars_that_do_not_match_their_sums_are_fetched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    libs = fetch_kafka()  # the cache the tier's clusters use, fetched already
    copy = tmp_path / "cache"
    shutil.copytree(libs.parent, copy / KAFKA_VERSION)
    monkeypatch.setenv("FLASHSALE_KAFKA_CACHE", str(copy))
    assert kafka_cache() == copy / KAFKA_VERSION
    jar = copy / KAFKA_VERSION / "libs" / f"kafka_2.13-{KAFKA_VERSION}.jar"
    good = jar.read_bytes()
    jar.write_bytes(good[:1000])  # a download cut short
    assert fetch_kafka() == copy / KAFKA_VERSION / "libs"
    assert jar.read_bytes() == good


def _flashsale(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestration", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


@pytest.mark.parametrize("missing", ["java", "mvn"])
def test_without_java_or_maven_the_kafka_command_says_how_to_get_them(
    tmp_path: Path, missing: str
) -> None:
    # A PATH holding only what is not missing; an empty cache, so Maven would be needed.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("java", "mvn"):
        found = shutil.which(tool)
        if tool != missing and found:
            (bin_dir / tool).symlink_to(found)
    env = {"PATH": str(bin_dir), "FLASHSALE_KAFKA_CACHE": str(tmp_path / "empty-cache")}
    for args in (["kafka"], ["demo", "--kafka", "--duration", "5"]):
        done = _flashsale(args, env)
        assert done.returncode == 2, done.stdout + done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith(f"flashsale: error: {missing} not found;"), lines
        assert "apt-get install openjdk-17-jre-headless maven" in lines[0]
        assert "Traceback" not in done.stdout + done.stderr
