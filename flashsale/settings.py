"""One settings object for every flashsale process; each field names its environment variable."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flashsale.client_config import load_properties, settings_from_properties

__all__ = ["EMBEDDED_DEFAULTS", "STATE_RECORD_MAX_BYTES", "STATE_TABLE", "Settings"]

#: The worker table holding one state record per source partition (see docs/events.md).
STATE_TABLE = "partition-state"

#: Largest partition-state record a worker writes (its producer's `max_request_size`): at the
#: peak of a big scenario a partition's open lines pass Kafka's default 1 MB.
STATE_RECORD_MAX_BYTES = 64 * 1024 * 1024

#: What the embedded broker (Tansu) needs, for the fields a user did not set: a short session
#: (Tansu holds a JoinGroup for half of it) and no idempotence (it fails InitProducerId).
EMBEDDED_DEFAULTS: dict[str, Any] = {"session_timeout_s": 4.0, "enable_idempotence": False}


class Settings(BaseSettings):
    """Runtime settings, read from `FLASHSALE_*` environment variables and CLI flags."""

    model_config = SettingsConfigDict(env_prefix="FLASHSALE_", frozen=True, extra="ignore")

    bootstrap_servers: str | None = None
    """Existing Kafka to use instead of the embedded broker. Env: FLASHSALE_BOOTSTRAP_SERVERS."""

    tansu_bin: Path | None = None
    """Explicit Tansu binary for the embedded broker. Env: FLASHSALE_TANSU_BIN."""

    local_broker: Literal["embedded", "kafka"] = "embedded"
    """The broker a command starts for itself when no bootstrap servers are given: `embedded`
    (Tansu, memory storage) or `kafka` (Apache Kafka from Maven Central's jars, on disk in a
    temporary folder; `--kafka`). Env: FLASHSALE_LOCAL_BROKER."""

    kafka_nodes: int = Field(default=1, ge=1, le=3)
    """Nodes of the local Apache Kafka: 1, or 3 for replication (a 2-node quorum survives no
    failure). Env: FLASHSALE_KAFKA_NODES."""

    kafka_network: Literal["loopback", "namespaces"] = "loopback"
    """Where the local Apache Kafka's nodes listen: all on loopback, or each in a network
    namespace of its own (root; a fault timeline can then cut one off the network). Env:
    FLASHSALE_KAFKA_NETWORK."""

    broker_start_timeout_s: float = 20.0
    """How long to wait for the embedded broker to answer metadata. Env:
    FLASHSALE_BROKER_START_TIMEOUT_S."""

    topic_orders: str = "orders"
    """Input topic of order events, keyed by SKU. Env: FLASHSALE_TOPIC_ORDERS."""

    topic_decisions: str = "order-decisions"
    """One decision per processed order. Env: FLASHSALE_TOPIC_DECISIONS."""

    topic_inventory: str = "inventory-events"
    """Sold-out events. Env: FLASHSALE_TOPIC_INVENTORY."""

    topic_dlq: str = "orders-dlq"
    """Malformed input with its reason in headers. Env: FLASHSALE_TOPIC_DLQ."""

    topic_late: str = "orders-late"
    """Events later than the window grace, unchanged, with partition, offset and watermark in
    headers. Env: FLASHSALE_TOPIC_LATE."""

    topic_revenue_second: str = "revenue-per-second"
    """Closed 1 s event-time windows per partition. Env: FLASHSALE_TOPIC_REVENUE_SECOND."""

    topic_revenue_minute: str = "revenue-per-minute"
    """Closed 1 min event-time windows per partition. Env: FLASHSALE_TOPIC_REVENUE_MINUTE."""

    topic_hot: str = "hot-products"
    """Each closed minute's top SKUs by units, per partition. Env: FLASHSALE_TOPIC_HOT."""

    partitions: int = Field(default=4, ge=1, le=1024)
    """Partitions of every flashsale topic. Env: FLASHSALE_PARTITIONS."""

    app_id: str = "flashsale"
    """Faust app id: consumer group and table changelog prefix. Env: FLASHSALE_APP_ID."""

    web_host: str = "127.0.0.1"
    """Interface every flashsale listener binds. Env: FLASHSALE_WEB_HOST."""

    web_port: int = Field(default=6066, ge=0, le=65535)
    """Worker web port (views and /metrics). Env: FLASHSALE_WEB_PORT."""

    gateway_port: int = Field(default=8060, ge=0, le=65535)
    """Port of `flashsale gateway`, on `web_host`. Env: FLASHSALE_GATEWAY_PORT."""

    gateway_rate_per_client: float = Field(default=5000.0, ge=0)
    """Requests a second one client address may make to the gateway (a token bucket holding
    one second's worth); over it the answer is 429 with `Retry-After`. 0: no limit. The
    default leaves room for a whole load test from one machine. Env:
    FLASHSALE_GATEWAY_RATE_PER_CLIENT."""

    gateway_request_timeout_s: float = Field(default=15.0, gt=0)
    """Longest a gateway client may take to send a request's headers (or stay idle between
    requests), and its body: slower clients are cut, so slow-loris connections cannot pile
    up. Env: FLASHSALE_GATEWAY_REQUEST_TIMEOUT_S."""

    dashboard_port: int = Field(default=8050, ge=0, le=65535)
    """Port of the live dashboard (`flashsale dashboard`, and the one `flashsale demo` starts;
    another free port when taken), on `web_host`. Env: FLASHSALE_DASHBOARD_PORT."""

    window_grace_s: float = Field(default=2.0, ge=0, le=3600)
    """How late (behind the newest event time of its partition) an event may arrive and still
    count in its 1 s and 1 min windows; later ones go to the late topic. A scenario's
    `window_grace_s` sets it for the workers `flashsale demo` starts. Env:
    FLASHSALE_WINDOW_GRACE_S."""

    dedupe_window: int = Field(default=5000, ge=0)
    """Event ids (order, line, step) remembered per partition for duplicate detection, and
    paid lines remembered for refunds (a refund of a line older than that is an orphan). 0
    remembers none: every client retry counts as an event of its own, and `verify` judges the
    run by the same rule. Env: FLASHSALE_DEDUPE_WINDOW."""

    consume_mode: Literal["bulk", "stream"] = "bulk"
    """How a worker reads `orders`: `bulk` hands it each fetch of a partition at once (Faust
    still runs the group, commits and changelogs); `stream` is Faust's own per-message agent
    stream with Faust's default consumer settings, the baseline `flashsale bench` compares
    against. Env: FLASHSALE_CONSUME_MODE."""

    fetch_max_wait_ms: int = Field(default=100, ge=0, le=10_000)
    """Bulk mode: longest a worker's fetch waits at the broker for data. Faust fixes 1.5 s,
    which on the embedded broker put about 0.8 s into the median end-to-end latency of the
    demo. Env: FLASHSALE_FETCH_MAX_WAIT_MS."""

    batch_max: int = Field(default=2000, ge=1)
    """Most orders a worker applies in one batch (one state write per partition per batch).
    Env: FLASHSALE_BATCH_MAX."""

    batch_within_s: float = Field(default=0.05, gt=0)
    """Longest a worker waits to fill a batch. Env: FLASHSALE_BATCH_WITHIN_S."""

    state_save_interval_s: float = Field(default=0.5, ge=0)
    """Least time between two changelog writes of one partition's state (0: every batch).
    Outputs are always delivered before a state is written, so a crash in between replays
    from the last written state and re-emits the same decisions. Env:
    FLASHSALE_STATE_SAVE_INTERVAL_S."""

    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    """How a worker commits its work (Faust's words). `at_least_once`: outputs are delivered,
    then the state that claims them is written, then Faust commits the consumed offsets; a
    crash re-emits the decisions since the last written state (`verify` dedupes them by
    source offset). `exactly_once`: each batch's outputs, state records and consumed offsets
    commit in one Kafka transaction per source partition, and the worker and every reader
    read committed records only (docs/streams.md). Needs a broker with transactions: Apache
    Kafka, not the embedded broker. Env: FLASHSALE_PROCESSING_GUARANTEE."""

    pack: int = Field(default=0, ge=0, le=100_000)
    """Producers: events per packed message on `orders` (0: one event per message, the
    default). A packed message carries up to this many events of one partition
    (docs/events.md); `flashsale produce --pack N` sets it. Env: FLASHSALE_PACK."""

    linger_ms: int = Field(default=5, ge=0)
    """Producer linger: how long a batch waits for more orders. Env: FLASHSALE_LINGER_MS."""

    max_batch_bytes: int = Field(default=256 * 1024, ge=1024)
    """Producer batch size per partition. Env: FLASHSALE_MAX_BATCH_BYTES."""

    max_in_flight: int = Field(default=20_000, ge=1)
    """Most unacknowledged orders the producer keeps queued. Env: FLASHSALE_MAX_IN_FLIGHT."""

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """How every Kafka client (producers, workers, verify, record, dashboard, locust) talks to
    the brokers; SASL_* needs `sasl_username` and `sasl_password`, SSL and SASL_SSL verify
    the brokers against `ssl_cafile` (else the system's CAs). Env:
    FLASHSALE_SECURITY_PROTOCOL."""

    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    """SASL mechanism of SASL_PLAINTEXT and SASL_SSL. Env: FLASHSALE_SASL_MECHANISM."""

    sasl_username: str | None = None
    """SASL user. Env: FLASHSALE_SASL_USERNAME."""

    sasl_password: SecretStr | None = None
    """SASL password; shown as `**********` in every repr, log and summary. Env:
    FLASHSALE_SASL_PASSWORD."""

    ssl_cafile: Path | None = None
    """CA certificate (PEM) the brokers' certificates are checked against. Env:
    FLASHSALE_SSL_CAFILE."""

    ssl_certfile: Path | None = None
    """Client certificate (PEM) for brokers that require mutual TLS. Env:
    FLASHSALE_SSL_CERTFILE."""

    ssl_keyfile: Path | None = None
    """Private key (PEM) of `ssl_certfile`. Env: FLASHSALE_SSL_KEYFILE."""

    session_timeout_s: float = Field(default=10.0, gt=0)
    """Consumer-group session timeout of the workers. Kafka accepts 6 s to 30 min by default
    (`group.min.session.timeout.ms`, `group.max.session.timeout.ms`). On the embedded broker
    flashsale starts, 4 s unless set: Tansu holds a JoinGroup for half of it, so it sets how
    fast a worker is ready. Env: FLASHSALE_SESSION_TIMEOUT_S."""

    enable_idempotence: bool = True
    """Idempotent producers (with acks=all): every producer of flashsale, librdkafka,
    aiokafka and the workers' Faust producer. Off on the embedded broker unless set: Tansu
    answers InitProducerId with an error. Env: FLASHSALE_ENABLE_IDEMPOTENCE."""

    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    """Compression codec of every producer (records are compressed per batch). Env:
    FLASHSALE_COMPRESSION."""

    replication_factor: int | None = Field(default=None, ge=1)
    """Replication factor of the topics flashsale creates (its own, the workers' changelog
    and Faust's leader topic). Unset: 3, or the number of brokers in the cluster when it has
    fewer. Env: FLASHSALE_REPLICATION_FACTOR."""

    min_insync_replicas: int | None = Field(default=None, ge=1)
    """`min.insync.replicas` of the topics flashsale creates: with acks=all, how many replicas
    must hold a write before it is acknowledged. Unset: 2 when the replication factor is 3 or
    more, else 1. Env: FLASHSALE_MIN_INSYNC_REPLICAS."""

    client_config: Path | None = None
    """A Kafka client `.properties` file merged into every client (docs/kafka.md): librdkafka
    takes its properties as they are, aiokafka and Faust through a mapping table; properties
    that name a setting above set it unless it is given explicitly. Env:
    FLASHSALE_CLIENT_CONFIG."""

    @model_validator(mode="before")
    @classmethod
    def _from_client_config(cls, data: Any) -> Any:
        """Settings the client-config file names, under the ones given explicitly."""
        if not isinstance(data, dict) or not data.get("client_config"):
            return data
        from_file = settings_from_properties(load_properties(Path(data["client_config"])))
        return {**from_file, **data}

    @model_validator(mode="after")
    def _security_complete(self) -> Settings:
        if self.kafka_nodes == 2:
            raise ValueError("kafka_nodes is 1 or 3: a 2-node quorum survives no failure")
        if self.security_protocol.startswith("SASL_") and not (
            self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs FLASHSALE_SASL_USERNAME "
                "and FLASHSALE_SASL_PASSWORD"
            )
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("ssl_keyfile needs ssl_certfile")
        if (
            self.replication_factor is not None
            and self.min_insync_replicas is not None
            and self.min_insync_replicas > self.replication_factor
        ):
            raise ValueError(
                f"min_insync_replicas {self.min_insync_replicas} is above replication_factor "
                f"{self.replication_factor}: no write could be acknowledged"
            )
        return self

    def for_embedded_broker(self) -> Settings:
        """These settings for the embedded broker flashsale starts: `EMBEDDED_DEFAULTS` for
        every field not set explicitly (by argument, `FLASHSALE_*` or the client config)."""
        update = {k: v for k, v in EMBEDDED_DEFAULTS.items() if k not in self.model_fields_set}
        return self.model_copy(update=update) if update else self

    def client_properties(self) -> Mapping[str, str]:
        """The client-config file's properties (empty without one)."""
        return load_properties(self.client_config) if self.client_config else {}

    def to_env(self) -> dict[str, str]:
        """These settings as the `FLASHSALE_*` variables that hand them to a child process.

        The SASL password is in it in clear (a child needs it): pass it to a process's
        environment, never print or log it.
        """
        return {
            f"FLASHSALE_{name.upper()}": (
                value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            )
            for name, value in self.model_dump().items()
            if value is not None
        }

    def run_topics(self) -> list[str]:
        """flashsale's own topics of a run: orders and every output (not Faust's)."""
        return [
            self.topic_orders,
            self.topic_decisions,
            self.topic_inventory,
            self.topic_dlq,
            self.topic_late,
            self.topic_revenue_second,
            self.topic_revenue_minute,
            self.topic_hot,
        ]

    def state_changelog_topic(self) -> str:
        """The changelog topic of the workers' partition-state table."""
        return f"{self.app_id}-{STATE_TABLE}-changelog"

    def bootstrap_list(self) -> list[str]:
        """The bootstrap servers as a list (requires them to be set)."""
        if not self.bootstrap_servers:
            raise ValueError("no bootstrap servers set")
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]
