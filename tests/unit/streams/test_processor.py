"""A batch whose outputs Kafka refuses does not end the worker: its partitions are dropped
from memory (re-derived later from their last written state) and the worker goes on; any
other error still surfaces."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaError, UnknownError
from prometheus_client import CollectorRegistry

import streams.processor
import streams.recovery
from flashsale.settings import Settings
from streams.metrics import WorkerMetrics
from streams.processor import OrderProcessor
from streams.state import PartitionState


def processor(monkeypatch: pytest.MonkeyPatch, error: Exception) -> OrderProcessor:
    monkeypatch.setattr(streams.processor, "OUTPUT_RETRY_PAUSE_S", 0.0)
    proc = OrderProcessor(None, Settings(), None, WorkerMetrics(CollectorRegistry()))  # type: ignore[arg-type]

    async def refused(by_partition: Any, upto: Any) -> None:
        # As a real batch would before its outputs fail: states advanced in memory.
        for partition in (*by_partition, *upto):
            proc.states[partition].last_offset += 10
            proc.unsaved.add(partition)
        raise error

    monkeypatch.setattr(proc, "_apply_batch", refused)
    for partition in range(3):
        proc.states[partition] = PartitionState(partition=partition, window=10)
    return proc


def test_refused_outputs_drop_the_batchs_partitions_and_the_worker_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc = processor(monkeypatch, UnknownError("topic gone"))
    asyncio.run(proc._apply({0: [], 2: []}, {}))
    assert sorted(proc.states) == [1]  # 0 and 2 are confirmed again from their changelog
    assert proc.unsaved == set()
    assert proc.metrics.output_failures._value.get() == 1


def test_any_kafka_error_is_survived_but_other_errors_surface(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asyncio.run(processor(monkeypatch, KafkaError("x"))._apply({1: []}, {}))
    with pytest.raises(ZeroDivisionError):
        asyncio.run(processor(monkeypatch, ZeroDivisionError())._apply({1: []}, {}))


def test_a_state_an_older_version_wrote_is_rebuilt_instead_of_ending_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = PartitionState(partition=2, window=10, last_offset=41)
    assert streams.recovery.readable_state(state.to_bytes()) == state
    older = {"partition": 2, "window": 10, "last_offset": 41, "sold_out": ["x"]}
    assert streams.recovery.readable_state(orjson.dumps(older)) is None
    assert "partition 2 has another layout" in caplog.text
    assert "rebuilding it from the orders topic" in caplog.text


def test_a_batch_cut_short_by_the_stop_drops_its_partitions_and_stays_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc = processor(monkeypatch, KafkaError("never raised"))

    async def in_flight(by_partition: Any, upto: Any) -> None:
        # States advanced in memory, outputs not yet delivered: where Faust's stop cancels.
        for partition in by_partition:
            proc.states[partition].last_offset += 10
            proc.unsaved.add(partition)
        await asyncio.Event().wait()

    monkeypatch.setattr(proc, "_apply_batch", in_flight)

    async def stop_mid_batch() -> None:
        batch = asyncio.ensure_future(proc._apply({0: [], 2: []}, {}))
        await asyncio.sleep(0.01)
        batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await batch

    asyncio.run(stop_mid_batch())
    # Nothing of the batch is left to write: 0 and 2 are confirmed again from their changelog.
    assert sorted(proc.states) == [1]
    assert proc.unsaved == set()
    assert proc.metrics.output_failures._value.get() == 0
