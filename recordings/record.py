"""`flashsale record`: capture every message of a run's topics into a run directory.

A capture reads each partition from where the run directory stopped (the start of the topic
for a new one) up to the high-water mark taken when the capture began, and writes one Parquet
part file per topic per session (`recordings.format.RunWriter`). Interrupted (Ctrl-C), it closes
the parts and writes the manifest of what it has, so running it again continues there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from flashsale.kafka.reading import high_watermarks, last_record, start_reader
from flashsale.settings import Settings
from recordings.format import RunWriter, roles_of

__all__ = ["CaptureReport", "RecordError", "capture", "run_settings_doc"]

#: Records asked of the broker per fetch round.
FETCH_RECORDS = 10_000


class RecordError(Exception):
    """A capture that cannot start: the message says why, in one line."""


@dataclass
class CaptureReport:
    """What one capture session did."""

    manifest: dict[str, Any]
    read: int = 0
    #: Run topics (default list only) the broker does not have.
    skipped: list[str] = field(default_factory=list)
    #: The run directory was complete before this session: nothing was read.
    already_complete: bool = False
    resumed: bool = False


def run_settings_doc(settings: Settings, partitions: int) -> dict[str, Any]:
    """The settings a replay and an offline verify need, as the manifest stores them."""
    return {
        "partitions": partitions,
        "dedupe_window": settings.dedupe_window,
        "window_grace_s": settings.window_grace_s,
        "app_id": settings.app_id,
        "topic_orders": settings.topic_orders,
    }


async def capture(
    bootstrap: str,
    out: Path,
    settings: Settings,
    topics: Sequence[str] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    worker_settings: Settings | None = None,
) -> CaptureReport:
    """Capture `topics` (default: every topic of a run under `settings`) into `out`.

    `on_start(offsets to read, topics)` is called once the ranges are known, `on_progress(read)`
    after each fetch. `worker_settings`: what the workers ran with, when the caller knows it
    (`flashsale demo`); otherwise the dedupe window and window grace are read from the
    workers' last state records.
    """
    consumer = await start_reader(bootstrap, settings)
    try:
        writer = RunWriter.open(out)
        report: CaptureReport
        if writer is not None:
            recorded = set(writer.manifest["topics"])
            if topics is not None and set(topics) != recorded:
                raise RecordError(
                    f"{out} holds a capture of {', '.join(sorted(recorded))}: pass the same "
                    "--topics to continue it, or another --out"
                )
            report = CaptureReport(writer.manifest, resumed=True)
            if writer.manifest.get("complete"):
                report.already_complete = True
                return report
        else:
            writer, report = await _new_capture(
                consumer, bootstrap, out, settings, topics, worker_settings
            )
        report.read = await _read(consumer, writer, on_start, on_progress)
        report.manifest = writer.manifest
        return report
    finally:
        await consumer.stop()


async def _new_capture(
    consumer: AIOKafkaConsumer,
    bootstrap: str,
    out: Path,
    settings: Settings,
    topics: Sequence[str] | None,
    worker_settings: Settings | None,
) -> tuple[RunWriter, CaptureReport]:
    roles = roles_of(settings)
    wanted = list(topics) if topics is not None else list(roles.values())
    # Every topic with its partitions (`consumer.topics()` leaves the client's own metadata
    # without them).
    cluster = await consumer._client.fetch_all_metadata()
    existing = cluster.topics()
    missing = [t for t in wanted if t not in existing]
    if topics is not None and missing:
        raise RecordError(f"no topic {', '.join(missing)} on {bootstrap}")
    present = [t for t in wanted if t in existing]
    if not present:
        raise RecordError(f"none of the run's topics is on {bootstrap}: nothing to record")
    ranges: dict[str, dict[int, tuple[int, int]]] = {}
    for name in present:
        tps = [TopicPartition(name, p) for p in sorted(cluster.partitions_for_topic(name) or ())]
        begins = await consumer.beginning_offsets(tps)
        ends = await high_watermarks(consumer, tps)
        ranges[name] = {tp.partition: (begins[tp], ends[tp]) for tp in tps}
    orders = ranges.get(settings.topic_orders)
    partitions = len(orders) if orders else settings.partitions
    ran = worker_settings or await _workers_settings(
        consumer, settings, ranges.get(settings.state_changelog_topic(), {})
    )
    writer = RunWriter.create(out, ranges, roles, run_settings_doc(ran, partitions))
    return writer, CaptureReport(writer.manifest, skipped=missing)


async def _workers_settings(
    consumer: AIOKafkaConsumer, settings: Settings, changelog: Mapping[int, tuple[int, int]]
) -> Settings:
    """`settings` with the dedupe window and window grace the workers' states record."""
    update: dict[str, Any] = {}
    for partition, (start, end) in sorted(changelog.items()):
        if end <= start:
            continue
        rec = await last_record(
            consumer, TopicPartition(settings.state_changelog_topic(), partition)
        )
        if rec is None or rec.value is None:
            continue
        with contextlib.suppress(ValueError, KeyError, TypeError):
            doc = orjson.loads(rec.value)
            update = {"dedupe_window": int(doc["window"]), "window_grace_s": doc["grace_ms"] / 1000}
            break
    return settings.model_copy(update=update) if update else settings


async def _read(
    consumer: AIOKafkaConsumer,
    writer: RunWriter,
    on_start: Callable[[int, int], None] | None,
    on_progress: Callable[[int], None] | None,
) -> int:
    """Read what is left into `writer`; close it (also when interrupted) and return the count."""
    remaining: dict[TopicPartition, int] = {}
    for topic, parts in writer.ranges().items():
        for partition, (start, end) in parts.items():
            if end > start:
                remaining[TopicPartition(topic, partition)] = end
            else:
                writer.done(topic, partition)
    if on_start is not None:
        on_start(writer.remaining(), len(writer.manifest["topics"]))
    read = 0
    interrupted = True
    try:
        if remaining:
            consumer.assign(list(remaining))
            for tp in remaining:
                consumer.seek(tp, writer.next[tp.topic][tp.partition])
        extend = writer.extend
        while remaining:
            got = await consumer.getmany(*remaining, timeout_ms=500, max_records=FETCH_RECORDS)
            for tp, records in got.items():
                stop = remaining.get(tp)
                if stop is None:
                    continue
                if records and records[-1].offset >= stop:
                    records = [r for r in records if r.offset < stop]
                extend(tp.topic, tp.partition, records)
                read += len(records)
            for tp in list(remaining):
                # The position, not the last offset seen: the end may follow a gap.
                if await consumer.position(tp) >= remaining[tp]:
                    writer.done(tp.topic, tp.partition)
                    del remaining[tp]
            if on_progress is not None:
                on_progress(read)
        interrupted = False
    finally:
        writer.close(interrupted=interrupted)
    return read
