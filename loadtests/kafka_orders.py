"""`KafkaOrdersUser`: the scenario's order events straight to Kafka with librdkafka, one
locust process's part of them (`loadtests/share.py`), counted in locust's statistics as one
request per order event; and what the master does for them: the restocks first, the run's end
once every worker has sent its single pass.

Imported by the locustfile only: locust patches the process it is imported in with gevent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import gevent
import gevent.lock
from locust import User, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import (
    CSV_STATS_INTERVAL_SEC,
    RequestStats,
    StatsEntry,
    StatsError,
    bucket_response_time,
)

from flashsale.events import encode_event
from flashsale.settings import Settings
from loadtests.options import LoadOptions
from loadtests.run import end_run, expected_workers, log, options, refuse
from loadtests.share import Deliveries, Settled, Share, split
from producers.generator import Generator
from producers.sinks.librdkafka import librdkafka_config, librdkafka_producer

__all__ = ["KAFKA", "KafkaOrdersUser", "record", "request_name"]

#: Locust's request type of the Kafka users' statistics.
KAFKA: Final = "kafka"
#: The message a worker sends its master when its single pass is sent.
SHARE_SENT: Final = "flashsale_share_sent"


def request_name(topic: str) -> str:
    """The name of the Kafka users' requests in every locust report: it says the unit."""
    return f"{topic}: 1 request = 1 order event"


def kafka_settings(opts: LoadOptions) -> Settings:
    """The Kafka client's settings: `FLASHSALE_*`, with the options' servers and topic."""
    settings = Settings()
    changes = {"bootstrap_servers": opts.bootstrap_servers, "topic_orders": opts.topic}
    settings = settings.model_copy(update={k: v for k, v in changes.items() if v})
    if not settings.bootstrap_servers:
        raise ValueError(
            "KafkaOrdersUser needs a Kafka: --flashsale-bootstrap-servers or "
            "FLASHSALE_BOOTSTRAP_SERVERS"
        )
    return settings


# -- the statistics: one request per order event -------------------------------------------


def record(stats: RequestStats, name: str, block: Settled, error: str) -> None:
    """A settled block in locust's statistics as its events: that many requests, each with the
    block's latency and its share of the block's bytes, its failures as failed requests
    (`error`, librdkafka's last one, names them in locust's failures table).

    One request event per order event would cost locust more than sending it; the block goes
    in as one entry merged into the request's and the total's (`StatsEntry.extend`, how a
    master merges its workers' reports), and a worker's reports carry it to the master.
    """
    now = time.time()
    second = int(now)
    n = block.events
    entry = StatsEntry(stats, name, KAFKA)
    entry.num_requests = n
    entry.num_reqs_per_sec[second] = n
    entry.last_request_timestamp = now
    entry.total_response_time = block.latency_ms * n  # type: ignore[assignment]
    entry.min_response_time = entry.max_response_time = block.latency_ms  # type: ignore[assignment]
    entry.response_times[bucket_response_time(block.latency_ms)] = n
    entry.total_content_length = block.size_bytes
    if block.failures:
        entry.num_failures = block.failures
        entry.num_fail_per_sec[second] = block.failures
    stats.get(name, KAFKA).extend(entry)
    stats.total.extend(entry)
    if block.failures:
        key = StatsError.create_key(KAFKA, name, error)
        row = stats.errors.setdefault(key, StatsError(KAFKA, name, error))
        row.occurred()
        row.occurrences += block.failures - 1


class _Sender:
    """One user's librdkafka producer; its blocks go into the statistics as they settle."""

    def __init__(self, environment: Environment, settings: Settings, name: str) -> None:
        from confluent_kafka import Producer

        self.environment = environment
        self.name = name
        self.topic = settings.topic_orders
        self.deliveries = Deliveries()
        self.producer = librdkafka_producer(
            Producer,
            settings,
            {
                **librdkafka_config(settings, "flashsale-locust"),
                # librdkafka's default bound: what a stopped run leaves unsent stays small.
                "queue.buffering.max.messages": 100_000,
                "delivery.report.only.error": True,
                "on_delivery": self.deliveries.on_error,
            },
        )

    def send(self, keys: list[bytes], values: list[bytes]) -> None:
        """Queue one block (or piece of one); never flush or wait on a delivery."""
        if not values:
            return
        produce = self.producer.produce
        poll = self.producer.poll
        topic = self.topic
        started = time.perf_counter()
        for i, (key, value) in enumerate(zip(keys, values, strict=True)):
            while True:
                try:
                    produce(topic, value, key)
                    break
                except BufferError:
                    poll(0.001)  # the local queue is full: let librdkafka send
            if i % 1000 == 0:
                poll(0)
                # The process's other greenlets run too: its heartbeats to the master, the
                # other users, the statistics' reports.
                gevent.sleep(0)
        self.deliveries.queue(len(values), sum(map(len, values)), started)
        self.settle()

    def settle(self) -> None:
        """Serve librdkafka's reports; record the blocks that have settled."""
        self.producer.poll(0)
        stats = self.environment.stats
        for block in self.deliveries.settle(len(self.producer), time.perf_counter()):
            record(stats, self.name, block, self.deliveries.last_error)

    def flush(self, timeout_s: float) -> int:
        """Wait for every queued event (at most `timeout_s`); the events still queued."""
        return drain(self.producer, timeout_s, self.settle)


