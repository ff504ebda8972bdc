"""Resuming a killed producer: what `orders` already holds, from the `flashsale.seq` header of
each partition's newest message, and which events of the stream are still to be sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from aiokafka import TopicPartition

from flashsale.kafka.reading import last_record, start_reader
from flashsale.settings import Settings
from producers.generator import Generator
from producers.sinks.base import SEQ_HEADER, ProduceStats

__all__ = ["Resume", "ResumeError", "acknowledged_positions"]


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


class Resume:
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
