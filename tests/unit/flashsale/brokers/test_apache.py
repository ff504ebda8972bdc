"""The local Kafka manager without a JVM: cluster ids, broker settings, node properties."""

from __future__ import annotations

import base64
from pathlib import Path

from flashsale.brokers.apache import KafkaCluster, broker_settings, new_cluster_id


def test_cluster_ids_are_16_url_safe_bytes_that_never_look_like_an_option() -> None:
    ids = [new_cluster_id() for _ in range(5_000)]
    assert len(set(ids)) == len(ids)
    for cid in ids:
        assert len(cid) == 22 and not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_internal_topics_fit_the_cluster_and_the_rest_stays_stock() -> None:
    one, three = broker_settings(1), broker_settings(3)
    assert one["offsets.topic.replication.factor"] == "1"
    assert one["transaction.state.log.min.isr"] == "1"
    assert three["offsets.topic.replication.factor"] == "3"
    assert three["transaction.state.log.min.isr"] == "2"
    assert one["auto.create.topics.enable"] == three["auto.create.topics.enable"] == "false"
    # What a stock broker enforces is left at its default, so the suite meets it.
    for stock in ("group.min.session.timeout.ms", "message.max.bytes", "min.insync.replicas"):
        assert stock not in one and stock not in three


def test_each_node_listens_on_loopback_ports_of_its_own_and_names_every_voter(
    tmp_path: Path,
) -> None:
    cluster = KafkaCluster(nodes=3, data=tmp_path, advertised={2: "127.0.0.1:1234"})
    cluster._layout()
    props = [cluster._properties(n) for n in cluster.nodes]
    ports = [p for n in cluster.nodes for p in (n.port, n.controller_port)]
    assert len(set(ports)) == 6
    voters = {p["controller.quorum.voters"] for p in props}
    assert voters == {",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in cluster.nodes)}
    for node, p in zip(cluster.nodes, props, strict=True):
        assert p["node.id"] == str(node.node_id)
        assert p["listeners"] == (
            f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}"
        )
        assert p["process.roles"] == "broker,controller"
        assert p["log.dirs"] == str(tmp_path / f"node-{node.node_id}" / "logs")
    assert props[1]["advertised.listeners"] == "PLAINTEXT://127.0.0.1:1234"
    assert props[0]["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{cluster.nodes[0].port}"
    # A second manager on the folder keeps the cluster id and the ports.
    again = KafkaCluster(nodes=3, data=tmp_path)
    again._layout()
    assert again.cluster_id == cluster.cluster_id
    assert [n.port for n in again.nodes] == [n.port for n in cluster.nodes]