def drain(producer: Any, timeout_s: float, settle: Callable[[], None] | None = None) -> int:
    """librdkafka's `flush`, without blocking the process: a worker's heartbeats and the
    other users go on meanwhile (a flush of seconds on a slow broker would make its master
    count it as lost). The events still queued after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        if settle is None:
            producer.poll(0)
        else:
            settle()
        if not len(producer) or time.monotonic() >= deadline:
            return len(producer)
        gevent.sleep(0.005)


class _Process:
    """What the Kafka users of one locust process share in a run: its part of the stream
    and their producers."""

    def __init__(self, environment: Environment) -> None:
        runner = environment.runner
        if isinstance(runner, WorkerRunner):
            index, count = runner.worker_index, expected_workers(environment)
        else:
            index, count = 0, 1
        worker, workers = split(index, count)
        opts = options(environment)
        self.settings = kafka_settings(opts)
        self.name = request_name(self.settings.topic_orders)
        self.share = Share(opts.load(), worker, workers, opts.events, opts.rate / workers)
        self.senders: list[_Sender] = []
        #: Senders made ahead of the users that take them (their connections open meanwhile).
        self.spare: list[_Sender] = []
        self.finished = False
        #: No user has taken a block yet.
        self.fresh = True

    def prepare(self, environment: Environment, spare: int = 0) -> None:
        """Before the run's users start: the first blocks of the share (with `--flashsale-events`
        the stream is walked up to its N-th event, seconds for millions) in a thread of
        gevent's pool, so that the process's heartbeats and messages go on meanwhile, and
        `spare` senders whose producers connect meanwhile."""
        gevent.get_hub().threadpool.apply(self.share.prepare)
        for _ in range(spare):
            self.spare.append(_Sender(environment, self.settings, self.name))

    def sender(self, environment: Environment) -> _Sender:
        """A sender for a new user: a spare one, or a new one."""
        sender = self.spare.pop() if self.spare else _Sender(environment, self.settings, self.name)
        self.senders.append(sender)
        return sender

    def finish(self, environment: Environment, stopping: bool = False) -> None:
        """When the single pass is handed out, or (`stopping`) the run stops sending: wait
        until every block in hand is queued and every queued event has left; then tell the
        master (a worker), or end the run (a standalone process)."""
        if stopping:
            self.share.stopped = True
        if self.finished:
            return
        self.finished = True
        while self.share.in_hand:  # other users queueing their last blocks
            gevent.sleep(0.01)
        unsent = sum(sender.flush(30) for sender in list(self.senders))
        runner = environment.runner
        if isinstance(runner, WorkerRunner):
            data = {"index": self.share.worker, "events": self.share.sent, "unsent": unsent}
            runner.send_message(SHARE_SENT, data)
            return
        log.info(f"{self.share.sent:,} order events sent")
        _wait_csv(environment)
        if not stopping:
            end_run(environment, _unsent_error(unsent))
        else:
            _fail_if_unsent(environment, unsent)


def _fail_if_unsent(environment: Environment, unsent: int) -> None:
    """A run already ending: its exit code 2 when events were left undelivered."""
    error = _unsent_error(unsent)
    if error is not None:
        log.error(error)
        environment.process_exit_code = 2


def _unsent_error(unsent: int) -> str | None:
    return None if not unsent else f"{unsent:,} order events not delivered within 30 s"


#: This process's part of the current run, made by its first Kafka user (a worker knows its
#: index, and its options, once its master has sent them), or ahead of a headless
#: standalone run, when locust starts; a new run starts a new one.
_PROCESS: _Process | None = None
#: `_PROCESS` and the restocks were made when locust started, for its first run.
_AHEAD = False
#: The first user makes `_PROCESS`; the others wait for it.
_MAKING = gevent.lock.BoundedSemaphore()


def _process(environment: Environment) -> _Process:
    global _PROCESS
    with _MAKING:
        if _PROCESS is None:
            process = _Process(environment)
            process.prepare(environment)
            _PROCESS = process
    return _PROCESS


class KafkaOrdersUser(User):
    """Sends this locust process's part of the scenario's order events straight to Kafka
    with librdkafka.

    It never blocks on a delivery: each task queues a block of the schedule (about 5,000
    orders at the scenario's peak, with their events) and polls. A block goes into locust's
    statistics once all its events have left librdkafka's queue, as that many requests (one
    per order event) with the block's latency.
    """

    wait_time = constant(0)
    process: _Process | None = None
    sender: _Sender | None = None

    def on_start(self) -> None:
        try:
            self.process = _process(self.environment)
        except ValueError as exc:
            refuse(self.environment, str(exc))
            return
        self.sender = self.process.sender(self.environment)

    def on_stop(self) -> None:
        if self.sender is not None and self.process is not None:
            self.sender.flush(30)
            if self.sender in self.process.senders:
                self.process.senders.remove(self.sender)

    @task
    def send_block(self) -> None:
        process, sender = self.process, self.sender
        if process is None or sender is None:
            gevent.sleep(1.0)  # refused: the run is being stopped
            return
        share = process.share
        process.fresh = False
        block = share.next_block()
        if block is None:
            if share.exhausted or share.stopped:
                process.finish(self.environment)
                sender.settle()
                gevent.sleep(0.2)
            return
        try:
            for piece in share.pieces(block):
                sender.send(piece.keys, piece.values(time.time_ns()))
                # Hold this process's rate: its users share its stream and its pace.
                wake = share.queued(len(piece))
                while time.monotonic() < wake and not share.stopped:
                    # Reports are served inside poll(): keep polling while waiting, so a
                    # block's latency is the broker's, not this pause's.
                    sender.settle()
                    gevent.sleep(min(wake - time.monotonic(), 0.005))
                gevent.sleep(0)  # unpaced too: the process's other greenlets run between pieces
        finally:
            share.put_down()


def send_restocks(opts: LoadOptions) -> str | None:
    """The scenario's restocks, sent once before any order (by the master, or a standalone
    process); an error, or None."""
    from confluent_kafka import Producer

    settings = kafka_settings(opts)
    deliveries = Deliveries()
    config = {
        **librdkafka_config(settings, "flashsale-locust-restocks"),
        "on_delivery": deliveries.on_error,
    }
    producer = librdkafka_producer(Producer, settings, config)
    for restock in Generator(opts.load()).restocks():
        producer.produce(settings.topic_orders, encode_event(restock), restock.sku.encode())
    left = drain(producer, 30)
    if left or deliveries.failed:
        return (
            f"restocks not delivered to {settings.bootstrap_servers}: "
            f"{left} queued, {deliveries.failed} failed {deliveries.last_error}"
        )
    return None


@dataclass
class _Run:
    """What the master (or a standalone process) keeps of the current run."""

    #: Worker index: the events it has sent, once it has stopped sending.
    sent: dict[int, int] = field(default_factory=dict)
    unsent: int = 0
    stopping: bool = False


_RUN = _Run()
#: The message a master sends its workers when the run stops: send nothing more, and report.
STOP_SENDING: Final = "flashsale_stop_sending"


@events.init.add_listener
def _on_init(environment: Environment, runner: Any, **_: Any) -> None:
    if isinstance(runner, WorkerRunner):
        runner.register_message(STOP_SENDING, _on_stop_sending)
        return
    if KafkaOrdersUser not in environment.user_classes:
        return
    try:
        kafka_settings(options(environment))
    except ValueError as exc:
        log.error(str(exc))
        raise SystemExit(2) from None
    if isinstance(runner, MasterRunner):
        runner.register_message(SHARE_SENT, _on_share_sent)
    elif environment.parsed_options is not None and environment.parsed_options.headless:
        _ahead(environment)


def _ahead(environment: Environment) -> None:
    """A headless standalone run: its restocks sent, its share's first blocks and a
    producer for its first user made now, before the run's time (`-t`) starts to count, so
    that even a run of a few seconds spends them sending orders."""
    global _PROCESS, _AHEAD
    try:
        opts = options(environment)
        process = _Process(environment)
    except ValueError as exc:
        log.error(str(exc))
        raise SystemExit(2) from None
    process.prepare(environment, spare=1)
    error = send_restocks(opts)
    if error is not None:
        log.error(error)
        raise SystemExit(2)
    _PROCESS, _AHEAD = process, True


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    global _PROCESS, _RUN, _AHEAD
    ahead, _AHEAD = _AHEAD and _PROCESS is not None and _PROCESS.fresh, False
    if ahead:
        _RUN = _Run()
        return  # the first run of a headless process: made ready when locust started
    _PROCESS = None  # a new run: the stream from its beginning
    runner = environment.runner
    if isinstance(runner, WorkerRunner) or KafkaOrdersUser not in environment.user_classes:
        return
    _RUN = _Run()
    try:
        opts = options(environment)
        kafka_settings(opts)
    except ValueError as exc:
        end_run(environment, str(exc))
        return
    if isinstance(runner, MasterRunner):
        expected = expected_workers(environment)
        if runner.worker_count != expected:
            end_run(
                environment,
                f"{runner.worker_count} locust workers are connected, the master expects "
                f"{expected} (--expect-workers): KafkaOrdersUser splits the stream by worker "
                "index and count",
            )
            return
    error = send_restocks(opts)
    if error is not None:
        end_run(environment, error)


@events.test_stopping.add_listener
def _on_test_stopping(environment: Environment, **_: Any) -> None:
    """Before the users stop: the Kafka users send nothing more, what they queued leaves,
    and its statistics come in, so locust's counts are the events sent."""
    runner = environment.runner
    if isinstance(runner, WorkerRunner) or KafkaOrdersUser not in environment.user_classes:
        return
    _RUN.stopping = True
    if not isinstance(runner, MasterRunner):
        if _PROCESS is not None:
            _PROCESS.finish(environment, stopping=True)
        return
    expected = expected_workers(environment)
    if len(_RUN.sent) < expected:
        runner.send_message(STOP_SENDING)
        deadline = time.monotonic() + 40.0  # a worker flushes for 30 s at most
        while len(_RUN.sent) < expected and runner.worker_count and time.monotonic() < deadline:
            gevent.sleep(0.1)
    if runner.worker_count:
        _wait_counted(environment, sum(_RUN.sent.values()))
    _fail_if_unsent(environment, _RUN.unsent)


