"""read_ranges on a fake consumer: it reads each range to its end, and gives up with a clear
error on a partition that returns nothing below its end (a topic Tansu recreated)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import TopicPartition

from flashsale.brokers.base import BrokerError
from flashsale.kafka.reading import read_ranges

TP = TopicPartition("orders", 0)


@dataclass
class _Rec:
    offset: int


class _Consumer:
    """Serves offsets [start, `holds`) of one partition, 2 a fetch; nothing past `holds`."""

    def __init__(self, holds: int) -> None:
        self.holds = holds
        self.pos = 0

    def assign(self, tps: list[TopicPartition]) -> None:
        pass

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.pos = offset

    async def getmany(self, *tps: TopicPartition, **_: Any) -> dict[TopicPartition, list[_Rec]]:
        await asyncio.sleep(0)
        batch = [_Rec(o) for o in range(self.pos, min(self.pos + 2, self.holds))]
        self.pos += len(batch)
        return {TP: batch} if batch else {}

    async def position(self, tp: TopicPartition) -> int:
        return self.pos


def test_a_range_is_read_to_its_end() -> None:
    got = asyncio.run(read_ranges(_Consumer(holds=5), {TP: (1, 5)}))  # type: ignore[arg-type]
    assert [r.offset for r in got[TP]] == [1, 2, 3, 4]


def test_a_partition_that_stops_short_of_its_end_is_an_error_not_a_hang() -> None:
    with pytest.raises(BrokerError, match=r"orders\[0\]: no records from offset 3 to its end 9"):
        asyncio.run(read_ranges(_Consumer(holds=3), {TP: (0, 9)}, stall_s=0.05))  # type: ignore[arg-type]
