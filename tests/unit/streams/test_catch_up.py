"""Which quiet partitions a worker reads back itself (`OrderProcessor.catch_up`): those the
stream left behind, never those it is still bringing."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from flashsale.settings import Settings
from streams.metrics import WorkerMetrics
from streams.processor import OrderProcessor
from streams.state import PartitionState

#: High-water mark of each partition: every one has 50 messages its state has not applied.
HIGH = {0: 150, 1: 150, 2: 150}


def processor(
    monkeypatch: pytest.MonkeyPatch, quiet_s: dict[int, float], delivery_s: float
) -> tuple[OrderProcessor, list[dict[int, int]]]:
    """Partitions applied up to offset 99, each last batch `quiet_s[p]` seconds ago and the
    last batch of any `delivery_s` ago; returns it and the reads `catch_up` asks for."""
    consumer = SimpleNamespace(highwater=lambda tp: HIGH[tp.partition])
    app = SimpleNamespace(consumer=consumer)
    proc = OrderProcessor(app, Settings(), None, WorkerMetrics(CollectorRegistry()))  # type: ignore[arg-type]
    reads: list[dict[int, int]] = []

    async def apply(by_partition: Any, upto: dict[int, int]) -> None:
        reads.append(dict(upto))

    monkeypatch.setattr(proc, "_apply", apply)
    now = time.monotonic()
    for partition, quiet in quiet_s.items():
        proc.states[partition] = PartitionState(partition=partition, window=10, last_offset=99)
        proc.last_batch[partition] = now - quiet
    proc.last_delivery = now - delivery_s
    return proc, reads


def test_a_partition_left_behind_is_read_once_the_stream_is_quiet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc, reads = processor(monkeypatch, {0: 5.0, 1: 0.5, 2: 3.0}, delivery_s=3.0)
    asyncio.run(proc.catch_up(idle_s=2.0))
    assert reads == [{0: 150, 2: 150}]  # 1 had a batch half a second ago


def test_while_the_stream_delivers_a_quiet_partition_waits_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fetch of other partitions was just applied: the next fetches bring 0 and 2.
    proc, reads = processor(monkeypatch, {0: 5.0, 1: 0.5, 2: 3.0}, delivery_s=0.5)
    asyncio.run(proc.catch_up(idle_s=2.0, busy_s=30.0))
    assert reads == []
    # ...unless one has had no batch for `busy_s`: the stream skipped its end.
    proc, reads = processor(monkeypatch, {0: 31.0, 1: 0.5, 2: 3.0}, delivery_s=0.5)
    asyncio.run(proc.catch_up(idle_s=2.0, busy_s=30.0))
    assert reads == [{0: 150}]


def test_a_batch_counts_from_when_it_was_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    proc, _ = processor(monkeypatch, {0: 5.0}, delivery_s=5.0)

    async def slow_apply(by_partition: Any, upto: dict[int, int]) -> None:
        await asyncio.sleep(0.05)

    monkeypatch.setattr(proc, "_apply", slow_apply)
    started = time.monotonic()
    asyncio.run(proc.process_partitions({0: []}))
    assert proc.last_batch[0] >= started + 0.05
    assert proc.last_delivery == proc.last_batch[0]
