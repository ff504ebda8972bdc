"""Exactly-once processing (`processing_guarantee` exactly_once) on Apache Kafka: a worker
SIGKILLed mid-transaction, its replacement fencing it; the refusal on the embedded broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from flashsale.kafka.reading import read_topic
from flashsale.settings import Settings
from tests.conftest import TestBroker
from tests.integration.conftest import StartWorker
from tests.integration.helpers import SMALL, produce
from verify.live import verify_live

pytestmark = pytest.mark.integration

ON_KAFKA = pytest.mark.parametrize(
    "broker", [pytest.param("kafka", marks=pytest.mark.kafka)], indirect=True
)
ON_EMBEDDED = pytest.mark.parametrize(
    "broker", [pytest.param("embedded", marks=pytest.mark.embedded)], indirect=True
)


@pytest.fixture
def run_settings(broker: TestBroker) -> Settings:
    """This test's topics, workers in exactly-once mode with no dedupe window: no client
    retry is recognised as one, so nothing but the transactions keeps a re-read from
    counting twice."""
    return broker.fresh_settings(processing_guarantee="exactly_once", dedupe_window=0)


async def _committed(settings: Settings) -> dict[int, int | None]:
    """The group's committed offset of each partition of `orders`."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.app_id,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        return {
            p: await consumer.committed(TopicPartition(settings.topic_orders, p))
            for p in range(settings.partitions)
        }
    finally:
        await consumer.stop()


async def _all_decisions(settings: Settings) -> int:
    """Decision records on the decisions topic, aborted ones included (read_uncommitted)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic_decisions, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        seen = 0
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            got = await consumer.getmany(*remaining, timeout_ms=1000)
            seen += sum(len(records) for records in got.values())
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        return seen
    finally:
        await consumer.stop()


@ON_KAFKA
def test_worker_sigkilled_mid_transaction_is_fenced_and_nothing_counts_twice(
    run_settings: Settings, start_worker: StartWorker
) -> None:
    # A backlog first, drained in small batches: the worker runs transactions back to back,
    # so the SIGKILL lands in one (the first committed batch shows on /totals).
    produced = asyncio.run(produce(run_settings, SMALL, 12_000))
    worker = start_worker(batch_max=50)
    while (accepted := worker.totals().get("accepted", 0)) == 0:
        time.sleep(0.02)
    worker.kill()
    print(f"killed with {accepted} lines accepted")
    restarted = start_worker()
    restarted.wait_drained(timeout_s=120)

    result = asyncio.run(verify_live(run_settings, run_settings.bootstrap_servers or ""))
    assert result.differences == [], "\n".join(result.differences)
    assert result.summary["reconciled"] is True
    assert result.summary["events_processed"] == produced
    assert result.summary["oversold_skus"] == 0

    # Exactly once: every source offset has one committed decision, never two (at least
    # once, the decisions since the last written state come again after a SIGKILL).
    bootstrap = run_settings.bootstrap_servers or ""
    decisions = asyncio.run(read_topic(bootstrap, run_settings.topic_decisions))
    per_offset = Counter(
        (doc["partition"], doc["offset"])
        for records in decisions.values()
        for doc in (orjson.loads(r.value) for r in records if r.value is not None)
    )
    assert per_offset and max(per_offset.values()) == 1
    sold_out = asyncio.run(read_topic(bootstrap, run_settings.topic_inventory))
    sell_outs = Counter(
        r.value and orjson.loads(r.value)["sku"] for rs in sold_out.values() for r in rs
    )
    assert not sell_outs or max(sell_outs.values()) == 1
    # What the killed worker's open transaction wrote is still in the log, aborted: a
    # read_uncommitted reader sees it (the count is printed for the record; a kill between
    # two transactions would leave none).
    everything = asyncio.run(_all_decisions(run_settings))
    print(f"decisions: {sum(per_offset.values())} committed, {everything} in the log")
    assert everything >= sum(per_offset.values())

    # The consumed offsets committed with the states: each is the state's next offset.
    applied = {p["partition"]: p["last_offset"] for p in restarted.totals()["partitions"]}
    committed = asyncio.run(_committed(run_settings))
    assert {p: committed[p] for p in applied} == {p: last + 1 for p, last in applied.items()}


@ON_EMBEDDED
def test_worker_refuses_exactly_once_on_a_broker_without_transactions(
    broker: TestBroker, run_settings: Settings
) -> None:
    # Given the embedded broker's address, the command cannot tell it from a Kafka: the
    # worker itself finds that the broker runs no transaction.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestration",
            "worker",
            "--bootstrap-servers",
            broker.bootstrap,
            "--processing-guarantee",
            "exactly_once",
            "--web-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **broker.env(), **_topics_env(run_settings)},
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("flashsale: error: processing guarantee exactly_once needs")
    assert "embedded broker" in lines[0]


def _topics_env(settings: Settings) -> dict[str, str]:
    """This test's topic names and app id as `FLASHSALE_*` variables."""
    env = settings.to_env()
    return {k: v for k, v in env.items() if k.startswith(("FLASHSALE_TOPIC_", "FLASHSALE_APP_"))}
