"""Topics: a run's topics created up front with their replication resolved for the cluster,
and the state changelog's settings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from flashsale.brokers.base import BrokerError
from flashsale.kafka.clients import aiokafka_security
from flashsale.settings import STATE_RECORD_MAX_BYTES, Settings

__all__ = [
    "changelog_configs",
    "ensure_run_topics",
    "ensure_topics",
    "leader_topic",
    "resolve_replication",
]

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


def resolve_replication(settings: Settings, brokers: int, creating: bool = True) -> Settings:
    """`settings` with `replication_factor` (unset: min(3, brokers)) and
    `min_insync_replicas` (unset: 2 from a replication factor of 3, else 1) filled in;
    `BrokerError` for an explicit replication factor above the cluster's brokers when topics
    are to be created with it (`creating`). Topics that exist keep their replicas: a worker
    restarted while one of three brokers is down must start, not count the brokers up."""
    rf = settings.replication_factor
    if rf is None:
        rf = max(min(3, brokers), 1)
    elif rf > brokers and creating:
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
        existing = set(await admin.list_topics())
        creating = any(topic not in existing for topic, _, _ in specs)
        resolved = resolve_replication(s, len(cluster.get("brokers") or ()), creating)
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
