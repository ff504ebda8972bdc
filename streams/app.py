"""The Faust worker's wiring: its app, topics, state table, agent, timers and signals.

One agent consumes `orders` and hands each batch (stream mode) or fetch (bulk mode) to the
`OrderProcessor` (`streams.processor`), which decides every event with `streams.rules` and
writes the outputs (`streams.outputs`); `streams.views` serves the HTTP pages. Timers here
write due states, export gauges and complete quiet partitions.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import tempfile
from typing import Any

import faust
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from flashsale.client_config import aiokafka_properties, faust_properties, warn_unmapped
from flashsale.columns import COMPILED as COLUMNS_COMPILED
from flashsale.counters import gmv_field
from flashsale.kafka.admin import changelog_configs
from flashsale.kafka.clients import producer_codec, ssl_context
from flashsale.settings import STATE_RECORD_MAX_BYTES, STATE_TABLE, Settings
from streams.consumer import BulkApp
from streams.metrics import WorkerMetrics
from streams.packed import COMPILED
from streams.processor import OrderProcessor
from streams.transactions import check_transactions
from streams.views import RunViews, add_pages
from streams.worker import Worker, log_tracebacks_whole

__all__ = ["broker_credentials", "create_app", "run_worker", "worker_app"]

_log = logging.getLogger(__name__)


def broker_credentials(settings: Settings) -> faust.auth.Credentials | None:
    """What Faust hands its consumer, producer and admin client for `security_protocol`."""
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if protocol == "SSL":
        return faust.auth.SSLCredentials(context)
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    return faust.auth.SASLCredentials(
        username=settings.sasl_username,
        password=password,
        ssl_context=context,
        mechanism=settings.sasl_mechanism,
    )


def _broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{hp.strip()}" for hp in bootstrap.split(",") if hp.strip()]


def create_app(
    settings: Settings, registry: CollectorRegistry | None = None, datadir: str | None = None
) -> faust.App:
    """A Faust app wired to `settings`: topics, the state table, the agent and web views.

    Faust creates its data directory even with the memory store; `run_worker` gives it a
    temporary one, removed on exit, so no `<app>-data` folder is left in the working directory.

    Its topics' replication is `settings.replication_factor` as `ensure_run_topics` resolved
    it (which creates the changelog and leader topics beforehand); unresolved, Faust's 1.
    The client-config file's properties reach Faust's consumer through Faust's settings
    (`FAUST_PROPERTIES`) and its producer as aiokafka arguments.
    """
    if not settings.bootstrap_servers:
        raise ValueError("the worker needs bootstrap servers")
    metrics_registry = registry if registry is not None else CollectorRegistry()
    session = settings.session_timeout_s
    bulk = settings.consume_mode == "bulk"
    # Bulk mode: fetches of up to 4 MB per partition and a commit every 10,000 acknowledged
    # orders (Faust's default) or second. Stream mode keeps Faust's defaults for every
    # consumer setting: it is the baseline the bench compares against.
    tuning: dict[str, Any] = (
        {
            "consumer_max_fetch_size": 4 * 1024 * 1024,
            "broker_commit_interval": 1.0,
        }
        if bulk
        else {}
    )
    props = settings.client_properties()
    if props and settings.client_config is not None:
        warn_unmapped(settings.client_config, props)
    conf: dict[str, Any] = dict(
        broker=_broker_urls(settings.bootstrap_servers),
        broker_credentials=broker_credentials(settings),
        store="memory://",
        datadir=datadir or tempfile.gettempdir() + "/flashsale-faust",
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor or 1,
        # Tansu holds a JoinGroup for half the session timeout (measured: 60 s -> 30 s wait),
        # so on it a short session (4 s, `Settings.for_embedded_broker`) makes a worker ready
        # in about two seconds; Kafka accepts 6 s and more by default.
        broker_session_timeout=session,
        broker_heartbeat_interval=max(session / 4, 0.2),
        broker_rebalance_timeout=max(session * 2, 10.0),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_compression_type=producer_codec(settings),
        producer_linger=0.005,
        # aiokafka puts at most one batch per partition in a produce request, and a batch
        # waits for the one before it: a packed fetch's decisions (about 8 MB a partition)
        # went out in 30 round trips of 256 KB, the worker waiting in between. 1,000,000
        # bytes stays under Kafka's default message.max.bytes (1,048,588); measured on the
        # packed stage, the worker's wait on its sends fell from 0.80-0.89 s to 0.53-0.58 s
        # of 4.2-4.5 s (two alternating pairs of runs).
        producer_max_batch_size=1_000_000,
        # A partition's state record holds its open (reserved, unpaid) lines: at the peak of a
        # big scenario it can pass Kafka's default 1 MB request limit.
        producer_max_request_size=STATE_RECORD_MAX_BYTES,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        # Every payload here is bytes we encode ourselves with orjson.
        key_serializer="raw",
        value_serializer="raw",
    )
    # The client-config file's properties over ours (`FAUST_PROPERTIES`).
    app = BulkApp(settings.app_id, **{**conf, **tuning, **faust_properties(props)})
    # Faust has no idempotence setting: its producer takes it, and the client-config file's
    # producer properties, as aiokafka arguments (`ConfiguredProducer`).
    app.producer_extra = {
        "enable_idempotence": settings.enable_idempotence,
        **aiokafka_properties(props, "producer"),
    }
    if settings.processing_guarantee == "exactly_once":
        # The batch loop commits the offsets of `orders` in its transactions
        # (`streams.transactions`), and Faust's consumer reads committed records only.
        app.transactional_topics = frozenset({settings.topic_orders})
    orders = app.topic(
        settings.topic_orders,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )
    table: Any = (
        _table(app, settings)
        if settings.processing_guarantee == "at_least_once"
        # Exactly-once mode writes the changelog in its transactions and reads its tail
        # itself; Faust's recovery of a table reads a changelog up to its end offset and
        # waits for a record at the offset before it, and a transactional changelog ends in
        # a commit marker, which no consumer returns (measured: a restarted worker waited
        # there for minutes). So no Faust table, only the local store it would hold.
        else LocalStates()
    )
    metrics = WorkerMetrics(metrics_registry)
    processor = OrderProcessor(app, settings, table, metrics)
    app.flashsale_processor = processor  # type: ignore[attr-defined]

    @app.agent(orders, concurrency=1)
    async def process_orders(stream: Any) -> None:
        # In bulk mode the agent subscribes the group to `orders` and the consumer hands every
        # fetch to `process_fetch` instead; no event reaches this stream.
        async for batch in stream.take_events(settings.batch_max, within=settings.batch_within_s):
            await processor.process(batch)

    if bulk:
        app.consume_in_bulk(
            [settings.topic_orders], processor.process_fetch, settings.fetch_max_wait_ms
        )

    @app.timer(interval=max(settings.state_save_interval_s / 2, 0.05))
    async def write_due_states() -> None:
        if not app.rebalancing:
            await processor.save_due()

    labelled: dict[str, set[str]] = {}

    @app.timer(interval=1.0)
    async def update_gauges() -> None:
        lag = 0
        for partition, state in list(processor.states.items()):
            tp = TopicPartition(settings.topic_orders, partition)
            try:
                high = app.consumer.highwater(tp)
            except (KeyError, AssertionError):
                continue  # not assigned to this consumer any more
            if high is not None:
                lag += max(high - (state.last_offset + 1), 0)
        metrics.lag.set(lag)
        metrics.oversold.set(
            sum(1 for st in processor.states.values() for units in st.stock.values() if units < 0)
        )
        for dimension, gauge in metrics.gmv_by.items():
            summed: dict[str, int] = {}
            for st in processor.states.values():
                for name, cents in getattr(st, gmv_field(dimension)).items():
                    summed[name] = summed.get(name, 0) + cents
            # Names this worker no longer holds (after a rebalance) read 0, not a stale total.
            shown = labelled.setdefault(dimension, set())
            for name in shown - summed.keys():
                gauge.labels(name).set(0)
            for name, cents in summed.items():
                gauge.labels(name).set(cents)
            shown |= summed.keys()

    @app.timer(interval=1.0)
    async def complete_quiet_partitions() -> None:
        if not app.rebalancing and not app.in_recovery and not app.should_stop:
            await processor.catch_up(idle_s=2.0)

    views = RunViews(settings, lambda: processor.states)
    add_pages(app, processor, views, metrics_registry)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        processor.forget()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        processor.forget()
        metrics.partitions.set(sum(1 for tp in assigned if tp.topic == settings.topic_orders))

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def on_shutdown(app: faust.App, **kwargs: Any) -> None:
        await processor.close()
        await views.close()

    return app


class LocalStates:
    """The worker's copy of its states without a Faust table (exactly-once mode): what
    `OrderProcessor` reads of a table, its store (`data`)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}


