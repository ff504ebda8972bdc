"""`flashsale bench`: each stage of our path beside a bare-client ceiling, in one run.

Figures are rates on this machine and broker; the ratio is what to compare across machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.table import Table

from benchmarks.bytewax_flow import paid_cents
from flashsale.brokers.apache import KafkaToolMissing
from flashsale.brokers.local import broker_for, describe_broker, settings_on
from flashsale.kafka.admin import ensure_run_topics, ensure_topics
from flashsale.kafka.clients import aiokafka_producer, aiokafka_security, librdkafka_security
from flashsale.kafka.reading import end_offsets, last_records, start_reader
from flashsale.processes import free_port
from flashsale.scenario import Scenario
from flashsale.scenario.catalog import Catalog
from flashsale.settings import Settings
from producers.generator import Generator
from producers.pacing import produce_scenario
from producers.sinks import open_sink
from producers.sinks.kafka import OrderEmitter
from recordings.format import RecordedMessage, load_run
from recordings.record import capture
from recordings.replay import ReplayStats, replay_orders
from streams.packed import COMPILED as PACKED_RULES_COMPILED
from streams.process import WorkerProcess

__all__ = ["run_bench"]

console = Console(highlight=False)

# A constant, fast curve with the whole lifecycle on short delays, so that within the first
# second the stream is in its steady state (created, paid, cancelled, refunded, retries and
# late deliveries all flowing) rather than in the start-up transient of created lines only.
BENCH_SCENARIO = Scenario.model_validate(
    {
        "name": "bench",
        "seed": 7,
        "curve": {"shape": "constant", "horizon_s": 3600.0},
        "scale": {"peak_per_s": 200_000.0, "sample_ratio": 1.0, "compression": 1.0},
        "mix": {
            "pay_delay_mean_s": 0.2,
            "unpaid_timeout_s": 1.0,
            "refund_delay_mean_s": 0.5,
            "out_of_order_delay": {"distribution": "exponential", "mean_s": 0.1, "max_s": 1.0},
            "duplicate_max_delay_s": 0.5,
            "bot_share": 0.01,
        },
    }
)


PRODUCE_ROUNDS = 3

#: Rounds of each worker mode in the process stages (best kept).
PROCESS_ROUNDS = 2

#: Events per packed message in the `process_packed` stage.
PACK = 1000


def _stage(ours: float, ceiling: float, what: str) -> dict[str, Any]:
    return {
        "ours_per_s": round(ours, 1),
        "ceiling_per_s": round(ceiling, 1),
        "ratio": round(ours / ceiling, 3) if ceiling else None,
        "ceiling": what,
    }


def _drain_stage(drain: Drain, ceiling: float, what: str) -> dict[str, Any]:
    """A worker stage: the wall rate against the ceiling, its CPU, and the steady rate."""
    return {
        **_stage(drain.wall_per_s, ceiling, what),
        "cpu_us_per_event": None if drain.cpu_us is None else round(drain.cpu_us, 2),
        "steady_per_s": round(drain.steady_per_s, 1),
        "steady_ratio": round(drain.steady_per_s / ceiling, 3) if ceiling else None,
    }


def _payloads(n: int) -> list[tuple[bytes, bytes]]:
    """The first n events of the bench scenario, encoded: what the bare loops send."""
    out: list[tuple[bytes, bytes]] = []
    for block in Generator(BENCH_SCENARIO).blocks(max_events=n, block_s=0.1):
        out.extend(zip(block.keys, block.values(1), strict=True))
    return out


def _generate(n: int) -> float:
    """Our generator to keys and JSON values ready to send, events per second."""
    started = time.perf_counter()
    count = 0
    for block in Generator(BENCH_SCENARIO).blocks(max_events=n, block_s=0.1):
        keys, values = block.keys, block.values(time.time_ns())
        count += min(len(keys), len(values))
    return count / (time.perf_counter() - started)


def _bare_confluent(
    settings: Settings, bootstrap: str, topic: str, payloads: list[tuple[bytes, bytes]]
) -> float:
    """A bare librdkafka produce loop on prebuilt payloads (same linger, acks=all,
    idempotence and compression as ours)."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "enable.idempotence": settings.enable_idempotence,
            "compression.type": settings.compression,
            "queue.buffering.max.messages": 1_000_000,
            **librdkafka_security(settings),
        }
    )
    produce = producer.produce
    poll = producer.poll
    started = time.perf_counter()
    for i, (key, value) in enumerate(payloads):
        while True:
            try:
                produce(topic, value, key)
                break
            except BufferError:
                poll(0.001)
        if i % 10_000 == 0:
            poll(0)
    producer.flush()
    return len(payloads) / (time.perf_counter() - started)


