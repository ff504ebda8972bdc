"""Fixtures of the fault tests: a broker of the test's own behind a loopback proxy through
which every client connection passes, and workers started on it.

Each runs on both broker kinds (`broker_kind`, marks `embedded` and `kafka`): Tansu with
memory storage, or a one-node Apache Kafka whose PLAINTEXT listener is on a chosen port and
advertises the proxy. The broker is the test's own on both, since the tests cut, stall and
kill it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flashsale.brokers.apache import KafkaCluster
from flashsale.brokers.embedded import EmbeddedBroker, TansuNotFound, find_tansu
from flashsale.kafka.admin import ensure_run_topics, ensure_topics
from flashsale.processes import free_port
from flashsale.settings import Settings
from tests.conftest import BrokerKind, fresh_settings, skip_or_fail, start_kafka
from tests.faults.proxy import FaultProxy
from tests.integration.conftest import StartWorker, worker_starter

__all__ = ["OwnBroker", "ProxiedBroker", "StartWorker", "own_server"]

#: Seconds the proxy refuses clients while a restarted broker gets its topics back.
RECREATE_S = 2.0


@pytest.fixture(
    params=[
        pytest.param("embedded", marks=pytest.mark.embedded),
        pytest.param("kafka", marks=pytest.mark.kafka),
    ]
)
def broker_kind(request: pytest.FixtureRequest) -> BrokerKind:
    """The kind of broker a fault test starts for itself: each test runs on both."""
    kind: BrokerKind = request.param
    return kind


@contextlib.contextmanager
def own_server(
    kind: BrokerKind, port: int | None = None, advertised: str | None = None
) -> Iterator[EmbeddedBroker | KafkaCluster]:
    """A started broker of `kind` for one test (on `port`, naming `advertised` in its
    metadata, when given), stopped at the end, also on failure: no JVM outlives the test.
    A skip (a failure in CI) when Tansu, Java or Maven is missing."""
    server: EmbeddedBroker | KafkaCluster
    if kind == "embedded":
        try:
            find_tansu()
        except TansuNotFound as exc:
            skip_or_fail(str(exc))
        server = EmbeddedBroker(port=port, advertised=advertised)
        server.start()
    else:
        server = start_kafka(
            1,
            ports={1: port} if port else None,
            advertised={1: advertised} if advertised else None,
        )
    try:
        yield server
    finally:
        server.stop()


@dataclass
class OwnBroker:
    """A broker this test alone uses, so it can stop it."""

    kind: BrokerKind
    broker: EmbeddedBroker | KafkaCluster
    settings: Settings


@dataclass
class ProxiedBroker:
    """A broker that advertises the proxy's address, so clients reach it only through it."""

    kind: BrokerKind
    broker: EmbeddedBroker | KafkaCluster
    proxy: FaultProxy
    settings: Settings

    def restart_broker(self) -> None:
        """Restart the broker after a crash (it may already have been SIGKILLed).

        Apache Kafka: SIGKILL its node (if still running) and start it again on its data and
        port; the topics, the offsets and the groups survive, it still advertises the proxy,
        and the clients come back through the proxy on their own.

        Embedded: replace the broker by a fresh one on the same port (memory storage: every
        topic is gone) and recreate the run's topics before any client is back. The proxy
        cuts every connection and refuses new ones meanwhile; the new broker advertises its
        own address, so the topics are made directly, and clients that come back through the
        proxy then reach the broker straight (no more faults after this)."""
        if isinstance(self.broker, KafkaCluster):
            self.broker.kill_node(1)
            self.broker.start_node(1)
            return
        self.broker.stop()
        self.proxy.drop(refuse_s=RECREATE_S)
        self.broker.advertised = None
        self.broker.start()
        bootstrap = self.broker.bootstrap
        asyncio.run(ensure_run_topics(self.settings, bootstrap))
        # What the workers create for themselves when they start: their changelog and
        # Faust's leader-election topic.
        app = self.settings.app_id
        asyncio.run(
            ensure_topics(
                bootstrap, [self.settings.state_changelog_topic()], self.settings.partitions
            )
        )
        asyncio.run(ensure_topics(bootstrap, [f"{app}-__assignor-__leader"], 1))


@pytest.fixture
def proxied(broker_kind: BrokerKind) -> Iterator[ProxiedBroker]:
    """A broker of `broker_kind` on a free port, advertising a FaultProxy in front of it;
    this test's topics created through the proxy. All is stopped at the end, also on
    failure."""
    port = free_port()
    with (
        FaultProxy(("127.0.0.1", port)) as proxy,
        own_server(broker_kind, port=port, advertised=proxy.address) as broker,
    ):
        settings = fresh_settings(proxy.address, kind=broker_kind)
        asyncio.run(ensure_run_topics(settings, proxy.address))
        yield ProxiedBroker(broker_kind, broker, proxy, settings)


@pytest.fixture
def own_broker(broker_kind: BrokerKind) -> Iterator[OwnBroker]:
    """A broker of `broker_kind` on a free port with this test's topics; stopped at the end
    if still running."""
    with own_server(broker_kind) as broker:
        settings = fresh_settings(broker.bootstrap, kind=broker_kind)
        asyncio.run(ensure_run_topics(settings, broker.bootstrap))
        yield OwnBroker(broker_kind, broker, settings)


@pytest.fixture
def start_proxied_worker(proxied: ProxiedBroker, tmp_path: Path) -> Iterator[StartWorker]:
    """Start workers on the proxied broker; all are stopped at the end."""
    with worker_starter(proxied.settings, tmp_path) as start:
        yield start
