"""A real Faust worker on the embedded broker: dead letters, and a SIGKILL mid-run."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from flashsale import __version__
from flashsale.counters import OUTCOMES
from flashsale.events import PACKED_COLUMNS, PACKED_HEADER, encode_event, encode_packed
from flashsale.kafka.reading import read_newest, read_topic
from flashsale.settings import Settings
from producers.metrics import ProducerMetrics
from streams.process import WorkerProcess
from streams.worker import STOP_DEADLINE_S
from tests.factories import make_order, make_restock
from tests.integration.conftest import StartWorker
from tests.integration.helpers import FAST_CLOCK, SMALL, produce
from verify.live import verify_live

pytestmark = pytest.mark.integration

T0 = 1_605_024_000_000

MALFORMED = [
    (b"FR-WIN-0001", b"{definitely not json", "not_json"),
    (b"FR-WIN-0001", orjson.dumps({"v": 99, "order_id": "x"}), "unknown_version"),
    (b"IT-FAS-0002", b"[1,2,3]", "not_object"),
]


async def _send_raw(
    settings: Settings,
    messages: list[tuple[bytes | None, bytes, Any]],
    partition: int | None = None,
) -> None:
    """Send (key, value, headers or None) messages to `orders` as they are (all to
    `partition` when given, whatever their keys)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        for key, value, headers in messages:
            await producer.send(
                settings.topic_orders, value, key=key, headers=headers, partition=partition
            )
        await producer.flush()
    finally:
        await producer.stop()


def test_malformed_messages_land_in_the_dlq_and_processing_goes_on(
    run_settings: Settings, start_worker: StartWorker
) -> None:
    worker = start_worker()
    asyncio.run(_send_raw(run_settings, [(k, v, None) for k, v, _ in MALFORMED]))
    # A wrong type and a negative quantity in an otherwise valid order.
    good = orjson.loads(
        b'{"v":1,"order_id":"bad-1","line":0,"type":"created","event_ts_ms":1,"emit_ns":1,'
        b'"sku":"FR-WIN-0001","merchant":"m","country":"FR","category":"wine","quantity":1,'
        b'"unit_price_cents":100,"province":"Beijing","channel":"app","payment":"alipay"}'
    )
    wrong_type = orjson.dumps(dict(good, quantity="one"))
    negative = orjson.dumps(dict(good, order_id="bad-2", quantity=-3))
    asyncio.run(
        _send_raw(
            run_settings, [(b"FR-WIN-0001", wrong_type, None), (b"FR-WIN-0001", negative, None)]
        )
    )
    produced = asyncio.run(produce(run_settings, SMALL, 3_000))
    worker.wait_drained()
    assert worker.alive()

    dlq = asyncio.run(read_topic(run_settings.bootstrap_servers or "", run_settings.topic_dlq))
    records = [r for recs in dlq.values() for r in recs]
    reasons = sorted(dict(r.headers)["flashsale.reason"].decode() for r in records)
    assert reasons == sorted(
        ["not_json", "unknown_version", "not_object", "wrong_type", "out_of_range"]
    )
    # Nothing is lost: the original bytes travel to the dead-letter topic unchanged.
    assert {r.value for r in records} >= {v for _, v, _ in MALFORMED} | {wrong_type, negative}

    result = asyncio.run(verify_live(run_settings, run_settings.bootstrap_servers or ""))
    assert result.differences == []
    assert result.summary["dlq_messages"] == 5
    # The producer counts every non-restock event it sends, lifecycle steps included.
    assert result.summary["events_produced"] == produced + 5
    assert result.summary["orders_accepted"] > 0
    metrics = worker_metrics(worker)
    assert 'flashsale_dlq_messages_total{reason="not_json"} 1.0' in metrics
    assert 'flashsale_dlq_messages_total{reason="out_of_range"} 1.0' in metrics
    # Dead letters are events processed too, as the run summary counts them.
    samples = metric_samples(metrics)
    assert samples['flashsale_events_processed_total{outcome="dead_letter"}'] == 5
    assert summed(samples, "flashsale_events_processed_total") == result.summary["events_processed"]


def worker_metrics(worker: WorkerProcess) -> str:
    """A real Prometheus scrape of the worker's /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        return resp.read().decode()


def metric_samples(text: str) -> dict[str, float]:
    """Each sample of a Prometheus text page, by its name and labels as written."""
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def summed(samples: dict[str, float], name: str) -> float:
    """The sum of every series of metric `name`, whatever its labels."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def test_worker_sigkilled_mid_run_and_restarted_reconciles_exactly(
    run_settings: Settings, start_worker: StartWorker
) -> None:
    worker = start_worker()

    async def produce_while_killing() -> int:
        task = asyncio.create_task(produce(run_settings, SMALL, 25_000))
        # Kill once the worker is well into the stream, with changelog writes in flight.
        while worker.totals().get("accepted", 0) < 5_000:
            await asyncio.sleep(0.1)
        worker.kill()
        return await task

    produced = asyncio.run(produce_while_killing())
    assert not worker.alive()
    restarted = start_worker()
    restarted.wait_drained(timeout_s=180)

    result = asyncio.run(verify_live(run_settings, run_settings.bootstrap_servers or ""))
    assert result.differences == [], "\n".join(result.differences)
    assert result.summary["reconciled"] is True
    assert result.summary["events_produced"] == produced
    assert result.summary["events_processed"] == produced
    assert result.summary["oversold_skus"] == 0
    assert result.summary["windows_closed"] > 0  # windows survived the SIGKILL, exactly


