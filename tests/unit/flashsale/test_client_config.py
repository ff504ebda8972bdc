"""Defaults for a stock Kafka, the embedded broker's, and `--client-config` reaching clients."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

import flashsale.client_config as cc
from flashsale.brokers.base import BrokerError
from flashsale.brokers.local import settings_on
from flashsale.kafka import admin, clients
from flashsale.settings import STATE_RECORD_MAX_BYTES, Settings
from producers.sinks.librdkafka import librdkafka_config, librdkafka_producer

SECRET = "pa55-from-the-file"
JAAS = (
    "org.apache.kafka.common.security.scram.ScramLoginModule required "
    f'username="shop" password="{SECRET}";'
)


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLASHSALE_CLIENT_CONFIG", "FLASHSALE_SESSION_TIMEOUT_S", "FLASHSALE_LINGER_MS"):
        monkeypatch.delenv(name, raising=False)
    cc.load_properties.cache_clear()
    cc._warned.clear()


def props_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "client.properties"
    path.write_text(text)
    return path


def test_defaults_suit_a_stock_kafka() -> None:
    s = Settings()
    assert s.session_timeout_s == 10.0  # Kafka's group.min.session.timeout.ms is 6 s
    assert s.enable_idempotence is True
    assert s.compression == "none"
    assert s.replication_factor is None and s.min_insync_replicas is None


def test_embedded_defaults_apply_only_to_fields_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    embedded = Settings().for_embedded_broker()
    assert (embedded.session_timeout_s, embedded.enable_idempotence) == (4.0, False)
    monkeypatch.setenv("FLASHSALE_SESSION_TIMEOUT_S", "7")
    from_env = Settings(enable_idempotence=True).for_embedded_broker()
    assert (from_env.session_timeout_s, from_env.enable_idempotence) == (7.0, True)


def test_settings_on_applies_embedded_defaults_only_without_given_servers() -> None:
    ours = settings_on(Settings(), "127.0.0.1:1")
    assert ours.bootstrap_servers == "127.0.0.1:1" and ours.session_timeout_s == 4.0
    given = settings_on(Settings(bootstrap_servers="k:9092"), "k:9092")
    assert given.session_timeout_s == 10.0 and given.enable_idempotence
    # What a child process reads back keeps the resolved values.
    assert ours.to_env()["FLASHSALE_ENABLE_IDEMPOTENCE"] == "False"
    assert Settings(**{"enable_idempotence": "False"}).enable_idempotence is False


@pytest.mark.parametrize(
    ("brokers", "rf", "isr"),
    [(1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 3, 2)],
)
def test_replication_derives_from_the_broker_count(brokers: int, rf: int, isr: int) -> None:
    got = admin.resolve_replication(Settings(), brokers)
    assert (got.replication_factor, got.min_insync_replicas) == (rf, isr)


def test_explicit_replication_above_the_brokers_is_one_clear_error() -> None:
    with pytest.raises(
        BrokerError, match="replication factor 3 needs 3 brokers; the cluster has 1"
    ):
        admin.resolve_replication(Settings(replication_factor=3), 1)
    with pytest.raises(BrokerError, match=r"min.insync.replicas 2 is above"):
        admin.resolve_replication(Settings(min_insync_replicas=2), 1)
    with pytest.raises(ValueError, match="above replication_factor"):
        Settings(replication_factor=2, min_insync_replicas=3)


def test_ensure_run_topics_makes_faust_topics_with_their_configs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created: list[Any] = []

    class FakeAdmin:
        def __init__(self, **kwargs: Any) -> None:
            pass

        async def start(self) -> None:
            pass

        async def close(self) -> None:
            pass

        async def describe_cluster(self) -> dict[str, Any]:
            return {"brokers": [{"node_id": i} for i in range(3)]}

        async def list_topics(self) -> list[str]:
            return []

        async def create_topics(self, topics: list[Any]) -> None:
            created.extend(topics)

    monkeypatch.setattr(admin, "AIOKafkaAdminClient", FakeAdmin)
    s = Settings(bootstrap_servers="k:9092", partitions=6)
    resolved = asyncio.run(admin.ensure_run_topics(s, "k:9092"))
    assert (resolved.replication_factor, resolved.min_insync_replicas) == (3, 2)
    by_name = {t.name: t for t in created}
    assert len(by_name) == 10
    assert all(t.replication_factor == 3 for t in created)
    assert all(t.topic_configs["min.insync.replicas"] == "2" for t in created)
    changelog = by_name[s.state_changelog_topic()]
    assert changelog.num_partitions == 6
    assert changelog.topic_configs["cleanup.policy"] == "compact"
    assert int(changelog.topic_configs["max.message.bytes"]) > STATE_RECORD_MAX_BYTES
    assert by_name["flashsale-__assignor-__leader"].num_partitions == 1
    assert "cleanup.policy" not in by_name[s.topic_orders].topic_configs


def test_idempotence_and_compression_reach_every_producer() -> None:
    on = Settings(bootstrap_servers="k:9092", compression="zstd")
    off = on.for_embedded_broker()

    async def aiokafka_flags(s: Settings) -> tuple[bool, Any]:
        producer = clients.aiokafka_producer(s, "t")
        return producer._txn_manager is not None, producer._compression_type

    assert asyncio.run(aiokafka_flags(on)) == (True, "zstd")
    assert asyncio.run(aiokafka_flags(off)) == (False, "zstd")
    conf = librdkafka_config(on, "c")
    assert (conf["enable.idempotence"], conf["acks"], conf["compression.type"]) == (
        True,
        "all",
        "zstd",
    )
    assert librdkafka_config(off, "c")["enable.idempotence"] is False
    Producer(conf)  # librdkafka accepts the keys


def test_the_worker_faust_producer_is_idempotent_and_compressed() -> None:
    from streams.app import create_app

    s = Settings(bootstrap_servers="k:9092", compression="lz4", replication_factor=3)
    app = create_app(s, CollectorRegistry())
    assert app.conf.topic_replication_factor == 3
    assert app.conf.broker_session_timeout == 10.0

    async def built() -> Any:
        return app.producer._new_producer()

    producer = asyncio.run(built())
    assert producer._txn_manager is not None  # idempotence on
    assert producer._compression_type == "lz4"
    embedded = create_app(s.for_embedded_broker(), CollectorRegistry())
    assert embedded.producer._settings_extra()["enable_idempotence"] is False


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_aiokafka_can_compress_with_every_codec(codec: str) -> None:
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    codes = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
    builder = DefaultRecordBatchBuilder(2, codes[codec], False, -1, -1, -1, 1 << 20)
    builder.append(0, timestamp=None, key=b"k", value=b"v" * 1000, headers=[])
    assert len(builder.build()) < 1000


def test_jaas_config_gives_username_and_password() -> None:
    assert cc.parse_jaas(JAAS) == ("shop", SECRET)
    plain = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username=u password="a\\"b";'
    )
    assert cc.parse_jaas(plain) == ("u", 'a"b')
    with pytest.raises(cc.ClientConfigError, match="PlainLoginModule and ScramLoginModule"):
        cc.parse_jaas("com.sun.security.auth.module.Krb5LoginModule required;")


def test_file_settings_sit_under_explicit_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = props_file(
        tmp_path,
        "bootstrap.servers=b1:9093,b2:9093\nsecurity.protocol=sasl_ssl\n"
        "sasl.mechanism=SCRAM-SHA-512\n"
        f"sasl.jaas.config={JAAS}\nlinger.ms=20\nsession.timeout.ms=45000\n"
        "enable.idempotence=false\ncompression.type=snappy\n",
    )
    monkeypatch.setenv("FLASHSALE_LINGER_MS", "7")
    s = Settings(client_config=path)
    assert s.bootstrap_list() == ["b1:9093", "b2:9093"]
    assert (s.security_protocol, s.sasl_mechanism, s.sasl_username) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
        "shop",
    )
    assert s.sasl_password is not None and s.sasl_password.get_secret_value() == SECRET
    assert s.linger_ms == 7  # the environment wins over the file
    assert (s.session_timeout_s, s.enable_idempotence, s.compression) == (45.0, False, "snappy")
    # Set by the file: the embedded broker's defaults leave them alone.
    assert s.for_embedded_broker().session_timeout_s == 45.0
    assert SECRET not in repr(s) and SECRET not in str(s)


def test_aiokafka_clients_get_the_mapped_properties_per_kind(tmp_path: Path) -> None:
    path = props_file(
        tmp_path,
        "client.id=shop-1\nacks=1\nrequest.timeout.ms=5000\nisolation.level=read_committed\n"
        "max.partition.fetch.bytes=1024\nheartbeat.interval.ms=900\n",
    )
    s = Settings(bootstrap_servers="k:9092", client_config=path)
    producer = clients.aiokafka_security(s, "producer", client_id="ours", acks="all")
    assert producer == {"client_id": "shop-1", "acks": 1, "request_timeout_ms": 5000}
    consumer = clients.aiokafka_security(s, "consumer", max_partition_fetch_bytes=4096)
    assert consumer["max_partition_fetch_bytes"] == 1024
    assert consumer["isolation_level"] == "read_committed"
    assert consumer["heartbeat_interval_ms"] == 900 and "acks" not in consumer
    admin = clients.aiokafka_security(s, "admin")
    assert admin == {"client_id": "shop-1", "request_timeout_ms": 5000}


def test_librdkafka_takes_the_file_as_it_is_over_our_defaults(tmp_path: Path) -> None:
    path = props_file(
        tmp_path,
        f"linger.ms=50\nsocket.keepalive.enable=true\nsasl.jaas.config={JAAS}\n"
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n",
    )
    s = Settings(bootstrap_servers="k:9092", client_config=path)
    conf = librdkafka_config(s, "c")
    assert conf["linger.ms"] == "50"
    assert conf["socket.keepalive.enable"] == "true"
    assert "sasl.jaas.config" not in conf
    assert (conf["sasl.username"], conf["sasl.password"]) == ("shop", SECRET)
    Producer(conf)


def test_a_property_librdkafka_rejects_is_a_client_config_error(tmp_path: Path) -> None:
    path = props_file(tmp_path, "buffer.memory=1000\n")
    s = Settings(bootstrap_servers="k:9092", client_config=path)
    with pytest.raises(cc.ClientConfigError, match=r'librdkafka rejects .*"buffer.memory"'):
        librdkafka_producer(Producer, s, librdkafka_config(s, "c"))


def test_the_worker_app_takes_the_file_through_faust_settings(tmp_path: Path) -> None:
    from streams.app import create_app

    path = props_file(tmp_path, "heartbeat.interval.ms=1500\nmax.request.size=2000000\n")
    app = create_app(Settings(bootstrap_servers="k:9092", client_config=path), CollectorRegistry())
    assert app.conf.broker_heartbeat_interval == 1.5
    assert app.producer._settings_extra()["max_request_size"] == 2_000_000


def test_unmapped_keys_warn_once_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = props_file(tmp_path, "ssl.truststore.location=/t.jks\nbuffer.memory=1\nacks=all\n")
    s = Settings(bootstrap_servers="k:9092", client_config=path)
    clients.aiokafka_security(s, "producer")
    clients.aiokafka_security(s, "consumer")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "buffer.memory, ssl.truststore.location" in err and "acks" not in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a=\\u12\n", "line 1: bad escape sequence"),
        ("linger.ms=soon\n", "linger.ms='soon' is not a valid value"),
        ("enable.idempotence=maybe\n", "enable.idempotence='maybe'"),
    ],
)
def test_a_malformed_file_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = props_file(tmp_path, text)
    with pytest.raises(ValueError, match=message):
        Settings(client_config=path)


def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot read client config .*missing"):
        Settings(client_config=tmp_path / "missing")


def test_topics_that_exist_keep_their_replicas_when_a_broker_is_down() -> None:
    # A worker restarted while one of three brokers is down: nothing to create, so the
    # two brokers it sees do not refuse the replication factor its run was made with.
    got = admin.resolve_replication(Settings(replication_factor=3), 2, creating=False)
    assert (got.replication_factor, got.min_insync_replicas) == (3, 2)
    with pytest.raises(BrokerError, match="replication factor 3 needs 3 brokers"):
        admin.resolve_replication(Settings(replication_factor=3), 2, creating=True)