def _table(app: faust.App, settings: Settings) -> Any:
    """The Faust table of the partitions' states, changelogged (at-least-once mode)."""
    return app.Table(
        STATE_TABLE,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        # Should Faust create the changelog itself: the configs `ensure_run_topics` gives it.
        extra_topic_configs={
            **changelog_configs(),
            **(
                {"min.insync.replicas": str(settings.min_insync_replicas)}
                if settings.min_insync_replicas
                else {}
            ),
        },
    )


def worker_app(settings: Settings, datadir: str) -> faust.App:
    """`create_app` with the tuning of a worker process: the app `flashsale worker` runs, and
    `faust -A streams.faust_app worker` (`streams.faust_app`)."""
    app = create_app(settings, datadir=datadir)

    @app.task
    async def tune_process() -> None:
        # The objects of start-up (Faust, aiokafka, the app) live as long as the worker:
        # out of the collector's scans. A young generation of 100,000 objects instead of
        # 700 scans once per a few packed messages instead of several times in each.
        # Together 0.2 µs of CPU per packed event (5.6 instead of 5.8-7.2, three runs).
        gc.freeze()
        gc.set_threshold(100_000, 50, 1_000)
        if not (COMPILED and COLUMNS_COMPILED):
            _log.warning(
                "the packed path runs uncompiled (no C compiler when flashsale was "
                "installed): packed messages cost about 1.5 µs more CPU per event"
            )

    return app


def run_worker(settings: Settings, loglevel: str = "warn") -> None:
    """Run one worker in the foreground until SIGINT/SIGTERM; it is gone at most
    `streams.worker.STOP_DEADLINE_S` after the signal. In exactly-once mode the brokers must
    run a transaction first (`TransactionsUnsupported` otherwise, before anything starts)."""
    if settings.processing_guarantee == "exactly_once":
        asyncio.run(check_transactions(settings))
    with tempfile.TemporaryDirectory(prefix="flashsale-worker-") as datadir:
        app = worker_app(settings, datadir)
        log_tracebacks_whole()
        worker = Worker(app, loglevel=loglevel, quiet=True, tempdir=datadir)
        worker.execute_from_commandline()
