"""A three-node Apache Kafka whose nodes have network namespaces of their own: the leader of a
partition cut off the network loses it, acks=all writes go on at two replicas, and the healed
node catches up into every ISR; a paused node answers nothing until resumed. Root only."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from flashsale.brokers.apache import KafkaCluster
from flashsale.brokers.base import BrokerError
from flashsale.brokers.netns import find_ip, namespaces_unavailable
from flashsale.kafka.reading import read_topic
from tests.conftest import skip_or_fail, start_kafka

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.xdist_group("netns")]

TOPIC = "partitioned"
# A fenced broker's session runs out in 6 s instead of 9 s: the leader moves sooner.
FAST_FENCING = {"broker.session.timeout.ms": "6000", "broker.heartbeat.interval.ms": "1000"}


async def _create(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(TOPIC, 3, 3, topic_configs={"min.insync.replicas": "2"})]
        )
    finally:
        await admin.close()


async def _produce(bootstrap: str, values: list[bytes], partition: int | None = None) -> None:
    # A short request timeout: a request sent to the cut node fails and is retried elsewhere.
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, request_timeout_ms=5000
    )
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send_and_wait(TOPIC, value, key=b"k%d" % i, partition=partition)
    finally:
        await producer.stop()


def _until(what: str, check: Callable[[], bool], timeout_s: float = 90.0) -> float:
    """Seconds until `check()` is true (it may raise BrokerError meanwhile)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if check():
                return time.monotonic() - started
        except BrokerError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} not seen in {timeout_s:.0f} s")


def _answers(host: str, port: int) -> bool:
    """True when the node answers a Kafka request within a second, False when it does not."""
    request = (
        b"\x00\x00\x00\x19"  # size
        + b"\x00\x03\x00\x01\x00\x00\x00\x07\x00\x0bflashsale-p"  # Metadata v1, correlation 7
        + b"\xff\xff\xff\xff"  # all topics
    )
    try:
        with socket.create_connection((host, port), timeout=1.0) as conn:
            conn.sendall(request)
            return len(conn.recv(8)) > 0
    except OSError:
        return False


def _ours(cluster_prefix: str) -> list[str]:
    ip = find_ip() or "ip"
    listed = subprocess.run([ip, "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run([ip, "-o", "link", "show"], capture_output=True, text=True).stdout
    return [w for w in (listed + links).replace(":", " ").split() if w.startswith(cluster_prefix)]


# `slow`: tests/faults/test_cluster_faults.py's partition run cuts a leader off and heals it
# (back in every ISR) in `make test`.
@pytest.mark.slow
def test_a_cut_leader_loses_its_partition_writes_go_on_and_it_rejoins_every_isr_when_healed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    why = namespaces_unavailable()
    if why is not None:
        skip_or_fail(why)
    try:
        cluster: KafkaCluster = start_kafka(3, network="namespaces", overrides=FAST_FENCING)
    except BrokerError as exc:
        if "Operation not permitted" not in str(exc):
            raise
        skip_or_fail(f"root here may not build network namespaces: {exc}")
    assert cluster.node_network is not None
    prefix = cluster.node_network.prefix
    try:
        hosts = [n.host for n in cluster.nodes]
        assert len(set(hosts)) == 3 and not any(h.startswith("127.") for h in hosts)
        assert cluster.bootstrap == ",".join(f"{h}:9092" for h in hosts)
        asyncio.run(_create(cluster.bootstrap))
        before = [f"before-{i}".encode() for i in range(30)]
        asyncio.run(_produce(cluster.bootstrap, before))

        leader = cluster.partitions(TOPIC)[0][0]
        others = [n for n in cluster.nodes if n.node_id != leader]
        survivors = ",".join(f"{n.host}:{n.port}" for n in others)
        cluster.cut_node(leader)
        assert cluster.cut_nodes() == [leader]
        # Neither clients on the host nor the other nodes reach it; its JVM runs on.
        assert not _answers(cluster.node(leader).host, cluster.node(leader).port)
        assert cluster.node(leader).alive()

        def moved() -> bool:
            parts = cluster.partitions(TOPIC, others[0].node_id)
            return parts[0][0] not in (leader, -1) and leader not in parts[0][1]

        to_leader = _until("a new leader of partition 0", moved)
        during = [f"during-{i}".encode() for i in range(20)]
        asyncio.run(_produce(survivors, during, partition=0))  # acks=all, 2 in-sync replicas

        cluster.heal_node(leader)
        assert cluster.cut_nodes() == []

        def rejoined() -> bool:
            parts = cluster.partitions(TOPIC, others[0].node_id)
            return all(leader in isr for _, isr in parts.values())

        to_isr = _until("the healed node in every ISR", rejoined)
        got = asyncio.run(read_topic(cluster.bootstrap, TOPIC))
        values = sorted(r.value for recs in got.values() for r in recs if r.value is not None)
        assert values == sorted(before + during)

        # A paused JVM: connections are accepted, nothing answers until it is resumed.
        follower = others[1]
        cluster.pause_node(follower.node_id)
        assert cluster.paused_nodes() == [follower.node_id]
        # Silent within seconds (once on a loaded machine it still answered one request
        # right after the SIGSTOP).
        _until("the paused node's silence", lambda: not _answers(follower.host, follower.port), 10)
        cluster.resume_node(follower.node_id)
        _until("the resumed node's answer", lambda: _answers(follower.host, follower.port))
        with capsys.disabled():
            print(
                f"\nstarted in {cluster.started_s:.1f} s, cut to new leader {to_leader:.1f} s, "
                f"heal to back in every ISR {to_isr:.1f} s"
            )
        cluster.cut_node(follower.node_id)  # stop() heals it, stops every node, removes all
    finally:
        cluster.stop()
    assert _ours(prefix) == []
    cluster.stop()  # a second stop finds nothing left to remove
    with pytest.raises(BrokerError, match="network='namespaces'"):
        KafkaCluster(nodes=1).cut_node(1)
