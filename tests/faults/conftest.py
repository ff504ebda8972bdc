"""Fixtures of the fault tests: a Tansu broker of the test's own behind a loopback proxy
through which every client connection passes, and workers started on it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flashsale.broker import EmbeddedBroker, TansuNotFound, find_tansu
from flashsale.cli.processes import free_port
from flashsale.kafka import ensure_run_topics, ensure_topics
from flashsale.settings import Settings
from tests.conftest import fresh_settings, skip_or_fail
from tests.faults.proxy import FaultProxy
from tests.integration.conftest import StartWorker, worker_starter

#: Seconds the proxy refuses clients while a restarted broker gets its topics back.
RECREATE_S = 2.0


@dataclass
class ProxiedBroker:
    """A broker that advertises the proxy's address, so clients reach it only through it."""

    broker: EmbeddedBroker
    proxy: FaultProxy
    settings: Settings

    def restart_broker(self) -> None:
        """Replace the broker by a fresh one on the same port (memory storage: every topic is
        gone) and recreate the run's topics before any client is back.

        The proxy cuts every connection and refuses new ones meanwhile; the new broker
        advertises its own address, so the topics are made directly, and clients that come
        back through the proxy then reach the broker straight (no more faults after this)."""
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
def proxied() -> Iterator[ProxiedBroker]:
    """Tansu on a free port, advertising a FaultProxy in front of it; this test's topics
    created through the proxy. All is stopped at the end, also on failure."""
    try:
        find_tansu()
    except TansuNotFound as exc:
        skip_or_fail(str(exc))
    port = free_port()
    with (
        FaultProxy(("127.0.0.1", port)) as proxy,
        EmbeddedBroker(port=port, advertised=proxy.address) as broker,
    ):
        settings = fresh_settings(proxy.address)
        asyncio.run(ensure_run_topics(settings, proxy.address))
        yield ProxiedBroker(broker, proxy, settings)


@pytest.fixture
def start_proxied_worker(proxied: ProxiedBroker, tmp_path: Path) -> Iterator[StartWorker]:
    """Start workers on the proxied broker; all are stopped at the end."""
    with worker_starter(proxied.settings, tmp_path) as start:
        yield start
