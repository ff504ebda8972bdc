"""The services a command runs in the foreground until Ctrl-C or SIGTERM: a local broker, a
worker, the checkout gateway and the live dashboard.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry

from flashsale.brokers.apache import KafkaCluster, Network
from flashsale.brokers.base import BrokerError
from flashsale.brokers.embedded import EmbeddedBroker
from flashsale.brokers.local import bootstrap_for, settings_on
from flashsale.kafka.admin import ensure_run_topics
from flashsale.scenario import Scenario
from flashsale.settings import Settings
from orchestration.console import console
from producers.generator import Generator
from producers.sinks.kafka import OrderEmitter

__all__ = ["run_broker", "run_dashboard", "run_gateway", "run_kafka", "run_worker_service"]


def run_dashboard(
    worker_urls: list[str],
    bootstrap: str | None,
    topic_orders: str,
    producer_metrics: list[str],
    host: str,
    port: int,
    scenario_start: datetime | None = None,
) -> int:
    """`flashsale dashboard`: serve until Ctrl-C or SIGTERM; times in the zone of the
    scenario that starts at `scenario_start` (UTC without one)."""
    from dashboards.live.server import serve
    from dashboards.live.source import DashboardSource

    async def main() -> None:
        source = DashboardSource(worker_urls, bootstrap, topic_orders, producer_metrics)
        source.scenario_start = scenario_start
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            async with serve(source, host, port) as url:
                console.print(f"dashboard: {url} (Ctrl-C to stop)")
                await stop.wait()
        except OSError as exc:
            console.print(f"[red]dashboard: cannot listen on {host}:{port}: {exc.strerror}[/red]")
            raise SystemExit(2) from None

    asyncio.run(main())
    return 0


def run_gateway(
    settings: Settings,
    scenario: Scenario,
    worker_url: str | None,
    host: str,
    port: int,
    restock: bool,
) -> int:
    """`flashsale gateway`: serve checkouts until Ctrl-C or SIGTERM."""
    from aiohttp import web

    from producers.gateway import GatewayMetrics, make_gateway
    from producers.pacing import send_restocks

    with bootstrap_for(settings) as bootstrap:
        run_settings = asyncio.run(ensure_run_topics(settings_on(settings, bootstrap), bootstrap))

        async def main() -> None:
            emitter = OrderEmitter(run_settings)
            await emitter.start()
            generator = Generator(scenario)
            if restock:
                await send_restocks(emitter, generator)
            metrics = GatewayMetrics(CollectorRegistry())
            app = make_gateway(
                generator.catalog,
                emitter,
                run_settings.max_in_flight,
                metrics,
                worker_url,
                rate_per_client=run_settings.gateway_rate_per_client,
                body_timeout_s=run_settings.gateway_request_timeout_s,
            )
            runner = web.AppRunner(
                app,
                handle_signals=False,
                shutdown_timeout=2.0,
                # From the connection (or the last answer) to a request's complete headers:
                # a client trickling them (slow-loris) is cut at this bound.
                keepalive_timeout=run_settings.gateway_request_timeout_s,
            )
            await runner.setup()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            try:
                try:
                    await web.TCPSite(runner, host, port).start()
                except OSError as exc:
                    console.print(
                        f"[red]gateway: cannot listen on {host}:{port}: {exc.strerror}[/red]"
                    )
                    raise SystemExit(2) from None
                console.print(
                    f"gateway: http://{host}:{port}/orders (POST), /openapi.json, /metrics "
                    f"— catalog of {scenario.name}, {len(generator.catalog.skus)} SKUs"
                )
                await stop.wait()
            finally:
                await runner.cleanup()
                await emitter.stop()

        asyncio.run(main())
    return 0


def run_broker(settings: Settings, port: int | None) -> None:
    """`flashsale broker`: the embedded broker until Ctrl-C or SIGTERM."""
    broker = EmbeddedBroker(
        binary=settings.tansu_bin,
        host=settings.web_host,
        port=port,
        start_timeout_s=settings.broker_start_timeout_s,
    )
    with broker:
        print(f"bootstrap={broker.bootstrap}", flush=True)
        print("memory storage: topics are lost when the broker stops. Ctrl-C to stop.", flush=True)
        broker.wait()


def run_kafka(
    settings: Settings, nodes: int, data: Path | None, network: Network = "loopback"
) -> None:
    """`flashsale kafka`: a local Apache Kafka until Ctrl-C, SIGTERM or a node's end; with
    `network` namespaces, each node in a network namespace of its own, removed at exit."""
    # Progress on stderr: stdout's first line is the bootstrap servers, for scripts.
    cluster = KafkaCluster(
        nodes=nodes,
        data=data,
        host=settings.web_host,
        say=lambda line: print(line, file=sys.stderr, flush=True),
        network=network,
    )
    with cluster:
        print(f"bootstrap={cluster.bootstrap}", flush=True)
        memory = ", ".join(f"node {n}: {mb:.0f} MiB" for n, mb in cluster.memory_mb().items())
        where = f"data in {cluster.data}" if data is not None else "data removed at exit"
        net = cluster.node_network
        if net is not None:
            where += (
                f"; each node in a network namespace ({net.prefix}n1…), on {net.subnet} "
                f"with bridge {net.bridge}, removed at exit"
            )
        print(
            f"Apache Kafka {cluster.version}, {nodes} node{'s' if nodes > 1 else ''} ready in "
            f"{cluster.started_s:.1f} s ({memory}); {where}. Ctrl-C to stop.",
            flush=True,
        )
        while all(n.alive() for n in cluster.nodes):
            time.sleep(0.5)
        gone = [n for n in cluster.nodes if not n.alive()]
        raise BrokerError(f"Kafka node {gone[0].node_id} exited: {gone[0].log_tail()}")


def run_worker_service(settings: Settings, log_level: str) -> None:
    """`flashsale worker`: the run's topics made sure of, then one worker in the foreground."""
    from streams.app import run_worker

    with bootstrap_for(settings) as bootstrap:
        resolved = asyncio.run(ensure_run_topics(settings_on(settings, bootstrap), bootstrap))
        print(
            f"worker: web and /metrics on http://{settings.web_host}:{settings.web_port}",
            flush=True,
        )
        run_worker(resolved, log_level)
