"""Small Kafka helpers shared by every command: topics, true end offsets, reading a topic.

Tansu 0.6 answers ListOffsets(latest) with the base offset of a partition's last record batch
plus one, which is short of the end whenever that batch holds several records (measured: five
records in one batch at offsets 3..7 reported an end of 4, not 8). A fetch response carries the
real high watermark, so end offsets here come from a fetch; on real Kafka both agree.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from flashsale.broker import BrokerError
from flashsale.client_config import (
    Role,
    aiokafka_properties,
    librdkafka_properties,
    warn_unmapped,
)
from flashsale.settings import STATE_RECORD_MAX_BYTES, Settings

__all__ = [
    "aiokafka_producer",
    "aiokafka_security",
    "changelog_configs",
    "end_offsets",
    "ensure_run_topics",
    "ensure_topics",
    "high_watermarks",
    "last_record",
    "last_records",
    "leader_topic",
    "librdkafka_security",
    "producer_codec",
    "read_newest",
    "read_ranges",
    "read_topic",
    "resolve_replication",
    "ssl_context",
    "start_reader",
]


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL (None for the other protocols)."""
    if not settings.security_protocol.endswith("SSL"):
        return None
    return create_ssl_context(
        cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
        certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
    )


def aiokafka_security(
    settings: Settings | None = None, role: Role | None = None, **ours: Any
) -> dict[str, Any]:
    """The keyword arguments of an aiokafka client (`role`: producer, consumer or admin):
    `ours`, then the security settings (nothing for PLAINTEXT), then what the client-config
    file gives this kind of client (`role` None: only what every kind takes). Without
    `settings`, those of the environment (`FLASHSALE_*`)."""
    s = settings if settings is not None else Settings()
    out: dict[str, Any] = dict(ours)
    if s.security_protocol != "PLAINTEXT":
        out["security_protocol"] = s.security_protocol
        context = ssl_context(s)
        if context is not None:
            out["ssl_context"] = context
        if s.security_protocol.startswith("SASL_"):
            out["sasl_mechanism"] = s.sasl_mechanism
            out["sasl_plain_username"] = s.sasl_username
            out["sasl_plain_password"] = (
                s.sasl_password.get_secret_value() if s.sasl_password else None
            )
    props = s.client_properties()
    if props:
        assert s.client_config is not None
        warn_unmapped(s.client_config, props)
        # Admin clients take exactly the properties every kind of client takes.
        out.update(aiokafka_properties(props, role or "admin"))
    return out


def librdkafka_security(settings: Settings) -> dict[str, Any]:
    """The same for librdkafka (confluent-kafka) clients: the security settings, then the
    client-config file's properties as they are (see `client_config.librdkafka_properties`)."""
    out: dict[str, Any] = {}
    if settings.security_protocol != "PLAINTEXT":
        out["security.protocol"] = settings.security_protocol.lower()
        for key, path in (
            ("ssl.ca.location", settings.ssl_cafile),
            ("ssl.certificate.location", settings.ssl_certfile),
            ("ssl.key.location", settings.ssl_keyfile),
        ):
            if path is not None and settings.security_protocol.endswith("SSL"):
                out[key] = str(path)
        if settings.security_protocol.startswith("SASL_"):
            out["sasl.mechanism"] = settings.sasl_mechanism
            out["sasl.username"] = settings.sasl_username
            out["sasl.password"] = (
                settings.sasl_password.get_secret_value() if settings.sasl_password else None
            )
    out.update(librdkafka_properties(settings.client_properties()))
    return out


def producer_codec(settings: Settings) -> str | None:
    """The aiokafka `compression_type` of `settings.compression` (None: uncompressed)."""
    return None if settings.compression == "none" else settings.compression


def aiokafka_producer(
    settings: Settings, client_id: str, bootstrap: str | list[str] | None = None
) -> AIOKafkaProducer:
    """The producer every aiokafka sender uses (emitter, replay, bench loops): acks=all,
    idempotent unless `enable_idempotence` is off, compression and batching from the
    settings, then the client-config file; `bootstrap` overrides the settings' servers."""
    return AIOKafkaProducer(
        **aiokafka_security(
            settings,
            "producer",
            bootstrap_servers=bootstrap or settings.bootstrap_list(),
            client_id=client_id,
            acks="all",
            linger_ms=settings.linger_ms,
            max_batch_size=settings.max_batch_bytes,
            compression_type=producer_codec(settings),
            enable_idempotence=settings.enable_idempotence,
        )
    )


#: Headroom of a record batch over the one record in it (batch header, record framing).
_BATCH_OVERHEAD = 64 * 1024


def changelog_configs() -> dict[str, str]:
    """Topic configs of the workers' state changelog: compacted (one live record per key),
    and taking a whole partition-state record (Kafka's default `message.max.bytes` is about
    1 MB; a state record may be up to `STATE_RECORD_MAX_BYTES`)."""
    return {
        "cleanup.policy": "compact",
        "max.message.bytes": str(STATE_RECORD_MAX_BYTES + _BATCH_OVERHEAD),
    }


