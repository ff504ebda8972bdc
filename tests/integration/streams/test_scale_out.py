"""Several Faust workers share the partitions: from the start, joining, leaving, crashing."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from flashsale.settings import Settings
from producers.generator import Generator
from streams.process import WorkerProcess, group_totals, wait_drained
from tests.integration.conftest import StartWorker
from tests.integration.helpers import FAST_CLOCK, SMALL, produce
from verify.live import verify_live

pytestmark = pytest.mark.integration


def held(worker: WorkerProcess) -> set[int]:
    return {p["partition"] for p in worker.totals().get("partitions", [])}


def wait_split(workers: list[WorkerProcess], partitions: int, timeout_s: float = 60) -> None:
    """Until the workers hold every partition between them, each at least one."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        mine = [held(w) for w in workers]
        totals = group_totals(workers)
        if all(mine) and totals["ready"] and len(totals["partitions"]) == partitions:
            return
        time.sleep(0.2)
    raise TimeoutError(f"partitions not split: {[held(w) for w in workers]}")


def reconciles(settings: Settings, produced: int) -> None:
    result = asyncio.run(verify_live(settings, settings.bootstrap_servers or ""))
    assert result.differences == [], "\n".join(result.differences)
    assert result.summary["reconciled"] is True
    assert result.summary["events_produced"] == produced
    assert result.summary["events_processed"] == produced
    assert result.summary["orders_cancelled"] > 0
    # Event-time windows closed and were published, and late events went to orders-late,
    # exactly as recomputed: windows survive the rebalance or the crash of each test.
    assert result.summary["windows_closed"] > 0
    assert result.summary["late_events"] > 0


def test_two_workers_from_the_start_share_the_partitions_and_reconcile(
    run_settings: Settings, start_worker: StartWorker
) -> None:
    workers = [start_worker(wait=False), start_worker(wait=False)]
    wait_split(workers, run_settings.partitions)
    assert held(workers[0]).isdisjoint(held(workers[1]))
    produced = asyncio.run(produce(run_settings, SMALL, 25_000))
    wait_drained(workers, run_settings)
    reconciles(run_settings, produced)
    # Both did real work.
    assert all(w.totals()["accepted"] > 0 for w in workers)


def test_a_worker_joining_and_one_leaving_mid_run_still_reconcile(
    run_settings: Settings, start_worker: StartWorker
) -> None:
    first = start_worker()

    async def run() -> int:
        task = asyncio.create_task(produce(run_settings, SMALL, 30_000))
        await asyncio.sleep(2)
        # A second worker joins while orders flow: a rebalance mid-run.
        second = await asyncio.to_thread(start_worker, False)
        await asyncio.to_thread(wait_split, [first, second], run_settings.partitions)
        await asyncio.sleep(1)
        # The first leaves (SIGTERM, a clean LeaveGroup): the second takes everything.
        await asyncio.to_thread(first.stop)
        produced = await task
        await asyncio.to_thread(wait_drained, [second], run_settings, 180)
        assert held(second) == set(range(run_settings.partitions))
        return produced

    reconciles(run_settings, asyncio.run(run()))


def test_a_worker_sigkilled_and_restarted_while_the_other_goes_on_reconciles(
    run_settings: Settings, start_worker: StartWorker
) -> None:
    workers = [start_worker(wait=False), start_worker(wait=False)]
    wait_split(workers, run_settings.partitions)
    victim, survivor = workers

    async def run() -> int:
        task = asyncio.create_task(produce(run_settings, SMALL, 30_000))
        await asyncio.sleep(3)
        victim.kill()
        await asyncio.sleep(2)
        restarted = await asyncio.to_thread(start_worker, False)
        produced = await task
        await asyncio.to_thread(wait_drained, [survivor, restarted], run_settings, 180)
        return produced

    reconciles(run_settings, asyncio.run(run()))


def view(worker: WorkerProcess, path: str) -> Any:
    with urllib.request.urlopen(f"{worker.url}{path}", timeout=10) as resp:
        return orjson.loads(resp.read())


def test_each_workers_views_answer_for_the_whole_run(
    run_settings: Settings, start_worker: StartWorker
) -> None:
    workers = [start_worker(wait=False), start_worker(wait=False)]
    wait_split(workers, run_settings.partitions)
    asyncio.run(produce(run_settings, FAST_CLOCK, 20_000))
    wait_drained(workers, run_settings)
    time.sleep(1.1)  # past the views' one-second cache
    result = asyncio.run(verify_live(run_settings, run_settings.bootstrap_servers or ""))
    assert result.reconciled, result.differences
    # Minutes of event time closed: hot products were published, exactly as recomputed.
    assert any(key[1] == 60 for key in _closed_windows(run_settings))
    expected = result.summary["gmv_cents_expected"]
    for worker in workers:
        gmv = view(worker, "/views/gmv")
        # Not only this worker's partitions: the whole run.
        assert gmv["gmv_cents"] == expected > 0
        assert len(gmv["partitions"]) == run_settings.partitions
        assert sum(gmv["by_merchant"].values()) == expected
        assert sum(gmv["by_province"].values()) == expected
        assert 0 < gmv["paid_to_created"] <= 1
    # A SKU held by the other worker: its stock from either worker.
    other = held(workers[1])
    sku = next(
        s.sku
        for s in Generator(FAST_CLOCK).catalog.skus
        if DefaultPartitioner()(s.sku.encode(), list(range(run_settings.partitions)), []) in other
    )
    assert view(workers[0], f"/views/stock/{sku}") == view(workers[1], f"/views/stock/{sku}")
    assert view(workers[0], f"/views/stock/{sku}")["stock"] >= 0
    sold = view(workers[0], "/views/sold-out?limit=5")
    assert sold == view(workers[1], "/views/sold-out?limit=5")
    assert sold and all(row["time_to_sell_out_s"] >= 0 for row in sold)
    assert len(sold) <= 5
    top = view(workers[0], "/views/top-skus")
    assert top == view(workers[1], "/views/top-skus")
    units = [row["units"] for row in top["top"]]
    assert units and units == sorted(units, reverse=True) and len(units) <= 10
    with pytest.raises(urllib.error.HTTPError) as missing:
        view(workers[0], "/views/stock/NO-SUCH-SKU")
    assert missing.value.code == 404


def _closed_windows(settings: Settings) -> set[tuple[int, int, int]]:
    from flashsale.kafka.reading import read_topic

    out = set()
    for topic in (settings.topic_revenue_second, settings.topic_revenue_minute):
        for records in asyncio.run(read_topic(settings.bootstrap_servers or "", topic)).values():
            for rec in records:
                doc = orjson.loads(rec.value)
                out.add((doc["partition"], doc["size_s"], doc["window_start_ms"]))
    hot = asyncio.run(read_topic(settings.bootstrap_servers or "", settings.topic_hot))
    assert sum(len(r) for r in hot.values()) > 0
    return out
