"""Recovery, apart from the batch loop: the newest written state of each partition, and the
offsets the stream skipped read back from the broker.

Faust's recovery reads a changelog up to ListOffsets(latest), which Tansu under-reports (see
`flashsale.kafka.reading`), so the value it recovered may be a batch behind: `newest_states`
reads the changelog's tail itself, which gives the newest state on any broker. Faust's
consumer can also jump forward, before the first message of a batch or inside it, around a
restart or a rebalance (measured here: 2 or 3 offsets missing between two fetches right after
a restart; users of faust-streaming report the same on its GitHub tracker); `contiguous`
reads every skipped offset back, and `behind` names the quiet partitions whose last messages
the stream never delivered.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from flashsale.kafka.reading import last_records, read_ranges, start_reader
from flashsale.settings import Settings
from streams.consumer import stop_consumer
from streams.metrics import WorkerMetrics
from streams.state import PartitionState, StateFormatError

__all__ = [
    "Recovery",
    "fingerprint",
    "missing_ranges",
    "partition_key",
    "readable_state",
]

_log = logging.getLogger(__name__)


class HighWater(Protocol):
    """What `behind` needs of the worker's consumer."""

    def highwater(self, tp: TopicPartition) -> int | None:
        """The high-water mark of `tp` as the last fetch saw it."""


def partition_key(partition: int) -> bytes:
    """The key of a partition's state in the state table and its changelog."""
    return str(partition).encode()


class Recovery:
    """Reads the worker needs besides its stream, through one direct reader of its own."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._reader_consumer: AIOKafkaConsumer | None = None

    async def reader(self) -> AIOKafkaConsumer:
        """The direct reader, started on first use."""
        if self._reader_consumer is None:
            self._reader_consumer = await start_reader(
                self.settings.bootstrap_list(), self.settings
            )
        return self._reader_consumer

    async def close(self) -> None:
        """Release the direct reader."""
        if self._reader_consumer is not None:
            reader, self._reader_consumer = self._reader_consumer, None
            await stop_consumer(reader)

    async def newest_states(
        self, partitions: Sequence[int], local: Mapping[bytes, Any]
    ) -> dict[int, tuple[PartitionState, bytes | None]]:
        """The newest written state of each partition: the table's own (`local`), or the tail
        of its changelog partition when that is newer (then also its bytes, for the table), or
        a fresh state. The tails of all `partitions` are read together (`last_records`)."""
        topic = self.settings.state_changelog_topic()
        tails = await last_records(
            await self.reader(), [TopicPartition(topic, p) for p in partitions]
        )
        newest: dict[int, tuple[PartitionState, bytes | None]] = {}
        for partition in partitions:
            state = readable_state(local.get(partition_key(partition))) or PartitionState(
                partition=partition,
                window=self.settings.dedupe_window,
                grace_ms=round(self.settings.window_grace_s * 1000),
            )
            written: bytes | None = None
            record = tails[TopicPartition(topic, partition)]
            if record is not None and record.value is not None:
                tail = readable_state(record.value)
                if tail is not None and tail.last_offset > state.last_offset:
                    self.metrics.recovered_from_tail.inc()
                    state, written = tail, record.value
            newest[partition] = (state, written)
        return newest

    async def contiguous(
        self, partition: int, applied: int, messages: Sequence[Any], upto: int | None = None
    ) -> Sequence[Any]:
        """`messages` with every offset the stream skipped read back from the broker.

        Kafka offsets of a plain topic are contiguous, so any jump past `applied + 1` is read
        back here, keeping per-partition order and losing nothing; so is [expected, `upto`).
        """
        gaps = missing_ranges(applied, [msg.offset for msg in messages], upto)
        if not gaps:
            return messages
        tp = TopicPartition(self.settings.topic_orders, partition)
        reader = await self.reader()
        filled: list[Any] = []
        for start, end in gaps:
            got = (await read_ranges(reader, {tp: (start, end)}))[tp]
            self.metrics.gap_filled.inc(len(got))
            filled.extend(got)
        merged = {msg.offset: msg for msg in filled}
        for msg in messages:
            merged.setdefault(msg.offset, msg)
        return [merged[offset] for offset in sorted(merged)]

    def behind(
        self,
        consumer: HighWater,
        states: Mapping[int, PartitionState],
        last_batch: Mapping[int, float],
        last_delivery: float,
        idle_s: float,
        busy_s: float,
    ) -> dict[int, int]:
        """The quiet partitions the stream left behind, each with the offset to read up to.

        A forward jump of the stream is filled when the next message arrives; when the skipped
        messages were a partition's last ones, none arrives. After `idle_s` without a batch, a
        partition whose high-water mark is past its state is behind — once the stream has
        delivered nothing for `idle_s` either, or after `busy_s` without a batch of it. While
        the stream is busy, a partition behind is one the next fetches bring: reading it here
        would read it twice (measured: with 16 partitions, a packed fetch of a million events
        took 5 s, and every partition applied early in it was read again, 80-250 messages of
        1,000 events each).
        """
        now = time.monotonic()
        streaming = now - last_delivery < idle_s
        behind: dict[int, int] = {}
        for partition, state in states.items():
            quiet = now - last_batch.get(partition, 0.0)
            if quiet < idle_s or (streaming and quiet < busy_s):
                continue
            tp = TopicPartition(self.settings.topic_orders, partition)
            try:
                high = consumer.highwater(tp)
            except (KeyError, AssertionError):
                continue  # not assigned to this consumer any more
            if high is not None and high - 1 > state.last_offset:
                # At most one batch at a time: the stream normally has the rest.
                behind[partition] = min(high, state.last_offset + 1 + self.settings.batch_max)
        return behind


def missing_ranges(
    applied: int, offsets: Sequence[int], upto: int | None = None
) -> list[tuple[int, int]]:
    """The [start, end) offset ranges after `applied` that `offsets` skip (and up to `upto`)."""
    gaps: list[tuple[int, int]] = []
    expected = applied + 1
    for offset in offsets:
        if offset > expected:
            gaps.append((expected, offset))
        expected = max(expected, offset + 1)
    if upto is not None and upto > expected:
        gaps.append((expected, upto))
    return gaps


def readable_state(raw: bytes | None) -> PartitionState | None:
    """The state a changelog record holds; None for none, and for one an older flashsale
    wrote: the partition is then rebuilt from `orders` (a fresh state reads what lies below
    the stream's position back from the topic), with a warning."""
    if raw is None:
        return None
    try:
        return PartitionState.from_bytes(raw)
    except StateFormatError as exc:
        _log.warning("%s: rebuilding it from the orders topic", exc)
        return None


def fingerprint(state: PartitionState, applied_before: int, messages: Sequence[Any]) -> None:
    """Note the CRC-32 of the message at the state's last offset, and of the first message a
    fresh state applied: `verify` checks the topic still holds those bytes there (a broker
    that lost its topics and got them written again holds other messages at those offsets).
    """
    if applied_before < 0:
        first = next(msg for msg in messages if msg.offset > applied_before)
        state.first_offset = first.offset
        state.first_crc32 = zlib.crc32(first.value or b"")
    last = next(msg for msg in reversed(messages) if msg.offset == state.last_offset)
    state.last_crc32 = zlib.crc32(last.value or b"")
