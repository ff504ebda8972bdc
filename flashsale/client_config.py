"""A Kafka client `.properties` file (`--client-config`), read once and mapped to every client.

librdkafka (confluent-kafka) clients take the file's properties as they are, over flashsale's
own; aiokafka clients and Faust take them through the tables below. Properties that name a
flashsale setting (bootstrap servers, security, linger, batch size, compression, idempotence,
session timeout) set that setting unless it was given explicitly (flag or `FLASHSALE_*`), so
each one reaches every client, librdkafka, aiokafka and Faust alike.

Kafka's property names and meanings: https://kafka.apache.org/documentation/#configuration
(producer, consumer and admin configs), librdkafka's:
https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from jproperties import ParseError, Properties

__all__ = [
    "AIOKAFKA_PROPERTIES",
    "FAUST_PROPERTIES",
    "SETTINGS_PROPERTIES",
    "ClientConfigError",
    "Role",
    "aiokafka_properties",
    "faust_properties",
    "librdkafka_properties",
    "load_properties",
    "parse_jaas",
    "settings_from_properties",
    "unmapped",
    "warn_unmapped",
]

#: Which aiokafka client a property is for.
Role = Literal["producer", "consumer", "admin"]
_ALL: frozenset[Role] = frozenset({"producer", "consumer", "admin"})
_PRODUCER: frozenset[Role] = frozenset({"producer"})
_CONSUMER: frozenset[Role] = frozenset({"consumer"})
_CLIENTS: frozenset[Role] = frozenset({"producer", "consumer"})


class ClientConfigError(ValueError):
    """The client-config file cannot be read or is not a valid `.properties` file."""


def _int(value: str) -> int:
    return int(value.strip())


def _bool(value: str) -> bool:
    text = value.strip().lower()
    if text not in ("true", "false"):
        raise ValueError(f"{value!r} is not true or false")
    return text == "true"


def _ms_to_s(value: str) -> float:
    return _int(value) / 1000.0


def _upper(value: str) -> str:
    return value.strip().upper()


def _acks(value: str) -> int | str:
    text = value.strip().lower()
    return "all" if text in ("all", "-1") else int(text)


def _compression(value: str) -> str:
    text = value.strip().lower()
    return "none" if text in ("", "none", "uncompressed") else text


#: Properties that set a flashsale setting: property -> (setting, how the value converts).
SETTINGS_PROPERTIES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "bootstrap.servers": ("bootstrap_servers", str.strip),
    "security.protocol": ("security_protocol", _upper),
    "sasl.mechanism": ("sasl_mechanism", _upper),
    "sasl.username": ("sasl_username", str.strip),
    "sasl.password": ("sasl_password", str),
    "ssl.ca.location": ("ssl_cafile", str.strip),
    "ssl.certificate.location": ("ssl_certfile", str.strip),
    "ssl.key.location": ("ssl_keyfile", str.strip),
    "linger.ms": ("linger_ms", _int),
    "batch.size": ("max_batch_bytes", _int),
    "compression.type": ("compression", _compression),
    "enable.idempotence": ("enable_idempotence", _bool),
    "session.timeout.ms": ("session_timeout_s", _ms_to_s),
}

#: Properties passed to aiokafka clients: property -> (keyword, conversion, clients taking it).
AIOKAFKA_PROPERTIES: dict[str, tuple[str, Callable[[str], Any], frozenset[Role]]] = {
    "client.id": ("client_id", str.strip, _ALL),
    "request.timeout.ms": ("request_timeout_ms", _int, _ALL),
    "metadata.max.age.ms": ("metadata_max_age_ms", _int, _ALL),
    "retry.backoff.ms": ("retry_backoff_ms", _int, _ALL),
    "connections.max.idle.ms": ("connections_max_idle_ms", _int, _ALL),
    "acks": ("acks", _acks, _PRODUCER),
    "max.request.size": ("max_request_size", _int, _PRODUCER),
    "transaction.timeout.ms": ("transaction_timeout_ms", _int, _PRODUCER),
    "heartbeat.interval.ms": ("heartbeat_interval_ms", _int, _CONSUMER),
    "max.poll.interval.ms": ("max_poll_interval_ms", _int, _CONSUMER),
    "max.poll.records": ("max_poll_records", _int, _CONSUMER),
    "fetch.max.bytes": ("fetch_max_bytes", _int, _CONSUMER),
    "fetch.min.bytes": ("fetch_min_bytes", _int, _CONSUMER),
    "fetch.max.wait.ms": ("fetch_max_wait_ms", _int, _CONSUMER),
    "max.partition.fetch.bytes": ("max_partition_fetch_bytes", _int, _CONSUMER),
    "isolation.level": ("isolation_level", str.strip, _CONSUMER),
    "auto.offset.reset": ("auto_offset_reset", str.strip, _CONSUMER),
    "check.crcs": ("check_crcs", _bool, _CONSUMER),
    "rebalance.timeout.ms": ("rebalance_timeout_ms", _int, _CONSUMER),
}

#: Properties the worker's Faust app takes as Faust settings (its consumer and producer are
#: built by Faust); the producer also takes every producer property of `AIOKAFKA_PROPERTIES`.
FAUST_PROPERTIES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "client.id": ("broker_client_id", str.strip),
    "request.timeout.ms": ("broker_request_timeout", _ms_to_s),
    "heartbeat.interval.ms": ("broker_heartbeat_interval", _ms_to_s),
    "max.poll.interval.ms": ("broker_max_poll_interval", _ms_to_s),
    "max.poll.records": ("broker_max_poll_records", _int),
    "rebalance.timeout.ms": ("broker_rebalance_timeout", _ms_to_s),
    "max.partition.fetch.bytes": ("consumer_max_fetch_size", _int),
    "metadata.max.age.ms": ("consumer_metadata_max_age_ms", _int),
    "connections.max.idle.ms": ("consumer_connections_max_idle_ms", _int),
    "check.crcs": ("broker_check_crcs", _bool),
}

#: Read and turned into `sasl_username` / `sasl_password`; librdkafka has no such property.
_JAAS = "sasl.jaas.config"
_JAAS_MODULE = re.compile(r"^\s*[\w.$]*(PlainLoginModule|ScramLoginModule)\s+\w+\s*(.*?);?\s*$")
_JAAS_OPTION = re.compile(r'(\w+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s;]+)')


def parse_jaas(value: str) -> tuple[str | None, str | None]:
    """Username and password of a PlainLoginModule or ScramLoginModule `sasl.jaas.config`."""
    match = _JAAS_MODULE.match(value)
    if match is None:
        raise ClientConfigError(
            "sasl.jaas.config: only PlainLoginModule and ScramLoginModule lines are understood"
        )
    options: dict[str, str] = {}
    for name, raw in _JAAS_OPTION.findall(match.group(2)):
        text = raw[1:-1] if raw.startswith('"') else raw
        options[name] = re.sub(r"\\(.)", r"\1", text)
    return options.get("username"), options.get("password")


@functools.cache
def load_properties(path: Path) -> Mapping[str, str]:
    """The properties of `path` (read once per process); `ClientConfigError` in one line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ClientConfigError(f"cannot read client config {path}: {exc.strerror}") from None
    props = Properties()
    try:
        props.load(data, "utf-8")
    except ParseError as exc:
        what = exc.message or "bad escape sequence"
        raise ClientConfigError(
            f"client config {path}, line {exc.line_number}: {what}; not a .properties file"
        ) from None
    except UnicodeDecodeError as exc:
        raise ClientConfigError(
            f"client config {path}: not UTF-8 text (byte {exc.start}); not a .properties file"
        ) from None
    out = {str(k).strip(): str(v) for k, v in props.properties.items()}
    if _JAAS in out:
        parse_jaas(out[_JAAS])  # fail at load, not at the first SASL connection
    return out


