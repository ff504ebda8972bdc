"""A Faust consumer that hands the `orders` topic to the worker a fetch at a time.

Faust's consumer turns every record into a `Message`, then an `Event` that travels through a
channel queue into the agent's stream, and it awaits `Service.wait_first` (four futures and
an `asyncio.wait`) per record. Measured with py-spy on a worker draining 60,000 orders, that
per-record path took about two thirds of the worker's CPU; our own rules took a quarter.

`BulkConsumer` keeps everything else of Faust's — group membership and rebalances, offset
commits, table changelogs and their recovery, the web server — and changes only the drain
loop: records of the bulk topics go to a handler one fetch at a time (a list per partition,
in offset order), and are then acknowledged together, so Faust commits them as it would the
agent's. Records of every other topic take Faust's own per-message path.

`stop_consumer`, and the consumer thread `BulkConsumer` runs, stop an aiokafka consumer whose
broker has gone, which its own `stop()` does not always do (`_stray_cancel`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaFaustConsumer
from faust.transport.drivers.aiokafka import Producer as AIOKafkaFaustProducer
from faust.types import TP
from faust.types.tuples import ack_lock

__all__ = ["BulkApp", "BulkConsumer", "BulkHandler", "ConfiguredProducer", "stop_consumer"]

_log = logging.getLogger(__name__)

#: Receives one fetch of the bulk topics: for each partition its records in offset order.
BulkHandler = Callable[[Mapping[TP, Sequence[Any]]], Awaitable[None]]


def _stray_cancel() -> bool:
    """True when the CancelledError being handled was not meant for the current task.

    aiokafka's `Fetcher.close` cancels each pending fetch and awaits it. A fetch whose request
    failed (the broker is gone) waits out its retry backoff, `await asyncio.sleep(...)` inside
    `except KafkaError`, where the cancellation is not caught: the fetch's CancelledError
    leaves `AIOKafkaConsumer.stop()` although nobody cancelled its caller, and the rest of
    `stop()` (closing the client) never runs.
    """
    task = asyncio.current_task()
    return task is not None and not task.cancelling()


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """`consumer.stop()`, also when its broker is gone (see `_stray_cancel`)."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        if not _stray_cancel():
            raise
        await consumer._client.close()


#: How old the worker consumer's cluster metadata may get before it is asked for again (ms).
METADATA_MAX_AGE_MS = 5_000