def _on_stop_sending(environment: Environment, msg: Any, **_: Any) -> None:
    """A worker told by its master that the run stops."""
    runner = environment.runner
    assert isinstance(runner, WorkerRunner)
    if _PROCESS is not None:
        # Apart from the loop receiving the master's messages: flushing takes a while.
        gevent.spawn(_PROCESS.finish, environment, True)
    else:  # no Kafka user ran here
        runner.send_message(SHARE_SENT, {"index": runner.worker_index, "events": 0, "unsent": 0})


def _on_share_sent(environment: Environment, msg: Any, **_: Any) -> None:
    """A worker has stopped sending: after its single pass, or told to. When every worker
    has sent its single pass, the run ends, once their statistics have come in."""
    _RUN.sent[int(msg.data["index"])] = int(msg.data["events"])
    _RUN.unsent += int(msg.data["unsent"])
    if len(_RUN.sent) == expected_workers(environment) and not _RUN.stopping:
        total = sum(_RUN.sent.values())
        log.info(f"every locust worker has sent its part: {total:,} order events; ending the run")
        gevent.spawn(_end_when_counted, environment)


def _wait_counted(environment: Environment, events_sent: int) -> None:
    """Until the master's statistics count `events_sent` order events (workers report every
    3 s; 30 s at most, for a loaded machine), and locust's CSV files have been written since."""
    name = request_name(kafka_settings(options(environment)).topic_orders)
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        entry = environment.stats.entries.get((name, KAFKA))
        if events_sent == 0 or (entry is not None and entry.num_requests >= events_sent):
            break
        gevent.sleep(0.2)
    _wait_csv(environment)


def _wait_csv(environment: Environment) -> None:
    """Long enough for locust's CSV writer, which rewrites its files every second, to have
    written the statistics as they are now (it does not write them again at the end)."""
    if getattr(environment.parsed_options, "csv_prefix", None):
        gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.25)


def _end_when_counted(environment: Environment) -> None:
    _wait_counted(environment, sum(_RUN.sent.values()))
    end_run(environment, _unsent_error(_RUN.unsent))