async def ensure_run_topics(settings: Settings, bootstrap: str) -> Settings:
    """Create the topics a run uses, if missing: flashsale's own, the workers' state
    changelog and Faust's leader topic (so none is left to a broker's auto-creation, which
    makes one partition), with one admin client. Returns `settings` with the replication
    factor and `min.insync.replicas` resolved (`resolve_replication`), as the workers need
    them."""
    specs: list[tuple[str, int, Mapping[str, str]]] = [
        (topic, settings.partitions, {}) for topic in settings.run_topics()
    ]
    specs.append((settings.state_changelog_topic(), settings.partitions, changelog_configs()))
    specs.append((leader_topic(settings), 1, {}))
    return await _ensure(bootstrap, settings, specs)


def leader_topic(settings: Settings) -> str:
    """Faust's leader-election topic of the workers' app (one partition)."""
    return f"{settings.app_id}-__assignor-__leader"


def resolve_replication(settings: Settings, brokers: int) -> Settings:
    """`settings` with `replication_factor` (unset: min(3, brokers)) and
    `min_insync_replicas` (unset: 2 from a replication factor of 3, else 1) filled in;
    `BrokerError` for an explicit replication factor above the cluster's brokers."""
    rf = settings.replication_factor
    if rf is None:
        rf = max(min(3, brokers), 1)
    elif rf > brokers:
        raise BrokerError(
            f"replication factor {rf} needs {rf} brokers; the cluster has {brokers} "
            "(set FLASHSALE_REPLICATION_FACTOR to at most that)"
        )
    isr = settings.min_insync_replicas
    if isr is None:
        isr = 2 if rf >= 3 else 1
    elif isr > rf:
        raise BrokerError(f"min.insync.replicas {isr} is above the replication factor {rf}")
    if (rf, isr) == (settings.replication_factor, settings.min_insync_replicas):
        return settings
    return settings.model_copy(update={"replication_factor": rf, "min_insync_replicas": isr})


async def ensure_topics(
    bootstrap: str,
    topics: Iterable[str],
    partitions: int,
    settings: Settings | None = None,
    configs: Mapping[str, str] | None = None,
) -> Settings:
    """Create the topics that do not exist yet, with the replication factor and
    `min.insync.replicas` of `resolve_replication` (from the cluster's broker count) and
    `configs`; returns the settings with both resolved."""
    return await _ensure(bootstrap, settings, [(t, partitions, configs or {}) for t in topics])


async def _ensure(
    bootstrap: str,
    settings: Settings | None,
    specs: Sequence[tuple[str, int, Mapping[str, str]]],
) -> Settings:
    """`ensure_topics` of topics each with its own partitions and configs, one admin client."""
    s = settings if settings is not None else Settings()
    admin = AIOKafkaAdminClient(
        **aiokafka_security(
            s,
            "admin",
            bootstrap_servers=bootstrap,
            client_id="flashsale-admin",
            # Usually the first client of a command: a broker that does not speak the
            # protocol asked for (TLS against plaintext never answers) fails in 15 s, not 40.
            request_timeout_ms=15_000,
        )
    )
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        resolved = resolve_replication(s, len(cluster.get("brokers") or ()))
        existing = set(await admin.list_topics())
        isr = {"min.insync.replicas": str(resolved.min_insync_replicas)}
        wanted = [
            NewTopic(
                name=topic,
                num_partitions=partitions,
                replication_factor=resolved.replication_factor or 1,
                topic_configs={**isr, **configs},
            )
            for topic, partitions, configs in specs
            if topic not in existing
        ]
        if wanted:
            # Another process may create one meanwhile: fine.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
        return resolved
    finally:
        await admin.close()


async def start_reader(
    bootstrap: str | list[str], settings: Settings | None = None
) -> AIOKafkaConsumer:
    """A started consumer without a group for direct reads (`read_ranges`, `last_record`);
    it takes a whole partition-state record, which may weigh up to 64 MB."""
    consumer = AIOKafkaConsumer(
        **aiokafka_security(
            settings,
            "consumer",
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=STATE_RECORD_MAX_BYTES,
        )
    )
    await consumer.start()
    return consumer


def _consumer(bootstrap: str, settings: Settings | None) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **aiokafka_security(
            settings,
            "consumer",
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
    )


async def high_watermarks(
    consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition], timeout_s: float = 10.0
) -> dict[TopicPartition, int]:
    """True end offsets of `tps`, read from fetch responses (reassigns `consumer`)."""
    return (await _listed_and_true_ends(consumer, tps, timeout_s))[1]


async def _listed_and_true_ends(
    consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition], timeout_s: float
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    if not tps:
        return {}, {}
    listed = await consumer.end_offsets(list(tps))
    consumer.assign(list(tps))
    for tp in tps:
        consumer.seek(tp, max(listed[tp] - 1, 0))
    out: dict[TopicPartition, int] = {}
    deadline = time.monotonic() + timeout_s
    while len(out) < len(tps):
        pending = [tp for tp in tps if tp not in out]
        await consumer.getmany(*pending, timeout_ms=100, max_records=1)
        for tp in pending:
            hw = consumer.highwater(tp)
            if hw is not None:
                out[tp] = max(hw, listed[tp])
        if time.monotonic() > deadline:
            missing = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in tps if tp not in out)
            raise TimeoutError(f"no fetch answer for {missing} in {timeout_s:.0f}s")
    return listed, out