class _ConsumerThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, stopping when the broker is gone, with a fetch wait of our
    choosing (Faust hard-codes 1.5 s; None keeps it)."""

    fetch_max_wait_ms: int | None = None
    read_committed = False

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Both read by the consumer's fetcher when it starts, which is after this.
        if self.fetch_max_wait_ms is not None:
            consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        if self.read_committed:
            # Faust sets it only for its own exactly-once mode (`app.in_transaction`).
            consumer._isolation_level = "read_committed"
        # aiokafka 0.14 resets a partition's position (`_update_fetch_positions`) without
        # asking for new metadata when the broker it asks says it is not the leader: after a
        # leader moved, the worker asked the old leader again and again until the periodic
        # refresh, 5 minutes by default (seen after a broker was cut off the network and
        # healed; Kafka's Java client refreshes there, KAFKA-9535). A refresh every few
        # seconds bounds that wait; the synchronizer reads the age at each turn.
        consumer._client._metadata_max_age_ms = METADATA_MAX_AGE_MS
        return consumer

    async def on_thread_stop(self) -> None:
        # Faust's stops the aiokafka consumer with a bare `stop()`. Its stray CancelledError
        # (`_stray_cancel`) would end the thread with a traceback before it tells the main
        # loop it is done (mode catches only `Exception` there), and the worker's stop would
        # wait mode's `shutdown_timeout`, 60 s, for the thread.
        try:
            await super().on_thread_stop()
        except asyncio.CancelledError:
            if not _stray_cancel():
                raise
            _log.info("the Kafka consumer stopped with its broker gone")
            if self._consumer is not None:
                await self._consumer._client.close()


class BulkConsumer(AIOKafkaFaustConsumer):
    """Faust's aiokafka consumer with a per-fetch path for the topics in `bulk_topics`."""

    bulk_topics: frozenset[str] = frozenset()
    bulk_handler: BulkHandler | None = None

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        thread = _ConsumerThread(self, loop=self.loop, beacon=self.beacon)
        # Called by Faust's constructor, before `BulkApp` could set anything on us: the
        # setting is read from the app.
        thread.fetch_max_wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        thread.read_committed = bool(getattr(self.app, "transactional_topics", ()))
        return thread

    async def _commit_offsets(
        self, offsets: Mapping[TP, int], start_new_transaction: bool = True
    ) -> bool:
        """Faust's commit, but for the topics the worker commits in its own transactions
        (`BulkApp.transactional_topics`): those offsets are noted as committed, not sent."""
        ours: frozenset[str] = getattr(self.app, "transactional_topics", frozenset())
        if not ours:
            return await super()._commit_offsets(offsets, start_new_transaction)
        skipped = {tp: offset for tp, offset in offsets.items() if tp.topic in ours}
        self._committed_offset.update(skipped)
        rest = {tp: offset for tp, offset in offsets.items() if tp.topic not in ours}
        return bool(rest) and await super()._commit_offsets(rest, start_new_transaction)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - run by Faust
        handler = self.bulk_handler
        if handler is None or not self.bulk_topics:
            await super()._drain_messages(fetcher)
            return
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)
                if not records or self.should_stop:
                    continue
                if not self.flow_active:
                    # As Faust's getmany: a fetch made while a rebalance stopped the flow is
                    # dropped, and the positions go back to the committed offsets.
                    await self.perform_seek()
                    continue
                generation = self.app.consumer_generation_id
                fetched: dict[TP, Sequence[Any]] = {}
                for tp, batch in records.items():
                    held = active is None or tp in active or tp in self._buffered_partitions
                    if not held:
                        continue
                    if tp.topic in self.bulk_topics:
                        fetched[tp] = self._unread(tp, batch)
                    else:
                        await self._per_message(tp, batch, generation)
                bulk = {tp: batch for tp, batch in fetched.items() if batch}
                if not bulk or not self._same_generation(generation):
                    continue
                await handler(bulk)
                for tp, handled in bulk.items():
                    self._read_offset[tp] = handled[-1].offset
                    self._ack_offsets(tp, (record.offset for record in handled))
                commit_every = self._commit_every
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise

    def _same_generation(self, generation: int) -> bool:
        return self.flow_active and self.app.consumer_generation_id == generation

    def _unread(self, tp: TP, batch: Sequence[Any]) -> Sequence[Any]:
        """The records at or past the read offset (Faust drops older ones as re-deliveries)."""
        read = self._read_offset[tp]
        if read is None or not batch or batch[0].offset >= read:
            return batch
        return [record for record in batch if record.offset >= read]

    async def _per_message(self, tp: TP, batch: Sequence[Any], generation: int) -> None:
        """Faust's own path for a topic that is not bulk (changelogs, other agents)."""
        callback = self.callback
        for record in batch:
            if not self._same_generation(generation):
                return
            read = self._read_offset[tp]
            if read is not None and record.offset < read:
                continue
            message = self._to_message(tp, record)
            await self.wait_first(callback(message), self.suspend_flow.wait())
            self._read_offset[tp] = record.offset

    def _ack_offsets(self, tp: TP, offsets: Iterable[int]) -> None:
        """Acknowledge a fetch's offsets of one partition, as `Consumer.ack` does one by one."""
        if not self.app.topics.acks_enabled_for(tp.topic):
            return
        with ack_lock:
            committed = self._committed_offset[tp]
            index = self._acked_index[tp]
            acked = self._acked[tp]
            for offset in offsets:
                if (committed is None or offset >= committed) and offset not in index:
                    index.add(offset)
                    acked.append(offset)
                    self._n_acked += 1


class ConfiguredProducer(AIOKafkaFaustProducer):
    """Faust's aiokafka producer, built with the app's `producer_extra` keyword arguments on
    top of Faust's own (Faust has no setting for `enable_idempotence`, for instance). A
    transaction's producer still gets what Faust forces for it (acks=all, idempotence)."""

    def _settings_extra(self) -> Mapping[str, Any]:
        extra = getattr(self.app, "producer_extra", None) or {}
        return {**extra, **super()._settings_extra()}


class BulkApp(faust.App):
    """A Faust app whose consumer is a `BulkConsumer`; `consume_in_bulk` names what it routes.
    Its producer is a `ConfiguredProducer` taking `producer_extra`."""

    bulk_topics: frozenset[str] = frozenset()
    bulk_handler: BulkHandler | None = None
    fetch_max_wait_ms: int | None = None
    producer_extra: Mapping[str, Any] = {}
    #: Topics whose consumed offsets the worker commits in its own transactions (exactly-once
    #: mode), never Faust; non-empty also makes the consumer read committed records only.
    transactional_topics: frozenset[str] = frozenset()

    def _new_producer(self) -> Any:
        return ConfiguredProducer(self.transport, loop=self.loop, beacon=self.beacon)

    def consume_in_bulk(
        self, topics: Iterable[str], handler: BulkHandler, fetch_max_wait_ms: int | None = None
    ) -> None:
        """Hand `topics` to `handler` a fetch at a time (call before the worker starts); a
        fetch waits at most `fetch_max_wait_ms` for data (None: Faust's 1.5 s)."""
        self.bulk_topics = frozenset(topics)
        self.bulk_handler = handler
        self.fetch_max_wait_ms = fetch_max_wait_ms

    def _new_consumer(self) -> Any:
        consumer = BulkConsumer(
            self.transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=self.transport.loop,
        )
        consumer.bulk_topics = self.bulk_topics
        consumer.bulk_handler = self.bulk_handler
        return consumer