def bench_generate(bootstrap: str, settings: Settings, n: int) -> dict[str, Any]:
    """Generation to JSON bytes beside the bare librdkafka produce ceiling, in one run."""
    topic = f"bench-ceiling-{uuid.uuid4().hex[:6]}"
    asyncio.run(ensure_topics(bootstrap, [topic], settings.partitions, settings))
    payloads = _payloads(n)
    _bare_confluent(settings, bootstrap, topic, payloads[:10_000])  # warm-up
    ours = ceiling = 0.0
    for _ in range(PRODUCE_ROUNDS):
        ceiling = max(ceiling, _bare_confluent(settings, bootstrap, topic, payloads))
        ours = max(ours, _generate(n))
    return _stage(
        ours,
        ceiling,
        f"bare confluent-kafka (librdkafka) produce loop, prebuilt payloads (best of "
        f"{PRODUCE_ROUNDS})",
    )


async def _bare_produce(
    bootstrap: str, topic: str, payloads: list[tuple[bytes, bytes]], settings: Settings
) -> float:
    producer = aiokafka_producer(settings, "flashsale-bench", bootstrap)
    await producer.start()
    try:
        started = time.perf_counter()
        send = producer.send
        for key, value in payloads:
            await send(topic, value, key=key)
        await producer.flush()
        return len(payloads) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def _our_produce(settings: Settings, client: str, n: int) -> float:
    """`flashsale produce --client CLIENT` unpaced: generate, encode, send, all acknowledged."""
    sink = open_sink("kafka", client, settings)
    await sink.start()
    try:
        started = time.perf_counter()
        await produce_scenario(
            sink, Generator(BENCH_SCENARIO), None, n, restocks=False, paced=False
        )
        elapsed = time.perf_counter() - started
        assert sink.stats.errors == 0, sink.stats.last_error
        return sink.stats.acked / elapsed
    finally:
        await sink.stop()


async def bench_produce(settings: Settings, bootstrap: str, n: int) -> dict[str, Any]:
    """Our aiokafka path (generation included) beside a bare aiokafka send loop."""
    payloads = _payloads(n)
    tag = uuid.uuid4().hex[:6]
    ours_topic, bare_topic = f"bench-ours-{tag}", f"bench-bare-{tag}"
    await ensure_topics(bootstrap, [ours_topic, bare_topic], settings.partitions, settings)
    ours_settings = settings.model_copy(update={"topic_orders": ours_topic})
    # Warm-up so neither side pays connection set-up.
    await _bare_produce(bootstrap, bare_topic, payloads[:1000], settings)
    # Alternate the two and keep each one's best round: on a shared machine the load drifts
    # during a run, and back-to-back single runs put that drift into the ratio.
    bare = ours = 0.0
    for _ in range(PRODUCE_ROUNDS):
        bare = max(bare, await _bare_produce(bootstrap, bare_topic, payloads, settings))
        ours = max(ours, await _our_produce(ours_settings, "aiokafka", n))
    return _stage(
        ours,
        bare,
        f"bare aiokafka producer loop: prebuilt payloads, same linger (best of {PRODUCE_ROUNDS})",
    )


def bench_produce_confluent(settings: Settings, bootstrap: str, n: int) -> dict[str, Any]:
    """Our librdkafka path (generation included) beside a bare librdkafka loop."""
    payloads = _payloads(n)
    tag = uuid.uuid4().hex[:6]
    ours_topic, bare_topic = f"bench-cours-{tag}", f"bench-cbare-{tag}"
    asyncio.run(ensure_topics(bootstrap, [ours_topic, bare_topic], settings.partitions, settings))
    ours_settings = settings.model_copy(update={"topic_orders": ours_topic})
    _bare_confluent(settings, bootstrap, bare_topic, payloads[:10_000])
    bare = ours = 0.0
    for _ in range(PRODUCE_ROUNDS):
        bare = max(bare, _bare_confluent(settings, bootstrap, bare_topic, payloads))
        ours = max(ours, asyncio.run(_our_produce(ours_settings, "confluent", n)))
    return _stage(
        ours,
        bare,
        f"bare confluent-kafka (librdkafka) produce loop, prebuilt realistic payloads (best of "
        f"{PRODUCE_ROUNDS})",
    )


