"""Where generated events go: Kafka through aiokafka or librdkafka, or a JSON-lines file.

Every sink takes ready-made keys and values in batches (one generator block at a time),
queues them without awaiting each message, bounds what is in flight, and counts what the
broker acknowledged. `produce_scenario` paces the generator's blocks on the wall clock (or
runs as fast as it can for files), and says so whenever it falls behind the schedule.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import orjson
from aiokafka import TopicPartition

from flashsale.client_config import ClientConfigError
from flashsale.events import PACKED_HEADER, OrderEvent, encode_event
from flashsale.kafka import aiokafka_producer, last_record, librdkafka_security, start_reader
from flashsale.settings import Settings
from producers.generator import GRID_S, Generator
from producers.metrics import ProducerMetrics

__all__ = [
    "SEQ_HEADER",
    "ConfluentSink",
    "JsonlSink",
    "OrderEmitter",
    "ProduceStats",
    "ResumeError",
    "Sink",
    "acknowledged_positions",
    "librdkafka_config",
    "librdkafka_producer",
    "produce_scenario",
]

Headers = list[tuple[str, bytes]]
#: Every message a producer sends to Kafka carries its position in the generator's stream
#: (restocks -R..-1, then order events from 0; a packed message: its last event's), so a
#: producer killed mid-run resumes where the broker stopped acknowledging.
SEQ_HEADER = "flashsale.seq"
#: Behind schedule by more than this many seconds: the run says so.
BEHIND_WARN_S = 1.0
#: ... and repeats it at most this often.
BEHIND_WARN_EVERY_S = 10.0


@dataclass(slots=True)
class ProduceStats:
    """Live counters of one producing run."""

    sent: int = 0
    acked: int = 0
    errors: int = 0
    orders_sent: int = 0
    restocks_sent: int = 0
    started_ns: int = 0
    finished_ns: int = 0
    last_error: str = ""
    scenario_s: float = 0.0
    """Scenario seconds emitted so far."""
    behind_s: float = 0.0
    """How far the last block left after its scheduled time (0 when on time)."""
    max_behind_s: float = 0.0
    resumed_skipped: int = 0
    """Events (restocks too) a resumed run found on the broker already and did not send."""

    @property
    def in_flight(self) -> int:
        """Sent and neither acknowledged nor failed."""
        return self.sent - self.acked - self.errors

    @property
    def duration_s(self) -> float:
        """Seconds from the first send to the last acknowledgement (or now)."""
        end = self.finished_ns or time.time_ns()
        return max((end - self.started_ns) / 1e9, 1e-9) if self.started_ns else 0.0


class Sink(Protocol):
    """What `produce_scenario` writes to."""

    stats: ProduceStats
    metrics: ProducerMetrics | None
    #: True: values carry the wall-clock send time; False: the scenario clock (files).
    wall_clock: bool
    #: Events per packed message (0: one event per message).
    pack: int

    async def start(self) -> None: ...

    async def send(
        self,
        events: Iterable[OrderEvent],
        headers: Headers | None = None,
        seqs: Sequence[int] | None = None,
    ) -> None: ...

    async def send_raw(
        self,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        headers: Headers | None = None,
        seqs: Sequence[int] | None = None,
    ) -> None: ...

    async def send_packed(self, messages: Sequence[tuple[int, bytes, int, int]]) -> None: ...

    async def partitions(self) -> int: ...

    async def flush(self) -> None: ...

    async def stop(self) -> None: ...


class _Counting:
    """Shared bookkeeping of the sinks."""

    stats: ProduceStats
    metrics: ProducerMetrics | None
    wall_clock: bool = True
    pack: int = 0

    @property
    def in_flight(self) -> int:
        """Events sent and neither acknowledged nor failed yet."""
        self._settle()
        return self.stats.in_flight

    def _settle(self) -> None:
        """Count what the client has settled since (sinks that learn it later override)."""

    def _count_sent(self, n: int, restocks: int = 0) -> None:
        st = self.stats
        if not st.started_ns:
            st.started_ns = time.time_ns()
        st.sent += n
        st.orders_sent += n - restocks
        st.restocks_sent += restocks
        if self.metrics and n:
            self.metrics.sent.inc(n)

    def _count_settled(self, acked: int, errors: int, last_error: str = "") -> None:
        st = self.stats
        st.acked += acked
        st.errors += errors
        if last_error:
            st.last_error = last_error
        m = self.metrics
        if m:
            if acked:
                m.acked.inc(acked)
            if errors:
                m.errors.inc(errors)
            m.in_flight.set(st.in_flight)

    async def send(
        self,
        events: Iterable[OrderEvent],
        headers: Headers | None = None,
        seqs: Sequence[int] | None = None,
    ) -> None:
        """Encode and send events one by one (restocks and tests; the stream uses blocks)."""
        evs = list(events)
        now = time.time_ns() if self.wall_clock else 0
        keys = [e.sku.encode() for e in evs]
        values = [encode_event(e, emit_ns=now if now else e.emit_ns) for e in evs]
        restocks = sum(1 for e in evs if e.type == "restock")
        await self._send(keys, values, headers, restocks, seqs)

    async def send_raw(
        self,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        headers: Headers | None = None,
        seqs: Sequence[int] | None = None,
    ) -> None:
        """Queue encoded events (keys are SKUs); `seqs`: each one's stream position, sent in
        its `flashsale.seq` header."""
        await self._send(keys, values, headers, 0, seqs)

    async def _send(
        self,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        headers: Headers | None,
        restocks: int,
        seqs: Sequence[int] | None,
    ) -> None:
        raise NotImplementedError

    async def send_packed(self, messages: Sequence[tuple[int, bytes, int, int]]) -> None:
        """Queue packed messages: (partition, value, events it carries, last event's seq)."""
        raise ValueError("packed messages need the kafka sink with --client aiokafka")

    async def partitions(self) -> int:
        """How many partitions `orders` has (sinks that pack know it)."""
        raise ValueError("packed messages need the kafka sink with --client aiokafka")


class OrderEmitter(_Counting):
    """aiokafka producer with bounded in-flight sends (the default client)."""

    wall_clock = True

    def __init__(self, settings: Settings, metrics: ProducerMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.pack = settings.pack
        self.stats = ProduceStats()
        self._pending: deque[asyncio.Future[Any]] = deque()
        # Packed messages in flight with the events each carries, and their sum.
        self._packed: deque[tuple[asyncio.Future[Any], int]] = deque()
        self._packed_events = 0
        self._partitions: int | None = None
        self._producer = aiokafka_producer(settings, "flashsale-producer")

    async def start(self) -> None:
        """Connect to the broker."""
        await self._producer.start()

    async def stop(self) -> None:
        """Flush what is queued and disconnect."""
        try:
            await self.flush()
        finally:
            await self._producer.stop()
            self.stats.finished_ns = self.stats.finished_ns or time.time_ns()

    def _settle(self) -> None:
        """Count the acknowledged (or failed) sends at the head of the queue."""
        pending = self._pending
        acked = errors = 0
        last_error = ""
        # Futures complete in send order per partition; stopping at the first pending one
        # only delays counting, never loses it. No per-message callback is scheduled.
        while pending and pending[0].done():
            fut = pending.popleft()
            if fut.cancelled() or fut.exception() is not None:
                errors += 1
                last_error = "cancelled" if fut.cancelled() else repr(fut.exception())
            else:
                acked += 1
        packed = self._packed
        while packed and packed[0][0].done():
            fut, events = packed.popleft()
            self._packed_events -= events
            if fut.cancelled() or fut.exception() is not None:
                errors += events
                last_error = "cancelled" if fut.cancelled() else repr(fut.exception())
            else:
                acked += events
        self._count_settled(acked, errors, last_error)

    async def partitions(self) -> int:
        """How many partitions `orders` has (asked once)."""
        if self._partitions is None:
            found = await self._producer.partitions_for(self.settings.topic_orders)
            self._partitions = len(found)
        return self._partitions

    async def send_packed(self, messages: Sequence[tuple[int, bytes, int, int]]) -> None:
        """Queue packed messages, each to its partition with its `flashsale.packed` and
        `flashsale.seq` headers; at most `max_in_flight` events wait for acknowledgement."""
        send = self._producer.send
        topic = self.settings.topic_orders
        limit = self.settings.max_in_flight
        packed = self._packed
        self._count_sent(sum(m[2] for m in messages))
        for partition, value, events, seq in messages:
            while packed and self._packed_events + events > limit:
                await asyncio.wait([packed[0][0]])
                self._settle()
            headers = [(PACKED_HEADER, b"%d" % events), (SEQ_HEADER, b"%d" % seq)]
            fut = await send(topic, value, partition=partition, headers=headers)
            packed.append((fut, events))
            self._packed_events += events
        self._settle()

    async def _send(
        self,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        headers: Headers | None,
        restocks: int,
        seqs: Sequence[int] | None,
    ) -> None:
        send = self._producer.send
        topic = self.settings.topic_orders
        limit = self.settings.max_in_flight
        pending = self._pending
        append = pending.append
        self._count_sent(len(values), restocks)
        for key, value, hdrs in zip(
            keys, values, _with_seqs(headers, seqs, len(values)), strict=True
        ):
            if len(pending) >= limit:
                # Bounded in flight: wait for the oldest send, not for each one.
                await asyncio.wait([pending[0]])
                self._settle()
            append(await send(topic, value, key=key, headers=hdrs))
        self._settle()

    async def deliver(self, events: Sequence[OrderEvent]) -> None:
        """Send `events` and return once the broker acknowledged every one (acks=all); the
        first failure is raised. Concurrent callers share the producer's batches."""
        send = self._producer.send
        topic = self.settings.topic_orders
        pending = self._pending
        self._count_sent(len(events))
        sent = []
        for event in events:
            while len(pending) >= self.settings.max_in_flight:
                await asyncio.wait([pending[0]])
                self._settle()
            fut = await send(topic, encode_event(event), key=event.sku.encode())
            pending.append(fut)
            sent.append(fut)
        try:
            await asyncio.gather(*sent)
        finally:
            self._settle()

    async def flush(self) -> None:
        """Wait until everything queued is acknowledged or failed."""
        await self._producer.flush()
        waiting = [*self._pending, *(fut for fut, _ in self._packed)]
        if waiting:
            await asyncio.wait(waiting)
        self._settle()
        self.stats.finished_ns = time.time_ns()


def _with_seqs(
    headers: Headers | None, seqs: Sequence[int] | None, n: int
) -> Iterable[Headers | None]:
    """Each message's headers: the shared ones, plus its own `flashsale.seq`."""
    if seqs is None:
        return [headers] * n
    shared = headers or []
    return ([*shared, (SEQ_HEADER, b"%d" % seq)] for seq in seqs)


def librdkafka_config(settings: Settings, client_id: str) -> dict[str, Any]:
    """What every librdkafka producer of ours is configured with: acks=all, idempotent unless
    `enable_idempotence` is off, compression and batching from the settings, then the
    security settings and the client-config file's properties (`librdkafka_security`)."""
    return {
        "bootstrap.servers": ",".join(settings.bootstrap_list()),
        "client.id": client_id,
        # Java's and aiokafka's partitioner: a SKU lands on the same partition whichever
        # client sent it (librdkafka's default, consistent_random, is CRC32).
        "partitioner": "murmur2_random",
        "acks": "all",
        "linger.ms": settings.linger_ms,
        "batch.size": settings.max_batch_bytes,
        "compression.type": settings.compression,
        # Off on the embedded broker (Tansu answers InitProducerId with UnknownError); the
        # workers dedupe either way.
        "enable.idempotence": settings.enable_idempotence,
        **librdkafka_security(settings),
    }


_P = TypeVar("_P")


def librdkafka_producer(
    factory: Callable[[dict[str, Any]], _P], settings: Settings, config: dict[str, Any]
) -> _P:
    """`factory(config)` (confluent-kafka's `Producer`); a property librdkafka rejects that
    came from the client-config file is a `ClientConfigError` naming librdkafka's reason."""
    from confluent_kafka import KafkaException

    try:
        return factory(config)
    except KafkaException as exc:
        if settings.client_config is None:
            raise
        reason = exc.args[0].str() if exc.args else str(exc)
        raise ClientConfigError(
            f"librdkafka rejects the client config {settings.client_config}: {reason}"
        ) from None


class ConfluentSink(_Counting):
    """librdkafka through confluent-kafka: the client for peak rates.

    Acknowledgements are counted without a per-message callback: librdkafka reports only
    failures (`delivery.report.only.error`), and acknowledged = sent - queued - failed.
    """

    wall_clock = True

    def __init__(self, settings: Settings, metrics: ProducerMetrics | None = None) -> None:
        from confluent_kafka import Producer

        self.settings = settings
        self.metrics = metrics
        self.stats = ProduceStats()
        self._failed = 0
        self._unproduced = 0
        self._last_error = ""
        self._producer = librdkafka_producer(
            Producer,
            settings,
            {
                **librdkafka_config(settings, "flashsale-producer"),
                # Bounded: at most this many events (about 300 bytes each) wait in memory.
                "queue.buffering.max.messages": max(settings.max_in_flight * 10, 10_000),
                "delivery.report.only.error": True,
                "on_delivery": self._on_error,
            },
        )

    def _on_error(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._failed += 1
            self._last_error = str(err)

    async def start(self) -> None:
        """librdkafka connects lazily; nothing to wait for."""

    async def partitions(self) -> int:
        """How many partitions `orders` has (from the cluster's metadata)."""
        topic = self.settings.topic_orders
        meta = await asyncio.to_thread(self._producer.list_topics, topic, 10)
        return len(meta.topics[topic].partitions)

    def _settle(self) -> None:
        self._producer.poll(0)
        st = self.stats
        # librdkafka's queue length counts its messages not yet acknowledged, and also events
        # waiting for a poll (errors, logs), so this is a lower bound of the acknowledged
        # ones, exact once the queue is empty: never count down from an earlier bound. Sends
        # counted but not yet handed to librdkafka (waiting on a full queue) are not in the
        # queue and must not count as acknowledged.
        bound = st.sent - self._unproduced - len(self._producer) - self._failed
        acked = max(bound, st.acked)
        self._count_settled(acked - st.acked, self._failed - st.errors, self._last_error)

    async def _send(
        self,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        headers: Headers | None,
        restocks: int,
        seqs: Sequence[int] | None,
    ) -> None:
        produce = self._producer.produce
        poll = self._producer.poll
        topic = self.settings.topic_orders
        self._count_sent(len(values), restocks)
        self._unproduced = len(values)
        # No `flashsale.seq` here: a header on every message costs librdkafka's Python
        # binding about 2 µs a message (the confluent path fell from 0.57 to 0.35 of the bare
        # loop, measured), and `--resume` needs aiokafka's order anyway.
        for key, value, hdrs in zip(
            keys, values, _with_seqs(headers, None, len(values)), strict=True
        ):
            try:
                if hdrs is None:
                    produce(topic, value, key)
                else:
                    # confluent-kafka 2.13+ types `headers` more narrowly than older
                    # releases (the `peers` extra holds it below 2.13 for quixstreams).
                    produce(topic, value, key, headers=hdrs)  # type: ignore[arg-type, unused-ignore]
            except BufferError:
                # The bounded local queue is full: wait for the broker, then go on.
                while True:
                    poll(0.005)
                    await asyncio.sleep(0)
                    try:
                        produce(topic, value, key, headers=hdrs)  # type: ignore[arg-type, unused-ignore]
                        break
                    except BufferError:
                        continue
            self._unproduced -= 1
        self._settle()

    async def flush(self) -> None:
        """Wait until everything queued is acknowledged or failed."""
        while len(self._producer):
            await asyncio.to_thread(self._producer.flush, 0.1)
        self._settle()
        self.stats.finished_ns = time.time_ns()

    async def stop(self) -> None:
        """Flush; librdkafka's producer closes when it is collected."""
        await self.flush()


class JsonlSink(_Counting):
    """One JSON object per line: `{"key": SKU, "value": {event}}`; driven by the scenario clock."""

    wall_clock = False

    def __init__(self, path: Path, metrics: ProducerMetrics | None = None) -> None:
        self.path = path
        self.metrics = metrics
        self.stats = ProduceStats()
        self._file: Any = None
        self._key_literals: dict[bytes, bytes] = {}

    async def start(self) -> None:
        """Open (truncate) the file."""
        self._file = self.path.open("wb")

    async def _send(
        self,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        headers: Headers | None,
        restocks: int,
        seqs: Sequence[int] | None,
    ) -> None:
        literals = self._key_literals
        lines = []
        for key, value in zip(keys, values, strict=True):
            literal = literals.get(key)
            if literal is None:
                literal = literals[key] = orjson.dumps(key.decode())
            lines.append(b'{"key":%b,"value":%b}\n' % (literal, value))
        self._count_sent(len(values), restocks)
        self._file.write(b"".join(lines))
        self._count_settled(len(values), 0)

    async def flush(self) -> None:
        """Flush the file."""
        if self._file is not None:
            self._file.flush()
        self.stats.finished_ns = time.time_ns()

    async def stop(self) -> None:
        """Close the file."""
        if self._file is not None:
            await self.flush()
            self._file.close()
            self._file = None


class ResumeError(Exception):
    """`orders` holds nothing a producer can resume from; the message says why."""


async def acknowledged_positions(settings: Settings) -> dict[int, int]:
    """The `flashsale.seq` of the newest message of each partition of `orders` (partitions
    without messages are left out): everything up to it on that partition is on the broker."""
    topic = settings.topic_orders
    consumer = await start_reader(settings.bootstrap_list(), settings)
    try:
        await consumer._client.force_metadata_update()
        found = consumer.partitions_for_topic(topic)
        if not found:
            raise ResumeError(f"cannot resume: topic {topic} does not exist")
        out: dict[int, int] = {}
        for partition in sorted(found):
            record = await last_record(consumer, TopicPartition(topic, partition))
            if record is None:
                continue
            seq = dict(record.headers or ()).get(SEQ_HEADER)
            if seq is None:
                raise ResumeError(
                    f"cannot resume: the newest message of {topic}[{partition}] (offset "
                    f"{record.offset}) has no {SEQ_HEADER} header; it was not sent by "
                    "flashsale produce"
                )
            out[partition] = int(seq)
        return out
    finally:
        await consumer.stop()


class _Resume:
    """Which events of a resumed run are already on the broker: per partition, every event
    at or below that partition's acknowledged position (a partition keeps send order)."""

    def __init__(
        self,
        generator: Generator,
        partitions: int,
        acked: Mapping[int, int],
        stats: ProduceStats,
    ) -> None:
        self.stats = stats
        self.table = generator._sku_partitions(partitions)
        # Below any position: a partition without messages has nothing acknowledged.
        self.last = np.full(partitions, -(1 << 62), dtype=np.int64)
        for partition, seq in acked.items():
            if partition >= partitions:
                raise ResumeError(
                    f"cannot resume: partition {partition} is not in 0..{partitions - 1}"
                )
            self.last[partition] = seq
        self.highest = int(self.last.max())

    def unsent(
        self, sku: npt.NDArray[np.integer[Any]], seqs: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        """Which of these events (SKU indices, stream positions) still have to be sent."""
        mask: npt.NDArray[np.bool_] = seqs > self.last[self.table[sku]]
        self.stats.resumed_skipped += len(mask) - int(mask.sum())
        return mask

    def done_after(self, seq: int) -> bool:
        """True once every partition's acknowledged position lies before `seq`."""
        return seq > self.highest


async def send_restocks(sink: Sink, generator: Generator, resume: _Resume | None = None) -> None:
    """The catalog's restocks, carrying the run's identity so `verify` can name it; stream
    positions -R..-1 (on a resumed run, only those not on the broker yet)."""
    scenario = generator.scenario
    identity = [
        ("flashsale.scenario", scenario.name.encode()),
        ("flashsale.seed", str(scenario.seed).encode()),
    ]
    restocks = generator.restocks()
    seqs = np.arange(-len(restocks), 0, dtype=np.int64)
    if resume is not None:
        keep = resume.unsent(np.arange(len(restocks)), seqs)
        restocks = [r for r, k in zip(restocks, keep.tolist(), strict=True) if k]
        seqs = seqs[keep]
    if restocks:
        await sink.send(restocks, headers=identity, seqs=seqs.tolist())
    await sink.flush()


async def produce_scenario(
    sink: Sink,
    generator: Generator,
    duration_s: float | None,
    max_events: int | None,
    should_stop: Callable[[], bool] = lambda: False,
    *,
    until: tuple[float, int, int, int, int] | None = None,
    restocks: bool = True,
    paced: bool | None = None,
    start_at: float | None = None,
    warn: Callable[[str], None] | None = None,
    resume_from: Mapping[int, int] | None = None,
) -> ProduceStats:
    """Restock the catalog, then emit the scenario's events; flush at the end.

    Paced (the default for Kafka sinks): each 10 ms block leaves at its scheduled wall time,
    counted from `start_at` (a `time.monotonic()` value shared by split producers). Unpaced
    (the default for files): as fast as the sink takes it, on the scenario clock. A sink whose
    `pack` > 0 gets packed messages of up to that many events of one partition (restocks
    stay single). `resume_from` (see `acknowledged_positions`): skip what the broker holds
    already and go on from there, the rest of the schedule shifted to start now.
    """
    pack = sink.pack
    resume = None
    if resume_from is not None:
        resume = _Resume(generator, await sink.partitions(), resume_from, sink.stats)
    if restocks:
        await send_restocks(sink, generator, resume)
    shifted = False
    partitions = await sink.partitions() if pack else 0
    paced = sink.wall_clock if paced is None else paced
    st = sink.stats
    metrics = sink.metrics
    compression = generator.scenario.scale.compression
    start = time.monotonic() if start_at is None else start_at
    last_warned = -BEHIND_WARN_EVERY_S
    if metrics:
        horizon = generator.scenario.curve.horizon_s
        end = horizon if duration_s is None else min(duration_s * compression, horizon)
        metrics.scenario_end_seconds.set(end)
    blocks = generator.blocks(duration_s, max_events, GRID_S if paced else 0.1, until)
    for block in blocks:
        if should_stop():
            break
        if resume is not None and len(block):
            if resume.done_after(int(block.index[0])):
                resume = None
            else:
                block = block.select(resume.unsent(block.rows["sku"], block.index))
        if not shifted and st.resumed_skipped:
            if not len(block):
                # Still inside what the broker holds: no waiting for the schedule.
                st.scenario_s = block.end_s * compression
                continue
            # The first block with something left to send leaves now, the rest of the
            # schedule after it.
            start = time.monotonic() - block.start_s
            shifted = True
        if paced:
            delay = start + block.start_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                behind = 0.0
            else:
                behind = -delay
                await asyncio.sleep(0)  # still let acknowledgements and status run
            st.behind_s = behind
            st.max_behind_s = max(st.max_behind_s, behind)
            if metrics:
                metrics.behind.set(behind)
            now = time.monotonic()
            if behind > BEHIND_WARN_S and warn and now - last_warned >= BEHIND_WARN_EVERY_S:
                last_warned = now
                warn(
                    f"producer is {behind:.1f} s behind schedule at scenario second "
                    f"{block.start_s * compression:,.0f}: the client or broker cannot keep "
                    "up with this rate"
                )
        if len(block):
            emit_ns = time.time_ns() if sink.wall_clock else None
            if pack:
                await sink.send_packed(block.packed_with_seq(pack, partitions, emit_ns))
            else:
                await sink.send_raw(block.keys, block.values(emit_ns), seqs=block.index.tolist())
        st.scenario_s = block.end_s * compression
        if metrics:
            metrics.scenario_seconds.set(st.scenario_s)
    await sink.flush()
    if metrics:
        metrics.behind.set(0)
    st.behind_s = 0.0
    return st


def open_sink(
    spec: str, client: str, settings: Settings, metrics: ProducerMetrics | None = None
) -> Sink:
    """`kafka` (with `client` aiokafka or confluent) or `jsonl:PATH`."""
    if settings.pack and (spec != "kafka" or client != "aiokafka"):
        raise ValueError("--pack needs the kafka sink with --client aiokafka")
    if spec.startswith("jsonl:"):
        return JsonlSink(Path(spec.removeprefix("jsonl:")), metrics)
    if spec != "kafka":
        raise ValueError(f"unknown sink {spec!r}; use kafka or jsonl:PATH")
    if client == "confluent":
        return ConfluentSink(settings, metrics)
    if client == "aiokafka":
        return OrderEmitter(settings, metrics)
    raise ValueError(f"unknown client {client!r}; use aiokafka or confluent")