#: How long `read_topic` waits for a partition that returns nothing short of its end.
READ_STALL_S = 30.0


async def read_ranges(
    consumer: AIOKafkaConsumer,
    ranges: Mapping[TopicPartition, tuple[int, int]],
    stall_s: float | None = None,
) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
    """Records [start, end) of each partition, in order, fetched together (reassigns).

    With `stall_s`, raises BrokerError when a partition's position stays put that long short
    of its end (a topic Tansu recreated after a restart answers fetches below its end with
    nothing); without it, waits as long as it takes.
    """
    wanted = {tp: r for tp, r in ranges.items() if r[1] > r[0]}
    out: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {tp: [] for tp in ranges}
    if not wanted:
        return out
    consumer.assign(list(wanted))
    for tp, (start, _) in wanted.items():
        consumer.seek(tp, start)
    remaining = set(wanted)
    moved = {tp: (start, time.monotonic()) for tp, (start, _) in wanted.items()}
    while remaining:
        got = await consumer.getmany(*remaining, timeout_ms=1000, max_records=10_000)
        for tp, records in got.items():
            end = wanted[tp][1]
            out[tp].extend(r for r in records if r.offset < end)
        # Position, not the last offset seen: compaction may leave gaps at the end.
        for tp in list(remaining):
            position = await consumer.position(tp)
            if position >= wanted[tp][1]:
                remaining.discard(tp)
            elif position != moved[tp][0]:
                moved[tp] = (position, time.monotonic())
            elif stall_s is not None and time.monotonic() - moved[tp][1] > stall_s:
                raise BrokerError(
                    f"{tp.topic}[{tp.partition}]: no records from offset {position} to its "
                    f"end {wanted[tp][1]} in {stall_s:.0f} s; the broker may have lost them "
                    "(a topic recreated after a restart?)"
                )
    return out


async def last_record(
    consumer: AIOKafkaConsumer, tp: TopicPartition
) -> ConsumerRecord[bytes, bytes] | None:
    """The newest record of one partition, or None when it is empty (reassigns `consumer`)."""
    return (await last_records(consumer, [tp]))[tp]


async def last_records(
    consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition]
) -> dict[TopicPartition, ConsumerRecord[bytes, bytes] | None]:
    """The newest record of each partition (None for an empty one), all read together: one
    ListOffsets, one round of fetches for the true ends, one read (reassigns `consumer`).
    One partition at a time, each empty one costs a fetch wait of its own (measured: 16
    partitions confirmed one by one took up to 5 s at a worker's start)."""
    listed, ends = await _listed_and_true_ends(consumer, tps, 10.0)
    # Read each last batch whole: ListOffsets may point at its start, not its end.
    ranges = {tp: (max(min(listed[tp], ends[tp]) - 1, 0), ends[tp]) for tp in tps}
    got = await read_ranges(consumer, ranges)
    return {tp: got[tp][-1] if got[tp] else None for tp in tps}


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    await consumer._client.force_metadata_update()
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


async def end_offsets(
    bootstrap: str, topic: str, settings: Settings | None = None
) -> dict[int, int]:
    """True end offset per partition of `topic` (empty when the topic does not exist)."""
    consumer = _consumer(bootstrap, settings)
    await consumer.start()
    try:
        tps = await _partitions(consumer, topic)
        ends = await high_watermarks(consumer, tps)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def read_newest(
    bootstrap: str, topic: str, settings: Settings | None = None
) -> dict[int, list[ConsumerRecord[bytes, bytes]]]:
    """The newest record of each partition of `topic` (an empty list for an empty one): for
    a topic whose partitions each hold one key's successive values, such as the workers'
    state changelog, where reading everything would hold every snapshot in memory."""
    consumer = _consumer(bootstrap, settings)
    await consumer.start()
    try:
        newest = await last_records(consumer, await _partitions(consumer, topic))
        return {tp.partition: [] if rec is None else [rec] for tp, rec in newest.items()}
    finally:
        await consumer.stop()


async def read_topic(
    bootstrap: str, topic: str, settings: Settings | None = None
) -> dict[int, list[ConsumerRecord[bytes, bytes]]]:
    """Every record of `topic` up to its end offsets at the start, per partition in order.
    `settings`: whose security settings to use (default: the environment's)."""
    consumer = _consumer(bootstrap, settings)
    await consumer.start()
    try:
        tps = await _partitions(consumer, topic)
        ends = await high_watermarks(consumer, tps)
        begins = await consumer.beginning_offsets(tps) if tps else {}
        got = await read_ranges(
            consumer, {tp: (begins[tp], ends[tp]) for tp in tps}, stall_s=READ_STALL_S
        )
        return {tp.partition: records for tp, records in got.items()}
    finally:
        await consumer.stop()
