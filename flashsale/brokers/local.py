"""Which broker a command runs on: the servers the settings name, or a local broker started
for the command (the embedded one, or Apache Kafka with `local_broker` kafka).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from flashsale.brokers.apache import KafkaCluster
from flashsale.brokers.base import BrokerError
from flashsale.brokers.embedded import EmbeddedBroker
from flashsale.settings import Settings

__all__ = ["LocalBroker", "bootstrap_for", "broker_for", "describe_broker", "settings_on"]


@contextlib.contextmanager
def bootstrap_for(settings: Settings, announce: bool = True) -> Iterator[str]:
    """The given bootstrap servers, or an embedded broker started for the block."""
    with broker_for(settings, announce) as (bootstrap, _):
        yield bootstrap


LocalBroker = EmbeddedBroker | KafkaCluster


def settings_on(settings: Settings, bootstrap: str) -> Settings:
    """`settings` on `bootstrap`, the servers `bootstrap_for` / `broker_for` gave: when the
    settings name none and the local broker is the embedded one, that is the broker
    started for them, and its defaults
    (`Settings.for_embedded_broker`) apply to every field not set explicitly. Resolve before
    spawning a process: children get their settings through `Settings.to_env()`."""
    embedded = not settings.bootstrap_servers and settings.local_broker == "embedded"
    base = settings.for_embedded_broker() if embedded else settings
    return base.model_copy(update={"bootstrap_servers": bootstrap})


@contextlib.contextmanager
def broker_for(
    settings: Settings, announce: bool = True
) -> Iterator[tuple[str, LocalBroker | None]]:
    """`bootstrap_for`, with the broker it started (None for the given servers): the
    embedded one, or a local Apache Kafka when `settings.local_broker` is `kafka`."""
    if settings.bootstrap_servers:
        yield settings.bootstrap_servers, None
        return
    if settings.local_broker == "kafka":
        cluster = KafkaCluster(
            nodes=settings.kafka_nodes,
            host=settings.web_host,
            network=settings.kafka_network,
            say=lambda line: print(line, flush=True),
        )
        with cluster:
            if announce:
                print(f"bootstrap={cluster.bootstrap}", flush=True)
            yield cluster.bootstrap, cluster
        return
    if settings.security_protocol != "PLAINTEXT":
        raise BrokerError(
            f"security_protocol {settings.security_protocol} needs --bootstrap-servers: the "
            "embedded broker speaks PLAINTEXT only"
        )
    broker = EmbeddedBroker(
        binary=settings.tansu_bin,
        host=settings.web_host,
        start_timeout_s=settings.broker_start_timeout_s,
    )
    with broker:
        if announce:
            print(f"bootstrap={broker.bootstrap}", flush=True)
        yield broker.bootstrap, broker


def describe_broker(broker: LocalBroker | None) -> str:
    """What a run's `broker:` line says about the broker it runs on."""
    if isinstance(broker, KafkaCluster):
        nodes = f"{broker.size} node{'s' if broker.size > 1 else ''}"
        return f"Apache Kafka {broker.version}, {nodes}, on disk in a temporary folder"
    if isinstance(broker, EmbeddedBroker):
        return "embedded Tansu, memory storage"
    return "external"
