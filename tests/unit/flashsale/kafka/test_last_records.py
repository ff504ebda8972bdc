"""last_records on a fake consumer: the newest record of every partition, read together (the
number of fetch rounds does not grow with the partitions)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from flashsale.kafka.reading import last_records


@dataclass
class _Rec:
    offset: int
    value: bytes


class _Consumer:
    """Partition p holds offsets [0, ends[p]); ListOffsets answers one short of the end, as
    Tansu can. Counts its fetch rounds."""

    def __init__(self, ends: dict[int, int]) -> None:
        self.ends = {TopicPartition("states", p): end for p, end in ends.items()}
        self.pos: dict[TopicPartition, int] = {}
        self.fetched: set[TopicPartition] = set()
        self.rounds = 0

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: max(self.ends[tp] - 1, 0) for tp in tps}

    def assign(self, tps: list[TopicPartition]) -> None:
        pass

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.pos[tp] = offset

    async def getmany(self, *tps: TopicPartition, **_: Any) -> dict[TopicPartition, list[_Rec]]:
        await asyncio.sleep(0)
        self.rounds += 1
        got: dict[TopicPartition, list[_Rec]] = {}
        for tp in tps:
            self.fetched.add(tp)
            start, end = self.pos[tp], self.ends[tp]
            if start < end:
                got[tp] = [_Rec(o, f"{tp.partition}:{o}".encode()) for o in range(start, end)]
                self.pos[tp] = end
        return got

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.ends[tp] if tp in self.fetched else None

    def last_stable_offset(self, tp: TopicPartition) -> int | None:
        return None  # as an old broker: the high watermark is the end

    async def position(self, tp: TopicPartition) -> int:
        return self.pos[tp]


def newest(ends: dict[int, int]) -> tuple[dict[int, bytes | None], int]:
    consumer = _Consumer(ends)
    tps = [TopicPartition("states", p) for p in ends]
    got = asyncio.run(last_records(consumer, tps))  # type: ignore[arg-type]
    return {tp.partition: rec and rec.value for tp, rec in got.items()}, consumer.rounds


def test_the_newest_record_of_each_partition_and_none_for_an_empty_one() -> None:
    got, _ = newest({0: 5, 1: 0, 2: 1})
    assert got == {0: b"0:4", 1: None, 2: b"2:0"}


def test_all_partitions_are_read_in_the_same_fetch_rounds() -> None:
    _, rounds_of_one = newest({0: 5})
    _, rounds_of_sixteen = newest({p: 5 + p for p in range(16)})
    assert rounds_of_sixteen == rounds_of_one
