"""Every direct reader on a transactional topic (Apache Kafka): commit and abort markers take
offsets, aborted records stay in the log, an open transaction holds the last stable offset
back. Readers return the committed records only and never wait for a marker's offset."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from flashsale.kafka.admin import ensure_topics
from flashsale.kafka.reading import end_offsets, read_newest, read_topic
from recordings.record import capture
from tests.conftest import TestBroker

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize(
        "broker", [pytest.param("kafka", marks=pytest.mark.kafka)], indirect=True
    ),
]


async def _transaction(producer: AIOKafkaProducer, topic: str, values: list[bytes]) -> None:
    """Begin, send `values` to partition 0, flush: the caller commits or aborts."""
    await producer.begin_transaction()
    for value in values:
        await producer.send(topic, value, partition=0)
    await producer.flush()


def test_readers_skip_markers_and_aborted_records_and_stop_at_an_open_transaction(
    broker: TestBroker, tmp_path: Path
) -> None:
    topic = f"txn-{uuid.uuid4().hex[:8]}"
    bootstrap = broker.bootstrap
    settings = broker.fresh_settings()

    async def scenario() -> None:
        await ensure_topics(bootstrap, [topic], 1, settings)
        one = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-one")
        other = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-two")
        await one.start()
        await other.start()
        try:
            await _transaction(one, topic, [b"a0", b"a1", b"a2"])  # offsets 0-2, marker 3
            await one.commit_transaction()
            await _transaction(one, topic, [b"x0", b"x1"])  # 4-5 aborted, marker 6
            await one.abort_transaction()
            await _transaction(one, topic, [b"b0"])  # 7, marker 8
            await one.commit_transaction()
            await _transaction(one, topic, [b"y0"])  # 9 aborted, marker 10
            await one.abort_transaction()
            await _transaction(other, topic, [b"z0"])  # 11, still open
            # The end is the last stable offset: the open transaction's first offset.
            assert await end_offsets(bootstrap, topic) == {0: 11}
            got = await read_topic(bootstrap, topic)
            assert [r.value for r in got[0]] == [b"a0", b"a1", b"a2", b"b0"]
            # The newest committed record lies behind an abort marker and aborted records.
            newest = await read_newest(bootstrap, topic)
            assert [(r.offset, r.value) for r in newest[0]] == [(7, b"b0")]
            report = await capture(bootstrap, tmp_path / "run", settings, topics=[topic])
            assert report.read == 4
            assert report.manifest.get("complete")

            await other.commit_transaction()  # 11, marker 12
            assert await end_offsets(bootstrap, topic) == {0: 13}
            newest = await read_newest(bootstrap, topic)
            assert [(r.offset, r.value) for r in newest[0]] == [(11, b"z0")]
        finally:
            await one.stop()
            await other.stop()

    asyncio.run(scenario())
