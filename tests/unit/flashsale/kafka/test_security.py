"""Kafka security settings reach every client, and the SASL password never shows."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from flashsale.kafka import admin, clients, reading
from flashsale.settings import Settings
from producers.sinks.librdkafka import librdkafka_config

SECRET = "hunter2-not-for-logs"


def secure(**changes: Any) -> Settings:
    values: dict[str, Any] = {
        "bootstrap_servers": "kafka1:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "shop",
        "sasl_password": SecretStr(SECRET),
    }
    return Settings(**{**values, **changes})


@pytest.fixture
def captured_ssl(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The arguments `ssl_context` builds its context from (the files need not exist)."""
    seen: dict[str, Any] = {}

    def fake(**kwargs: Any) -> ssl.SSLContext:
        seen.update(kwargs)
        return ssl.create_default_context()

    monkeypatch.setattr(clients, "create_ssl_context", fake)
    return seen


def test_plaintext_adds_nothing_to_any_client() -> None:
    plain = Settings(bootstrap_servers="k:9092")
    assert clients.aiokafka_security(plain) == {}
    assert clients.librdkafka_security(plain) == {}
    assert "security.protocol" not in librdkafka_config(plain, "c")


def test_sasl_ssl_settings_reach_the_aiokafka_producer_and_consumer(
    captured_ssl: dict[str, Any],
) -> None:
    settings = secure(ssl_cafile=Path("/etc/ca.pem"))

    async def build() -> list[Any]:  # aiokafka clients are made inside a running loop
        producer = clients.aiokafka_producer(settings, "test")
        consumer = reading._consumer("kafka1:9093", settings)
        return [producer.client, consumer._client]

    for client in asyncio.run(build()):
        assert client._security_protocol == "SASL_SSL"
        assert client._sasl_mechanism == "SCRAM-SHA-512"
        assert client._sasl_plain_username == "shop"
        assert client._sasl_plain_password == SECRET
        assert isinstance(client._ssl_context, ssl.SSLContext)
    assert captured_ssl == {"cafile": "/etc/ca.pem", "certfile": None, "keyfile": None}