def test_the_worker_faust_runs_with_dash_a_counts_what_it_processed(
    run_settings: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    """`faust -A streams.faust_app worker` runs the worker `flashsale worker` runs: its
    /metrics count what it processed, verify agrees, and a SIGTERM ends it in time, its data
    directory removed."""
    worker = start_worker(faust_cli=True)
    registry = CollectorRegistry()
    produced = asyncio.run(produce(run_settings, SMALL, 2_000, metrics=ProducerMetrics(registry)))
    worker.wait_drained()
    samples = metric_samples(worker_metrics(worker))
    outcomes = sum(samples[f'flashsale_events_processed_total{{outcome="{o}"}}'] for o in OUTCOMES)
    assert outcomes == produced
    # Every event, duplicates included, has its end-to-end latency observed; restocks do not.
    assert samples["flashsale_e2e_latency_seconds_count"] == produced
    assert samples["flashsale_oversold_skus"] == 0
    assert samples[f'flashsale_run_info{{version="{__version__}"}}'] == 1
    # Drained: the lag gauge (updated every second) comes down to 0.
    deadline = time.monotonic() + 10
    while "flashsale_consumer_lag_messages 0.0" not in worker_metrics(worker):
        assert time.monotonic() < deadline, "lag gauge never reached 0"
        time.sleep(0.5)
    result = asyncio.run(verify_live(run_settings, run_settings.bootstrap_servers or ""))
    assert result.differences == [], "\n".join(result.differences)
    summary = result.summary
    # The metrics' words are the run summary's, and so are their numbers.
    assert summed(samples, "flashsale_events_processed_total") == summary["events_processed"]
    assert samples["flashsale_gmv_cents_total"] == summary["gmv_cents_expected"]
    assert samples["flashsale_refunded_cents_total"] == summary["refunded_cents"]
    # The GMV gauges, read from the states every second, come to the run's GMV: summed by
    # country and by category alike.
    gmv = summary["gmv_cents_expected"]
    deadline = time.monotonic() + 10
    gauges = metric_samples(worker_metrics(worker))
    while summed(gauges, "flashsale_country_gmv_cents") != gmv:
        assert time.monotonic() < deadline, "the GMV by country never reached the run's GMV"
        time.sleep(0.5)
        gauges = metric_samples(worker_metrics(worker))
    assert summed(gauges, "flashsale_category_gmv_cents") == gmv
    sent = registry.get_sample_value("flashsale_events_sent_total")
    assert sent == registry.get_sample_value("flashsale_events_acked_total") == produced
    assert sent == summary["events_produced"]
    run = {"scenario": summary["scenario"], "seed": str(summary["seed"]), "version": __version__}
    assert registry.get_sample_value("flashsale_run_info", run) == 1
    # Faust's banner names the data directory the module made; a stop removes it.
    (datadir,) = re.findall(r"datadir\s+\|\s+(\S+)", (tmp_path / "worker-0.log").read_text())
    assert Path(datadir).is_dir()
    started = time.monotonic()
    worker.stop()
    assert time.monotonic() - started < STOP_DEADLINE_S + 2
    assert not Path(datadir).exists()


async def _committed(settings: Settings) -> dict[int, int | None]:
    """The worker group's committed offsets on `orders`, read as Kafka holds them."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, group_id=settings.app_id
    )
    await consumer.start()
    try:
        return {
            p: await consumer.committed(TopicPartition(settings.topic_orders, p))
            for p in range(settings.partitions)
        }
    finally:
        await consumer.stop()


@pytest.mark.parametrize("mode", ["bulk", "stream"])
def test_each_consume_mode_reconciles_and_commits_what_it_applied(
    run_settings: Settings, start_worker: StartWorker, mode: str
) -> None:
    # `bulk` acknowledges a fetch at a time on Faust's behalf; Faust must still commit it.
    worker = start_worker(consume_mode=mode)
    produced = asyncio.run(produce(run_settings, SMALL, 3_000))
    worker.wait_drained()
    result = asyncio.run(verify_live(run_settings, run_settings.bootstrap_servers or ""))
    assert result.differences == [], "\n".join(result.differences)
    assert result.summary["events_processed"] == produced
    applied = {p["partition"]: p["last_offset"] for p in worker.totals()["partitions"]}
    deadline = time.monotonic() + 20
    committed = asyncio.run(_committed(run_settings))
    while time.monotonic() < deadline and any(
        committed[p] != applied[p] + 1 for p in applied if applied[p] >= 0
    ):
        time.sleep(0.5)
        committed = asyncio.run(_committed(run_settings))
    assert all(committed[p] == applied[p] + 1 for p in applied if applied[p] >= 0), (
        committed,
        applied,
    )


def test_packed_messages_reconcile_and_their_bad_rows_are_dead_letters_one_by_one(
    run_settings: Settings, start_worker: StartWorker
) -> None:
    worker = start_worker()
    produced = asyncio.run(produce(run_settings, FAST_CLOCK, 4_000, pack=300))
    good = orjson.loads(encode_event(make_order(order_id="packed-extra", event_ts_ms=T0)))
    rows = [dict(good, line=i) for i in range(3)]
    rows[0]["quantity"] = 0
    rows[2]["sku"] = 42
    columns = {name: [row[name] for row in rows] for name in PACKED_COLUMNS}
    header = [(PACKED_HEADER, b"3")]
    broken = (b"FR-WIN-0001", b"{broken", header)
    asyncio.run(_send_raw(run_settings, [broken, (b"FR-WIN-0001", encode_packed(columns), header)]))
    worker.wait_drained()
    assert worker.alive()

    result = asyncio.run(verify_live(run_settings, run_settings.bootstrap_servers or ""))
    assert result.differences == [], "\n".join(result.differences)
    # The broken message is one dead letter; the bad rows one each; the good row is decided.
    assert result.summary["dlq_messages"] == 3
    assert result.summary["events_processed"] == produced + 4
    assert result.summary["windows_closed"] > 0
    dlq = asyncio.run(read_topic(run_settings.bootstrap_servers or "", run_settings.topic_dlq))
    letters = sorted(
        (dict(r.headers).get("flashsale.index", b"-").decode(), dict(r.headers)["flashsale.reason"])
        for recs in dlq.values()
        for r in recs
    )
    assert letters == [("-", b"not_json"), ("0", b"out_of_range"), ("2", b"wrong_type")]
    metrics = worker_metrics(worker)
    assert 'flashsale_dlq_messages_total{reason="wrong_type"} 1.0' in metrics


# A hostile client on one partition: restock F with 1 unit and G with 5; a `created` of 5 of
# G; a `cancelled` of that line naming F; a `created` of 6 of F; its `paid`.
SKU_F, SKU_G = "FR-WIN-0101", "DE-TOY-0102"
HOSTILE = [
    make_restock(make_order(sku=SKU_F, event_ts_ms=T0), 1),
    make_restock(make_order(sku=SKU_G, event_ts_ms=T0), 5),
    make_order(order_id="h1", sku=SKU_G, quantity=5, event_ts_ms=T0 + 1),
    make_order(order_id="h1", sku=SKU_F, quantity=5, event_ts_ms=T0 + 2, type="cancelled"),
    make_order(order_id="h1", line=1, sku=SKU_F, quantity=6, event_ts_ms=T0 + 3),
    make_order(order_id="h1", line=1, sku=SKU_F, quantity=6, event_ts_ms=T0 + 4, type="paid"),
]


@pytest.mark.parametrize("form", ["single", "packed"])
def test_a_cancel_naming_another_sku_moves_no_stock_and_verify_reconciles(
    run_settings: Settings, start_worker: StartWorker, form: str
) -> None:
    worker = start_worker()
    if form == "single":
        messages = [(e.sku.encode(), encode_event(e), None) for e in HOSTILE]
    else:
        # Restocks travel alone, as the producer sends them; the line's steps in one message.
        steps = [orjson.loads(encode_event(e)) for e in HOSTILE[2:]]
        columns = {name: [row[name] for row in steps] for name in PACKED_COLUMNS}
        messages = [(e.sku.encode(), encode_event(e), None) for e in HOSTILE[:2]]
        messages.append((None, encode_packed(columns), [(PACKED_HEADER, b"4")]))
    asyncio.run(_send_raw(run_settings, messages, partition=0))
    worker.wait_drained()

    bootstrap = run_settings.bootstrap_servers or ""
    result = asyncio.run(verify_live(run_settings, bootstrap))
    assert result.differences == [], "\n".join(result.differences)
    assert result.summary["mismatched_events"] == 1
    assert result.summary["orders_accepted"] == 1
    assert result.summary["oversold_skus"] == 0
    newest = asyncio.run(read_newest(bootstrap, run_settings.state_changelog_topic()))
    state = orjson.loads(newest[0][0].value)
    assert (state["stock"][SKU_F], state["stock"][SKU_G]) == (1, 0)
    assert state["mismatches"] == 1
    # G's five units stay reserved by the line they were reserved for.
    assert state["open"]["h1/0"][0] == 5 and state["open"]["h1/0"][6] == SKU_G