async def _bare_consume(
    bootstrap: str, topic: str, n: int, partitions: int
) -> tuple[float, dict[str, int]]:
    """A bare aiokafka consume-and-aggregate loop: decode each order, sum paid cents per SKU.
    Its rate, and the sums: what each peer's result must equal."""
    consumer = AIOKafkaConsumer(
        **aiokafka_security(
            None,
            "consumer",
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        revenue: dict[str, int] = {}
        started = time.perf_counter()
        count = 0
        while count < n:
            got = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in got.values():
                for record in records:
                    sku, cents = paid_cents(record.value)
                    revenue[sku] = revenue.get(sku, 0) + cents
                count += len(records)
        return count / (time.perf_counter() - started), revenue
    finally:
        await consumer.stop()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _bench_topics(settings: Settings, bootstrap: str, tag: str) -> Settings:
    return settings.model_copy(
        update={
            "bootstrap_servers": bootstrap,
            "topic_orders": f"bench-orders-{tag}",
            "topic_decisions": f"bench-decisions-{tag}",
            "topic_inventory": f"bench-inventory-{tag}",
            "topic_dlq": f"bench-dlq-{tag}",
            "topic_late": f"bench-late-{tag}",
            "topic_revenue_second": f"bench-rps-{tag}",
            "topic_revenue_minute": f"bench-rpm-{tag}",
            "topic_hot": f"bench-hot-{tag}",
            "app_id": f"bench-{tag}",
        }
    )


@dataclass(frozen=True)
class Drain:
    """One worker draining a preloaded topic."""

    #: Events over the seconds from the worker holding its partitions (or its first decision,
    #: if that came first) to its states showing everything applied, durably: includes
    #: confirming the states at start and the drain's detection (states are written every
    #: 0.5 s, polled every 0.2 s).
    wall_per_s: float
    #: The worker process's CPU (user + system) per event decided from the ready poll on, µs.
    cpu_us: float | None
    #: Events decided per second from the worker's first decision to its last (their
    #: `processed_ns`): the rate while it drains, without the fixed costs above.
    steady_per_s: float


@dataclass(frozen=True)
class DecisionSpan:
    """When a worker's decisions were stamped (`processed_ns`), over every partition."""

    first_ns: int
    last_ns: int
    #: Events of the first decision message (decided before its stamp).
    first_events: int
    #: Events whose decisions were stamped at or before the ready poll.
    before_ready: int


def _drain_worker(run: Settings, total: int, workdir: Path) -> Drain:
    """Start one worker on a preloaded topic; how fast it drains it."""
    worker = WorkerProcess(run, free_port(), log_path=workdir / f"worker-{run.app_id}.log")
    worker.start()
    try:
        worker.wait_ready()
        assert worker.proc is not None
        cpu = _cpu_seconds(worker.proc.pid)
        ready_ns = time.time_ns()
        worker.wait_drained()
        drained_ns = time.time_ns()
        cpu = _cpu_seconds(worker.proc.pid) - cpu
    finally:
        worker.stop()
    return _drain(total, ready_ns, drained_ns, cpu, asyncio.run(_decision_span(run, ready_ns)))


def _drain(total: int, ready_ns: int, drained_ns: int, cpu_s: float, span: DecisionSpan) -> Drain:
    """The rates of a drain of `total` events seen ready at `ready_ns` and drained at
    `drained_ns`, with `cpu_s` of the worker's CPU in between.

    `ready` waits for every held partition to be confirmed, which a big first fetch can hold
    up (measured: up to 1.2 s, its decisions already out): the clock starts at the first
    decision then, and the CPU is shared among the events decided after the poll.
    """
    started_ns = min(ready_ns, span.first_ns)
    return Drain(
        total / ((drained_ns - started_ns) / 1e9),
        # None when every event was decided before the poll: no CPU was measured for any.
        cpu_s / (total - span.before_ready) * 1e6 if total > span.before_ready else None,
        (total - span.first_events) / ((span.last_ns - span.first_ns) / 1e9),
    )


async def _decision_span(run: Settings, ready_ns: int) -> DecisionSpan:
    """Read each partition of the decisions from its start to the first decision stamped
    after `ready_ns`, and its newest decision."""
    consumer = await start_reader(run.bootstrap_servers or "", run)
    firsts: list[dict[str, Any]] = []
    before_ready = 0
    try:
        tps = [TopicPartition(run.topic_decisions, p) for p in range(run.partitions)]
        newest = {tp: rec for tp, rec in (await last_records(consumer, tps)).items() if rec}
        last = max(orjson.loads(rec.value)["processed_ns"] for rec in newest.values())
        for tp, last_record in newest.items():
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            first: dict[str, Any] | None = None
            while True:
                record = await consumer.getone()
                doc = orjson.loads(record.value)
                first = first or doc
                if doc["processed_ns"] > ready_ns:
                    break
                before_ready += int(doc.get("packed", 1))
                if record.offset >= last_record.offset:
                    break
            firsts.append(first)
    finally:
        await consumer.stop()
    first = min(firsts, key=lambda doc: doc["processed_ns"])
    return DecisionSpan(first["processed_ns"], last, int(first.get("packed", 1)), before_ready)


#: The processing peers: the same per-SKU paid-cents sum written with each one's API, each
#: run in its own process as `python -m MODULE BOOTSTRAP TOPIC EVENTS` (Bytewax reads to the
#: end offsets and ignores EVENTS).
PEERS: dict[str, tuple[str, str]] = {
    "bytewax_per_sku": ("bytewax", "benchmarks.bytewax_flow"),
    "quixstreams_per_sku": ("quixstreams", "benchmarks.quix_flow"),
}


#: Where a peer may live apart from flashsale: the virtualenv `make bench` makes for it
#: (`FLASHSALE_<PACKAGE>_PYTHON` names another interpreter).
ROOT = Path(__file__).resolve().parent.parent
PEER_VENVS: dict[str, Path] = {"quixstreams": ROOT / ".venv" / "quix" / "bin" / "python"}


def peer_python(package: str) -> str | None:
    """The interpreter that has `package`: its own (env var, then its virtualenv), else this
    one; None when none has it."""
    own = os.environ.get(f"FLASHSALE_{package.upper()}_PYTHON")
    candidates = [own] if own else []
    venv = PEER_VENVS.get(package)
    if venv is not None and venv.exists():
        candidates.append(str(venv))
    for python in candidates:
        probe = subprocess.run(
            [python, "-c", f"import {package}"], capture_output=True, check=False, timeout=60
        )
        if probe.returncode == 0:
            return python
    return sys.executable if importlib.util.find_spec(package) is not None else None


def _peer(name: str, bootstrap: str, topic: str, events: int) -> dict[str, Any] | None:
    """A peer's run on the topic (events, its sums per SKU, seconds); None when the peer's
    package is not installed."""
    package, module = PEERS[name]
    python = peer_python(package)
    if python is None:
        return None
    out = subprocess.run(
        [python, "-m", module, bootstrap, topic, str(events)],
        capture_output=True,
        check=True,
        timeout=600,
        cwd=ROOT,
    )
    doc: dict[str, Any] = orjson.loads(out.stdout.splitlines()[-1])
    return doc


def _peer_stage(
    peer: dict[str, Any], total: int, expected: dict[str, int], ceiling: float, what: str
) -> dict[str, Any]:
    """A peer's figure, with whether its computation was right: every event read and each
    SKU's paid cents equal to the bare loop's over the same topic."""
    revenue: dict[str, int] = peer["revenue"]
    wrong = sorted(k for k in expected.keys() | revenue.keys() if revenue.get(k) != expected.get(k))
    return {
        **_stage(peer["events"] / peer["seconds"], ceiling, what),
        "events": peer["events"],
        "paid_cents": sum(revenue.values()),
        "expected_paid_cents": sum(expected.values()),
        "correct": peer["events"] == total and not wrong,
        "wrong_skus": len(wrong),
    }


async def _preload(run: Settings, n: int) -> int:
    """The bench scenario's first n events on `run`'s orders topic (packed when `run.pack`),
    unpaced; how many were acknowledged."""
    emitter = OrderEmitter(run)
    await emitter.start()
    try:
        await produce_scenario(emitter, Generator(BENCH_SCENARIO), None, n, paced=False)
        return emitter.stats.acked
    finally:
        await emitter.stop()


def bench_process(
    settings: Settings,
    bootstrap: str,
    n: int,
    workdir: Path,
    peers: tuple[str, ...] = ("bytewax_per_sku",),
    exactly_once: bool = False,
) -> dict[str, dict[str, Any]]:
    """One Faust worker per consume mode, a bare consume-and-aggregate loop and the `peers`
    (names of `PEERS`), all on the same preloaded topic in one run; with `exactly_once`
    (a broker with transactions) also the bulk worker in exactly-once mode."""
    run = _bench_topics(settings, bootstrap, uuid.uuid4().hex[:6])
    asyncio.run(ensure_run_topics(run, bootstrap))

    total = asyncio.run(_preload(run, n))
    ceiling, expected = asyncio.run(
        _bare_consume(bootstrap, run.topic_orders, total, run.partitions)
    )
    rates: dict[str, Drain] = {}
    # Alternate the modes and keep each one's best round: the machine's load drifts.
    modes = ("stream", "bulk", "exactly_once") if exactly_once else ("stream", "bulk")
    for _ in range(PROCESS_ROUNDS):
        for mode in modes:
            # Each worker is a new consumer group with its own output topics, same input.
            tag = uuid.uuid4().hex[:6]
            outputs = _bench_topics(settings, bootstrap, tag)
            guarantee = "exactly_once" if mode == "exactly_once" else "at_least_once"
            mode_run = outputs.model_copy(
                update={
                    "topic_orders": run.topic_orders,
                    "consume_mode": "stream" if mode == "stream" else "bulk",
                    "processing_guarantee": guarantee,
                }
            )
            asyncio.run(ensure_run_topics(mode_run, bootstrap))
            drain = _drain_worker(mode_run, total, workdir)
            if mode not in rates or drain.wall_per_s > rates[mode].wall_per_s:
                rates[mode] = drain
    bare = "bare aiokafka consume-and-aggregate loop (orjson, paid cents per SKU)"
    results = {
        "process_stream": _drain_stage(rates["stream"], ceiling, bare),
        "process_per_order": {
            **_drain_stage(rates["bulk"], ceiling, bare),
            "vs_stream": round(rates["bulk"].wall_per_s / rates["stream"].wall_per_s, 2),
        },
    }
    if "exactly_once" in rates:
        eos = rates["exactly_once"]
        results["process_exactly_once"] = {
            **_drain_stage(eos, ceiling, bare),
            # The same bulk worker, same topic, in at-least-once mode.
            "vs_at_least_once": round(eos.wall_per_s / rates["bulk"].wall_per_s, 2),
            "steady_vs_at_least_once": round(eos.steady_per_s / rates["bulk"].steady_per_s, 2),
        }
    for name in peers:
        peer = _peer(name, bootstrap, run.topic_orders, total)
        if peer is not None:
            what = f"{bare} ({PEERS[name][0]} is the peer, not ours)"
            results[name] = _peer_stage(peer, total, expected, ceiling, what)
    return results


async def _bare_consume_packed(bootstrap: str, topic: str, n: int, partitions: int) -> float:
    """The bare loop on a packed topic: decode each message's columns, sum paid cents per SKU
    (by the message's SKU codes, then by name)."""
    consumer = AIOKafkaConsumer(
        **aiokafka_security(
            None,
            "consumer",
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        revenue: dict[str, int] = {}
        started = time.perf_counter()
        count = 0
        while count < n:
            got = await consumer.getmany(timeout_ms=1000, max_records=1000)
            for records in got.values():
                for record in records:
                    doc = orjson.loads(record.value)
                    if "n" not in doc:  # a restock: one event of its own
                        count += 1
                        continue
                    # Text columns are codes into the message's dictionary.
                    coded = doc["dict"]
                    paid = coded["type"].index("paid") if "paid" in coded["type"] else -1
                    by_code: dict[int, int] = {}
                    for kind, sku, units, price in zip(
                        doc["type"],
                        doc["sku"],
                        doc["quantity"],
                        doc["unit_price_cents"],
                        strict=True,
                    ):
                        cents = units * price if kind == paid else 0
                        by_code[sku] = by_code.get(sku, 0) + cents
                    for code, cents in by_code.items():
                        name = coded["sku"][code]
                        revenue[name] = revenue.get(name, 0) + cents
                    count += doc["n"]
        return count / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def bench_process_packed(
    settings: Settings, bootstrap: str, n: int, pack: int, workdir: Path
) -> dict[str, Any]:
    """One worker (bulk mode) on packed messages beside the bare loop on the same topic."""
    run = _bench_topics(settings, bootstrap, uuid.uuid4().hex[:6]).model_copy(update={"pack": pack})
    asyncio.run(ensure_run_topics(run, bootstrap))

    total = asyncio.run(_preload(run, n))
    ceiling = asyncio.run(_bare_consume_packed(bootstrap, run.topic_orders, total, run.partitions))
    best: Drain | None = None
    for _ in range(PROCESS_ROUNDS):
        group = _bench_topics(settings, bootstrap, uuid.uuid4().hex[:6]).model_copy(
            update={"topic_orders": run.topic_orders}
        )
        asyncio.run(ensure_run_topics(group, bootstrap))
        drain = _drain_worker(group, total, workdir)
        if best is None or drain.wall_per_s > best.wall_per_s:
            best = drain
    assert best is not None
    what = f"the same bare loop on the packed topic ({pack} events per message)"
    return {
        **_drain_stage(best, ceiling, what),
        "events": total,
        # Whether the packed rules ran compiled by Cython (setup.py) in the worker.
        "compiled": PACKED_RULES_COMPILED,
    }


async def _bare_read(bootstrap: str, topic: str, n: int, partitions: int) -> float:
    """A bare aiokafka loop reading every record of `topic` (the reader settings `record` uses),
    touching each one's key, value, headers and timestamp."""
    consumer = await start_reader(bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        started = time.perf_counter()
        count = 0
        size = 0
        while count < n:
            got = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in got.values():
                for r in records:
                    size += len(r.value or b"") + len(r.headers) + r.timestamp % 2
                count += len(records)
        return count / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def _our_record(settings: Settings, bootstrap: str, topic: str, out: Path) -> float:
    """`flashsale record --topics TOPIC`: read to the high-water marks, write Parquet and the
    manifest; messages per second, set-up included."""
    started = time.perf_counter()
    report = await capture(bootstrap, out, settings, [topic])
    return report.read / (time.perf_counter() - started)


def bench_record(settings: Settings, bootstrap: str, n: int, workdir: Path) -> dict[str, Any]:
    """`flashsale record` of a preloaded orders topic beside a bare aiokafka read loop."""
    run = _bench_topics(settings, bootstrap, uuid.uuid4().hex[:6])
    asyncio.run(ensure_topics(bootstrap, [run.topic_orders], run.partitions, run))
    total = asyncio.run(_preload(run, n))
    ours = bare = 0.0
    for i in range(PRODUCE_ROUNDS):
        bare = max(
            bare, asyncio.run(_bare_read(bootstrap, run.topic_orders, total, run.partitions))
        )
        out = workdir / f"record-{run.app_id}-{i}"
        ours = max(ours, asyncio.run(_our_record(run, bootstrap, run.topic_orders, out)))
    return {
        **_stage(
            ours,
            bare,
            f"bare aiokafka read loop over the same topic, same reader settings (best of "
            f"{PRODUCE_ROUNDS})",
        ),
        "messages": total,
        "run_dir_bytes": sum(f.stat().st_size for f in out.rglob("*") if f.is_file()),
    }


async def _bare_resend(
    bootstrap: str, topic: str, messages: list[RecordedMessage], settings: Settings
) -> float:
    """A bare aiokafka send loop: each message to its recorded partition with its key, value
    and headers, prebuilt, nothing awaited but the sends."""
    producer = aiokafka_producer(settings, "flashsale-bench", bootstrap)
    await producer.start()
    try:
        started = time.perf_counter()
        send = producer.send
        for m in messages:
            await send(topic, m.value, key=m.key, partition=m.partition, headers=m.headers or None)
        await producer.flush()
        return len(messages) / (time.perf_counter() - started)
    finally:
        await producer.stop()


def bench_replay(settings: Settings, bootstrap: str, n: int, workdir: Path) -> dict[str, Any]:
    """`flashsale replay --speed max` of a recorded orders topic beside a bare aiokafka produce
    loop sending the same keys and values."""
    run = _bench_topics(settings, bootstrap, uuid.uuid4().hex[:6])
    asyncio.run(ensure_topics(bootstrap, [run.topic_orders], run.partitions, run))
    total = asyncio.run(_preload(run, n))
    out = workdir / f"replay-source-{run.app_id}"
    asyncio.run(capture(bootstrap, out, run, [run.topic_orders]))
    started = time.perf_counter()
    recorded = load_run(out)
    load_s = time.perf_counter() - started
    messages = [m for msgs in recorded.topic(run.topic_orders).values() for m in msgs]
    ours = bare = 0.0
    for _ in range(PRODUCE_ROUNDS):
        tag = uuid.uuid4().hex[:6]
        bare_topic, ours_topic = f"bench-rbare-{tag}", f"bench-rours-{tag}"
        asyncio.run(ensure_topics(bootstrap, [bare_topic, ours_topic], run.partitions, run))
        bare = max(bare, asyncio.run(_bare_resend(bootstrap, bare_topic, messages, settings)))
        stats = asyncio.run(
            replay_orders(
                recorded, run.model_copy(update={"topic_orders": ours_topic}), None, ReplayStats()
            )
        )
        assert stats.errors == 0, stats.last_error
        ours = max(ours, stats.acked / stats.duration_s)
    return {
        **_stage(
            ours,
            bare,
            f"bare aiokafka producer loop sending the recorded messages to their partitions, "
            f"same linger (best of {PRODUCE_ROUNDS})",
        ),
        "messages": total,
        "load_per_s": round(total / load_s, 1),
    }


def bench_locust_kafka(settings: Settings, bootstrap: str, seconds: int) -> dict[str, Any]:
    """One locust process of `KafkaOrdersUser` (one user, unpaced) beside the bare librdkafka
    loop: orders on the topic per second of the locust run."""
    from loadtests import locust_command

    topic = f"bench-locust-{uuid.uuid4().hex[:6]}"
    asyncio.run(ensure_topics(bootstrap, [topic], settings.partitions, settings))
    run = settings.model_copy(update={"bootstrap_servers": bootstrap, "topic_orders": topic})
    scenario_file = Path(tempfile.mkdtemp(prefix="flashsale-bench-")) / "bench.yaml"
    scenario_file.write_text(yaml.safe_dump(BENCH_SCENARIO.model_dump(mode="json")))
    env = {**os.environ, **run.to_env(), "FLASHSALE_LOADTEST_SCENARIO": str(scenario_file)}
    subprocess.run(
        locust_command(
            "--headless",
            "-u",
            "1",
            "-r",
            "1",
            "-t",
            f"{seconds}s",
            "--only-summary",
            "KafkaOrdersUser",
        ),
        env=env,
        check=True,
        capture_output=True,
        timeout=seconds + 120,
    )
    sent = sum(asyncio.run(end_offsets(bootstrap, topic)).values())
    restocks = len(Catalog.for_scenario(BENCH_SCENARIO).skus)
    ours = (sent - restocks) / seconds
    payloads = _payloads(200_000)
    ceiling = _bare_confluent(settings, bootstrap, topic, payloads)
    return _stage(ours, ceiling, "bare librdkafka produce loop, prebuilt payloads")


#: The local brokers `flashsale bench --broker` picks from; `both` runs them one after the
#: other in this order, each started for its half and stopped after it.
LOCAL_BROKERS = ("embedded", "kafka")


@dataclass(frozen=True)
class Sizes:
    """Events per stage of one run."""

    produce: int
    aiokafka: int
    process: int
    packed: int
    record: int
    locust_s: int

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        """`--quick`: seconds per stage; else the sizes the documented figures come from."""
        if quick:
            return cls(100_000, 30_000, 10_000, 100_000, 100_000, 5)
        # Packed: enough events that the worker's fixed start and drain detection (about half
        # a second) weigh little in its wall rate.
        return cls(400_000, 100_000, 60_000, 1_200_000, 400_000, 15)


def _bench_stages(
    label: str, settings: Settings, bootstrap: str, sizes: Sizes, workdir: Path
) -> dict[str, dict[str, Any]]:
    """Every stage on one broker, each beside its bare ceiling on that broker."""
    results: dict[str, dict[str, Any]] = {}
    on = settings.model_copy(update={"bootstrap_servers": bootstrap})
    # Quix Streams needs a real Kafka (it does not run on the embedded broker).
    peers = ("bytewax_per_sku",) if label == "embedded" else tuple(PEERS)

    def step(what: str, run: Callable[[], Any]) -> Any:
        with console.status(f"bench on {label}: {what} ..."):
            return run()

    results["generate"] = step(
        "generate", lambda: bench_generate(bootstrap, settings, sizes.produce)
    )
    results["produce_confluent"] = step(
        "produce_confluent",
        lambda: bench_produce_confluent(on, bootstrap, sizes.produce),
    )
    results["produce_aiokafka"] = step(
        "produce_aiokafka",
        lambda: asyncio.run(bench_produce(on, bootstrap, sizes.aiokafka)),
    )
    names = ", ".join(PEERS[p][0] for p in peers)
    eos = "" if label == "embedded" else ", bulk exactly_once"
    results.update(
        step(
            f"process (stream, bulk{eos}, {names})",
            # Transactions: not on the embedded broker (Tansu has none).
            lambda: bench_process(
                settings, bootstrap, sizes.process, workdir, peers, label != "embedded"
            ),
        )
    )
    results["locust_kafka"] = step(
        "locust_kafka (one locust process)",
        lambda: bench_locust_kafka(settings, bootstrap, sizes.locust_s),
    )
    results["process_packed"] = step(
        f"process_packed ({PACK} events per message)",
        lambda: bench_process_packed(settings, bootstrap, sizes.packed, PACK, workdir),
    )
    results["record"] = step(
        "record (a topic to Parquet)",
        lambda: bench_record(settings, bootstrap, sizes.record, workdir),
    )
    results["replay"] = step(
        "replay (max speed)",
        lambda: bench_replay(settings, bootstrap, sizes.record, workdir),
    )
    return results


def _us(stage: dict[str, Any], digits: int) -> str:
    """A stage's CPU per event, or why there is none."""
    cpu = stage["cpu_us_per_event"]
    return (
        "not measured (all decided before the ready poll)"
        if cpu is None
        else f"{cpu:.{digits}f} µs"
    )


def _print_broker(label: str, half: dict[str, Any], quick: bool) -> None:
    """One broker's table (stage, ours, ceiling, ratio) and its worker and peer lines."""
    results: dict[str, dict[str, Any]] = half["stages"]
    table = Table(
        title=f"flashsale bench on {label} ({'quick' if quick else 'full'}): {half['broker']}, "
        f"{half['bootstrap']}"
    )
    for col in ("stage", "ours /s", "ceiling /s", "ratio", "ceiling"):
        table.add_column(col, justify="left" if col in ("stage", "ceiling") else "right")
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['ours_per_s']:,.0f}",
            f"{r['ceiling_per_s']:,.0f}",
            f"{r['ratio']:.2f}",
            r["ceiling"],
        )
    console.print(table)
    stream, per_order = results["process_stream"], results["process_per_order"]
    console.print(
        f"[{label}] worker per-order (bulk) vs Faust's stream path with default settings: "
        f"{per_order['vs_stream']:.2f}x; CPU per event {_us(per_order, 0)} "
        f"(stream {_us(stream, 0)})"
    )
    eos = results.get("process_exactly_once")
    if eos is not None:
        console.print(
            f"[{label}] worker exactly_once (bulk, Kafka transactions) "
            f"{eos['ours_per_s']:,.0f}/s vs at_least_once {per_order['ours_per_s']:,.0f}/s on "
            f"the same topic: {eos['vs_at_least_once']:.2f}x (from first decision to last: "
            f"{eos['steady_per_s']:,.0f}/s vs {per_order['steady_per_s']:,.0f}/s, "
            f"{eos['steady_vs_at_least_once']:.2f}x); CPU per event {_us(eos, 0)} vs "
            f"{_us(per_order, 0)}"
        )
    packed = results["process_packed"]
    console.print(
        f"[{label}] worker packed: {packed['ours_per_s']:,.0f} events/s "
        f"({packed['steady_per_s']:,.0f}/s from its first decision to its last), CPU per "
        f"event {_us(packed, 1)}, rules "
        f"{'compiled' if packed['compiled'] else 'NOT compiled'}; "
        f"{packed['ours_per_s'] / per_order['ours_per_s']:.1f}x per-order"
    )
    peers = [
        f"{PEERS[name][0]} {results[name]['ours_per_s']:,.0f}/s"
        + ("" if results[name]["correct"] else " (WRONG RESULT)")
        for name in PEERS
        if name in results
    ]
    console.print(
        f"[{label}] per-SKU paid cents on the same topic: our worker per-order "
        f"{per_order['ours_per_s']:,.0f}/s, packed {packed['ours_per_s']:,.0f}/s; peers: "
        + (", ".join(peers) or "none installed (pip install -e '.[peers]')")
    )


def _print_side_by_side(halves: dict[str, dict[str, Any]]) -> None:
    """The ratio of every stage on each broker, in one table."""
    labels = list(halves)
    stages = list(dict.fromkeys(n for h in halves.values() for n in h["stages"]))
    table = Table(title="ours / ceiling on each broker (same run)")
    table.add_column("stage")
    for label in labels:
        table.add_column(f"{label} ours /s", justify="right")
        table.add_column(f"{label} ratio", justify="right")
    for name in stages:
        row = [name]
        for label in labels:
            r = halves[label]["stages"].get(name)
            row += [f"{r['ours_per_s']:,.0f}", f"{r['ratio']:.2f}"] if r else ["-", "-"]
        table.add_row(*row)
    console.print(table)


def _versions() -> dict[str, str]:
    """The versions of what the figures depend on."""
    from importlib.metadata import PackageNotFoundError, version

    import confluent_kafka

    from flashsale.brokers.apache import KAFKA_VERSION

    out = {"python": sys.version.split()[0], "librdkafka": confluent_kafka.libversion()[0]}
    for dist in ("aiokafka", "confluent-kafka", "faust-streaming", "bytewax"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    # A peer in a virtualenv of its own: its version there.
    python = peer_python("quixstreams")
    if python is not None:
        said = subprocess.run(
            [python, "-c", "from importlib.metadata import version; print(version('quixstreams'))"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if said.returncode == 0:
            out["quixstreams"] = said.stdout.strip()
    out["apache-kafka (local)"] = KAFKA_VERSION
    return out


def run_bench(
    settings: Settings,
    quick: bool = False,
    json_path: Path | None = None,
    brokers: tuple[str, ...] = LOCAL_BROKERS,
    sizes: Sizes | None = None,
) -> int:
    """Run every stage on each broker, print the tables, write the JSON; 0 on success, 1 when
    a peer's result was wrong, 2 when the only broker asked for cannot be started.

    `brokers`: the local brokers to start (names of `LOCAL_BROKERS`), one after the other;
    ignored when `settings.bootstrap_servers` is set: then only those servers are measured.
    A local Kafka that cannot start for want of Java or Maven is skipped with one line, unless
    it is the only broker asked for. `sizes`: instead of `Sizes.of(quick)` (tests).
    """
    sizes = sizes or Sizes.of(quick)
    workdir = Path(tempfile.mkdtemp(prefix="flashsale-bench-"))
    halves: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    if settings.bootstrap_servers:
        runs = [("external", settings)]
    else:
        runs = [
            (
                name,
                settings.model_copy(update={"local_broker": "kafka", "kafka_nodes": 1})
                if name == "kafka"
                else settings.model_copy(update={"local_broker": "embedded"}),
            )
            for name in LOCAL_BROKERS
            if name in brokers
        ]
    for label, half_settings in runs:
        with contextlib.ExitStack() as stack:
            try:
                with console.status(f"bench: starting the {label} broker ..."):
                    bootstrap, broker = stack.enter_context(
                        broker_for(half_settings, announce=False)
                    )
            except KafkaToolMissing as exc:
                if len(runs) == 1:
                    print(f"flashsale: error: {exc}", file=sys.stderr)
                    return 2
                skipped[label] = str(exc)
                console.print(f"bench: {label} skipped: {exc}")
                continue
            # The embedded broker's defaults when it is ours (`Settings.for_embedded_broker`);
            # Kafka's otherwise (a 10 s session: a stock Kafka refuses one under 6 s).
            on = settings_on(half_settings, bootstrap)
            halves[label] = {
                "broker": describe_broker(broker),
                "bootstrap": bootstrap,
                "stages": _bench_stages(label, on, bootstrap, sizes, workdir),
            }
    for label, half in halves.items():
        _print_broker(label, half, quick)
    if len(halves) > 1:
        _print_side_by_side(halves)
    for label, reason in skipped.items():
        console.print(f"bench: {label} skipped: {reason}")
    wrong = [
        f"{PEERS[name][0]} on {label}"
        for label, half in halves.items()
        for name in PEERS
        if name in half["stages"] and not half["stages"][name]["correct"]
    ]
    for what in wrong:
        console.print(
            f"bench: {what} did not compute the bare loop's per-SKU sums: its figure "
            "is not of a correct computation"
        )
    if json_path:
        doc = {"quick": quick, "versions": _versions(), **halves, "skipped": skipped}
        json_path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        console.print(f"figures: {json_path}")
    return 1 if wrong else 0


def bare_ceiling(settings: Settings, bootstrap: str, n: int, pack: int = 0) -> dict[str, Any]:
    """The bare-client ceiling `flashsale rate` puts its rating beside: the bench scenario's
    first `n` events on a fresh topic of `bootstrap` (packed when `pack`), then the bare
    aiokafka consume-and-aggregate loop of the process stage reading them, events/s."""
    run = _bench_topics(settings, bootstrap, uuid.uuid4().hex[:6]).model_copy(update={"pack": pack})
    asyncio.run(ensure_run_topics(run, bootstrap))
    total = asyncio.run(_preload(run, n))
    if pack:
        rate = asyncio.run(_bare_consume_packed(bootstrap, run.topic_orders, total, run.partitions))
        what = f"a bare aiokafka loop decoding packed messages ({pack} events) and summing"
    else:
        rate, _ = asyncio.run(_bare_consume(bootstrap, run.topic_orders, total, run.partitions))
        what = "a bare aiokafka loop decoding each order and summing paid cents per SKU"
    return {"events": total, "events_per_s": round(rate, 1), "what": what}