def test_mutual_tls_files_reach_the_ssl_context_and_librdkafka(
    captured_ssl: dict[str, Any],
) -> None:
    settings = Settings(
        bootstrap_servers="k:9093",
        security_protocol="SSL",
        ssl_cafile=Path("ca.pem"),
        ssl_certfile=Path("client.pem"),
        ssl_keyfile=Path("client.key"),
    )
    assert clients.aiokafka_security(settings)["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in clients.aiokafka_security(settings)
    assert captured_ssl == {"cafile": "ca.pem", "certfile": "client.pem", "keyfile": "client.key"}
    config = librdkafka_config(settings, "c")
    assert config["security.protocol"] == "ssl"
    assert config["ssl.ca.location"] == "ca.pem"
    assert config["ssl.certificate.location"] == "client.pem"
    assert config["ssl.key.location"] == "client.key"


def test_the_admin_client_gets_them_too(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class Stop(Exception):
        pass

    def fake_admin(**kwargs: Any) -> Any:
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(admin, "AIOKafkaAdminClient", fake_admin)
    with pytest.raises(Stop):
        asyncio.run(admin.ensure_topics("k:9093", ["t"], 1, secure()))
    assert seen["security_protocol"] == "SASL_SSL"
    assert seen["sasl_plain_password"] == SECRET


def test_without_settings_the_helpers_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASHSALE_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("FLASHSALE_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("FLASHSALE_SASL_USERNAME", "shop")
    monkeypatch.setenv("FLASHSALE_SASL_PASSWORD", SECRET)
    got = clients.aiokafka_security()
    assert got == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "shop",
        "sasl_plain_password": SECRET,
    }


def test_librdkafka_config_carries_sasl_and_confluent_accepts_it() -> None:
    from confluent_kafka import Producer

    config = librdkafka_config(secure(security_protocol="SASL_PLAINTEXT"), "c")
    assert config["security.protocol"] == "sasl_plaintext"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert config["sasl.username"] == "shop"
    assert config["sasl.password"] == SECRET
    Producer(config)  # librdkafka validates every key at construction; no connection yet


def test_faust_gets_sasl_credentials_over_tls(captured_ssl: dict[str, Any]) -> None:
    import faust
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from streams.app import broker_credentials

    creds = broker_credentials(secure())
    assert isinstance(creds, faust.auth.SASLCredentials)
    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert auth["sasl_plain_username"] == "shop"
    assert auth["sasl_plain_password"] == SECRET
    assert isinstance(auth["ssl_context"], ssl.SSLContext)
    assert SECRET not in repr(creds)
    tls = broker_credentials(Settings(bootstrap_servers="k:9093", security_protocol="SSL"))
    assert credentials_to_aiokafka_auth(tls)["security_protocol"] == "SSL"
    assert broker_credentials(Settings(bootstrap_servers="k:9092")) is None


def test_the_worker_app_is_built_with_the_credentials(captured_ssl: dict[str, Any]) -> None:
    from prometheus_client import CollectorRegistry

    from streams.app import create_app

    app = create_app(secure(), CollectorRegistry())
    assert app.conf.broker_credentials.username == "shop"
    assert app.conf.broker_credentials.protocol.value == "SASL_SSL"


def test_the_password_never_shows_in_repr_str_or_json_and_children_still_get_it() -> None:
    settings = secure()
    for shown in (repr(settings), str(settings), settings.model_dump_json(), f"{settings}"):
        assert SECRET not in shown
        assert "**********" in shown
    env = settings.to_env()
    assert env["FLASHSALE_SASL_PASSWORD"] == SECRET  # for a child's environment only
    assert Settings(**{k.removeprefix("FLASHSALE_").lower(): v for k, v in env.items()}) == settings


def test_sasl_without_credentials_is_refused_in_one_line() -> None:
    with pytest.raises(
        ValueError, match="needs FLASHSALE_SASL_USERNAME and FLASHSALE_SASL_PASSWORD"
    ):
        Settings(security_protocol="SASL_SSL", sasl_username="shop")
    with pytest.raises(ValueError, match="'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' or 'SASL_SSL'"):
        Settings(security_protocol="TLS")  # type: ignore[arg-type]


def test_the_secure_listener_takes_a_pkcs8_key_and_hides_its_passwords(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    from flashsale.brokers.apache import SecureListener
    from flashsale.brokers.base import BrokerError
    from tests.tls import make_certs

    certs = make_certs(tmp_path)
    listener = SecureListener(certs.certfile, certs.keyfile, users={"shop": SECRET})
    store = listener.keystore()
    assert store.startswith("-----BEGIN PRIVATE KEY-----")
    assert store.rstrip().endswith("-----END CERTIFICATE-----")
    assert SECRET not in repr(listener)
    # The same key as SEC1 (`BEGIN EC PRIVATE KEY`): Kafka's PEM key store cannot read it.
    key = serialization.load_pem_private_key(certs.keyfile.read_bytes(), None)
    sec1 = tmp_path / "sec1.key"
    sec1.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(BrokerError, match="is not a PKCS#8 key"):
        SecureListener(certs.certfile, sec1, users={}).keystore()


def test_a_refused_login_and_an_untrusted_certificate_name_the_setting_to_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import logging

    from aiokafka.errors import SaslAuthenticationFailed

    from orchestration.cli.errors import ConnectionFailures, refused

    monkeypatch.setenv("FLASHSALE_SASL_USERNAME", "shop")
    monkeypatch.setenv("FLASHSALE_SASL_MECHANISM", "SCRAM-SHA-512")
    failures = ConnectionFailures()
    log = logging.getLogger("aiokafka.test-refusals")
    log.addHandler(failures)
    try:
        assert refused(failures) is None
        log.error('Unable connect to "%s:%s": %s', "kafka1", 9093, OSError("refused"))
        assert refused(failures) is None  # not for the credentials: the generic line
        log.error('Unable connect to "%s:%s": %s', "kafka1", 9093, SaslAuthenticationFailed())
        assert refused(failures) == (
            "Kafka at kafka1:9093 refused the SCRAM-SHA-512 login of user 'shop': "
            "authentication failed (check FLASHSALE_SASL_USERNAME and FLASHSALE_SASL_PASSWORD)"
        )
        bad = ssl.SSLCertVerificationError("certificate verify failed")
        bad.verify_message = "self-signed certificate"
        log.error('Unable connect to "%s:%s": %s', "kafka1", 9093, bad)
        assert refused(failures) == (
            "the TLS certificate of Kafka at kafka1:9093 is not trusted: self-signed "
            "certificate (check FLASHSALE_SSL_CAFILE: the CA that signed the brokers' "
            "certificates)"
        )
    finally:
        log.removeHandler(failures)