def settings_from_properties(props: Mapping[str, str]) -> dict[str, Any]:
    """The flashsale settings the properties set (converted; a bad value raises one line)."""
    out: dict[str, Any] = {}
    for key, (field, convert) in SETTINGS_PROPERTIES.items():
        if key in props:
            out[field] = _convert(key, props[key], convert)
    if _JAAS in props:
        username, password = parse_jaas(props[_JAAS])
        if username is not None:
            out.setdefault("sasl_username", username)
        if password is not None:
            out.setdefault("sasl_password", password)
    return out


def _convert(key: str, value: str, convert: Callable[[str], Any]) -> Any:
    try:
        return convert(value)
    except ValueError:
        raise ClientConfigError(f"client config: {key}={value!r} is not a valid value") from None


def aiokafka_properties(props: Mapping[str, str], role: Role) -> dict[str, Any]:
    """The aiokafka keyword arguments the properties give one kind of client."""
    return {
        kwarg: _convert(key, props[key], convert)
        for key, (kwarg, convert, roles) in AIOKAFKA_PROPERTIES.items()
        if key in props and role in roles
    }


def faust_properties(props: Mapping[str, str]) -> dict[str, Any]:
    """The Faust settings the properties give the worker's app."""
    return {
        setting: _convert(key, props[key], convert)
        for key, (setting, convert) in FAUST_PROPERTIES.items()
        if key in props
    }


def librdkafka_properties(props: Mapping[str, str]) -> dict[str, str]:
    """The properties as librdkafka takes them: as they are, without the Java-only JAAS line
    (its username and password reach librdkafka as `sasl.username` / `sasl.password`)."""
    return {k: v for k, v in props.items() if k != _JAAS}


def unmapped(props: Mapping[str, str]) -> list[str]:
    """Properties aiokafka (and so the worker's Faust app) has no equivalent for."""
    known = SETTINGS_PROPERTIES.keys() | AIOKAFKA_PROPERTIES.keys() | {_JAAS}
    return sorted(k for k in props if k not in known)


_warned: set[Path] = set()


def warn_unmapped(path: Path, props: Mapping[str, str]) -> None:
    """One warning line, once per process and file, naming the properties aiokafka ignores."""
    keys = unmapped(props)
    if keys and path not in _warned:
        _warned.add(path)
        print(
            f"flashsale: warning: {path}: no aiokafka equivalent, ignored by the aiokafka and "
            f"Faust clients (librdkafka takes them): {', '.join(keys)}",
            file=sys.stderr,
            flush=True,
        )
