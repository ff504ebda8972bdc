"""Reading Kafka directly: true end offsets, offset ranges, a partition's newest records and
whole topics, each with a consumer of no group.

Tansu 0.6 answers ListOffsets(latest) with the base offset of a partition's last record batch
plus one, which is short of the end whenever that batch holds several records (measured: five
records in one batch at offsets 3..7 reported an end of 4, not 8). A fetch response carries the
real high watermark, so end offsets here come from a fetch; on real Kafka both agree.

Every reader here reads committed records only (`isolation_level` read_committed): a worker in
exactly-once mode writes its outputs and states in Kafka transactions, and what an aborted
transaction wrote must not count. The end of a partition is then its last stable offset (the
first offset of a transaction still open), as a fetch reports it; on a topic without
transactions, and on Tansu (measured: the fetch's last stable offset equals its high
watermark), that is the high watermark. Offsets of a transactional topic are not contiguous:
each commit or abort takes an offset for its marker, which no reader returns, and the records
of an aborted transaction are skipped; every read here goes by the consumer's position, not by
counting records, and `last_records` looks further back when a partition ends in markers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from flashsale.brokers.base import BrokerError
from flashsale.kafka.clients import aiokafka_security
from flashsale.settings import STATE_RECORD_MAX_BYTES, Settings

__all__ = [
    "READ_STALL_S",
    "end_offsets",
    "high_watermarks",
    "last_record",
    "last_records",
    "read_newest",
    "read_ranges",
    "read_topic",
    "start_reader",
]

#: The isolation level of every reader here (see the module's docstring).
ISOLATION = "read_committed"


async def start_reader(
    bootstrap: str | list[str], settings: Settings | None = None
) -> AIOKafkaConsumer:
    """A started consumer without a group for direct reads (`read_ranges`, `last_record`);
    it takes a whole partition-state record, which may weigh up to 64 MB."""
    consumer = AIOKafkaConsumer(
        **aiokafka_security(
            settings,
            "consumer",
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            isolation_level=ISOLATION,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=STATE_RECORD_MAX_BYTES,
        )
    )
    await consumer.start()
    return consumer


def _consumer(bootstrap: str, settings: Settings | None) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **aiokafka_security(
            settings,
            "consumer",
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            isolation_level=ISOLATION,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
    )


async def high_watermarks(
    consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition], timeout_s: float = 10.0
) -> dict[TopicPartition, int]:
    """True end offsets of `tps`, read from fetch responses (reassigns `consumer`): the last
    stable offsets of a read_committed consumer."""
    return (await _listed_and_true_ends(consumer, tps, timeout_s))[1]


async def _listed_and_true_ends(
    consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition], timeout_s: float
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    if not tps:
        return {}, {}
    listed = await consumer.end_offsets(list(tps))
    consumer.assign(list(tps))
    for tp in tps:
        consumer.seek(tp, max(listed[tp] - 1, 0))
    out: dict[TopicPartition, int] = {}
    deadline = time.monotonic() + timeout_s
    while len(out) < len(tps):
        pending = [tp for tp in tps if tp not in out]
        await consumer.getmany(*pending, timeout_ms=100, max_records=1)
        for tp in pending:
            hw = consumer.highwater(tp)
            if hw is None:
                continue
            # A read_committed consumer can read up to the last stable offset only: past it
            # lie records of a transaction still open (None or -1: not reported).
            lso = consumer.last_stable_offset(tp)
            out[tp] = lso if lso is not None and lso >= 0 else max(hw, listed[tp])
        if time.monotonic() > deadline:
            missing = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in tps if tp not in out)
            raise TimeoutError(f"no fetch answer for {missing} in {timeout_s:.0f}s")
    return listed, out


#: How long `read_topic` waits for a partition that returns nothing short of its end.
READ_STALL_S = 30.0


async def read_ranges(
    consumer: AIOKafkaConsumer,
    ranges: Mapping[TopicPartition, tuple[int, int]],
    stall_s: float | None = None,
) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
    """Records [start, end) of each partition, in order, fetched together (reassigns).

    With `stall_s`, raises BrokerError when a partition's position stays put that long short
    of its end (a topic Tansu recreated after a restart answers fetches below its end with
    nothing); without it, waits as long as it takes.
    """
    wanted = {tp: r for tp, r in ranges.items() if r[1] > r[0]}
    out: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {tp: [] for tp in ranges}
    if not wanted:
        return out
    consumer.assign(list(wanted))
    for tp, (start, _) in wanted.items():
        consumer.seek(tp, start)
    remaining = set(wanted)
    moved = {tp: (start, time.monotonic()) for tp, (start, _) in wanted.items()}
    while remaining:
        got = await consumer.getmany(*remaining, timeout_ms=1000, max_records=10_000)
        for tp, records in got.items():
            end = wanted[tp][1]
            out[tp].extend(r for r in records if r.offset < end)
        # Position, not the last offset seen: compaction may leave gaps at the end.
        for tp in list(remaining):
            position = await consumer.position(tp)
            if position >= wanted[tp][1]:
                remaining.discard(tp)
            elif position != moved[tp][0]:
                moved[tp] = (position, time.monotonic())
            elif stall_s is not None and time.monotonic() - moved[tp][1] > stall_s:
                raise BrokerError(
                    f"{tp.topic}[{tp.partition}]: no records from offset {position} to its "
                    f"end {wanted[tp][1]} in {stall_s:.0f} s; the broker may have lost them "
                    "(a topic recreated after a restart?)"
                )
    return out


async def last_record(
    consumer: AIOKafkaConsumer, tp: TopicPartition
) -> ConsumerRecord[bytes, bytes] | None:
    """The newest record of one partition, or None when it is empty (reassigns `consumer`)."""
    return (await last_records(consumer, [tp]))[tp]


async def last_records(
    consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition]
) -> dict[TopicPartition, ConsumerRecord[bytes, bytes] | None]:
    """The newest committed record of each partition (None for an empty one), all read
    together: one ListOffsets, one round of fetches for the true ends, one read (reassigns
    `consumer`). One partition at a time, each empty one costs a fetch wait of its own
    (measured: 16 partitions confirmed one by one took up to 5 s at a worker's start).

    A transactional topic ends in a commit marker (and may hold aborted records before it),
    which no read returns: a partition whose last range holds no record is read again from
    twice as far back, down to its first offset."""
    listed, ends = await _listed_and_true_ends(consumer, tps, 10.0)
    # Read each last batch whole: ListOffsets may point at its start, not its end.
    starts = {tp: max(min(listed[tp], ends[tp]) - 1, 0) for tp in tps}
    newest: dict[TopicPartition, ConsumerRecord[bytes, bytes] | None] = {}
    ranges = {tp: (starts[tp], ends[tp]) for tp in tps}
    begins: dict[TopicPartition, int] | None = None
    while ranges:
        got = await read_ranges(consumer, ranges)
        further: dict[TopicPartition, tuple[int, int]] = {}
        for tp, (start, _) in ranges.items():
            if got[tp]:
                newest[tp] = got[tp][-1]
                continue
            if start > 0 and begins is None:
                begins = await consumer.beginning_offsets(list(tps))
            if start == 0 or begins is None or start <= begins[tp]:
                newest[tp] = None
                continue
            # Only markers or aborted records from `start` on: look as far again before it.
            further[tp] = (max(start - max(ends[tp] - start, 1), begins[tp]), start)
        ranges = further
    return {tp: newest[tp] for tp in tps}


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    await consumer._client.force_metadata_update()
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


async def end_offsets(
    bootstrap: str, topic: str, settings: Settings | None = None
) -> dict[int, int]:
    """True end offset per partition of `topic` (empty when the topic does not exist)."""
    consumer = _consumer(bootstrap, settings)
    await consumer.start()
    try:
        tps = await _partitions(consumer, topic)
        ends = await high_watermarks(consumer, tps)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def read_newest(
    bootstrap: str, topic: str, settings: Settings | None = None
) -> dict[int, list[ConsumerRecord[bytes, bytes]]]:
    """The newest record of each partition of `topic` (an empty list for an empty one): for
    a topic whose partitions each hold one key's successive values, such as the workers'
    state changelog, where reading everything would hold every snapshot in memory."""
    consumer = _consumer(bootstrap, settings)
    await consumer.start()
    try:
        newest = await last_records(consumer, await _partitions(consumer, topic))
        return {tp.partition: [] if rec is None else [rec] for tp, rec in newest.items()}
    finally:
        await consumer.stop()


async def read_topic(
    bootstrap: str, topic: str, settings: Settings | None = None
) -> dict[int, list[ConsumerRecord[bytes, bytes]]]:
    """Every record of `topic` up to its end offsets at the start, per partition in order.
    `settings`: whose security settings to use (default: the environment's)."""
    consumer = _consumer(bootstrap, settings)
    await consumer.start()
    try:
        tps = await _partitions(consumer, topic)
        ends = await high_watermarks(consumer, tps)
        begins = await consumer.beginning_offsets(tps) if tps else {}
        got = await read_ranges(
            consumer, {tp: (begins[tp], ends[tp]) for tp in tps}, stall_s=READ_STALL_S
        )
        return {tp.partition: records for tp, records in got.items()}
    finally:
        await consumer.stop()
