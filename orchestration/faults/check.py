"""Which fault timelines a run can carry out, judged before anything starts."""

from __future__ import annotations

from flashsale.scenario import Scenario

__all__ = ["FaultError", "check_faults"]


class FaultError(ValueError):
    """A fault timeline this run cannot carry out; one line."""


def check_faults(
    scenario: Scenario,
    *,
    broker: str,
    nodes: int = 1,
    network: str = "loopback",
    workers: int = 1,
    gateway: bool = False,
    producer: bool = True,
) -> None:
    """Raise `FaultError` (one line) for a fault of `scenario` a run cannot carry out, before
    anything starts. `broker`: embedded, kafka (a local Apache Kafka flashsale starts, of
    `nodes` on `network`) or external (--bootstrap-servers)."""
    for spec in sorted(scenario.faults, key=lambda f: f.at):
        target = spec.parsed_target
        what = f"fault {spec.describe()}"
        if target.kind in ("broker", "brokers"):
            if broker != "kafka":
                where = (
                    "the embedded broker keeps its data in memory only"
                    if broker == "embedded"
                    else "the brokers of --bootstrap-servers are not flashsale's to break"
                )
                raise FaultError(
                    f"{what}: broker faults need a local Apache Kafka "
                    f"(--kafka --kafka-nodes 3); {where}"
                )
            if target.node is not None and target.node > nodes:
                raise FaultError(f"{what}: the cluster has {nodes} node(s)")
            if spec.action == "partition" and network != "namespaces":
                raise FaultError(
                    f"{what}: cutting a broker off the network needs the nodes in network "
                    "namespaces of their own: --kafka-network namespaces (root)"
                )
            if nodes < 3 and spec.action != "stall":
                raise FaultError(
                    f"{what}: a {nodes}-node cluster has no replica to fail over to: "
                    "--kafka-nodes 3"
                )
        if target.kind == "worker" and (target.index or 0) > workers:
            raise FaultError(f"{what}: the run has {workers} worker(s)")
        if target.kind == "gateway" and not gateway:
            raise FaultError(f"{what}: this run has no gateway")
        if target.kind == "producer" and not producer:
            raise FaultError(f"{what}: locust sends this run's orders, not flashsale's producer")
