"""Kafka clients configured from the settings: security for aiokafka and librdkafka, the
producer codec, and the aiokafka producer every part uses.
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

from flashsale.client_config import (
    Role,
    aiokafka_properties,
    librdkafka_properties,
    warn_unmapped,
)
from flashsale.settings import Settings

__all__ = [
    "aiokafka_producer",
    "aiokafka_security",
    "librdkafka_security",
    "producer_codec",
    "ssl_context",
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
