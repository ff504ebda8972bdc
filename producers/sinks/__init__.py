"""Where generated events go: Kafka through aiokafka (`kafka`) or librdkafka (`librdkafka`), or
a JSON-lines file (`jsonl`).

Every sink takes ready-made keys and values in batches (one generator block at a time),
queues them without awaiting each message, bounds what is in flight, and counts what the
broker acknowledged (`base`).
"""

from __future__ import annotations

from pathlib import Path

from flashsale.settings import Settings
from producers.metrics import ProducerMetrics
from producers.sinks.base import ProduceStats, Sink
from producers.sinks.jsonl import JsonlSink
from producers.sinks.kafka import OrderEmitter
from producers.sinks.librdkafka import ConfluentSink

__all__ = ["ConfluentSink", "JsonlSink", "OrderEmitter", "ProduceStats", "Sink", "open_sink"]


def open_sink(
    spec: str,
    client: str,
    settings: Settings,
    metrics: ProducerMetrics | None = None,
    ack_log: Path | None = None,
) -> Sink:
    """`kafka` (with `client` aiokafka or confluent) or `jsonl:PATH`; `ack_log`: the file a
    Kafka sink logs each acknowledged write to (`flashsale.acklog`)."""
    if settings.pack and (spec != "kafka" or client != "aiokafka"):
        raise ValueError("--pack needs the kafka sink with --client aiokafka")
    if ack_log is not None and spec != "kafka":
        raise ValueError("--ack-log needs the kafka sink")
    if spec.startswith("jsonl:"):
        return JsonlSink(Path(spec.removeprefix("jsonl:")), metrics)
    if spec != "kafka":
        raise ValueError(f"unknown sink {spec!r}; use kafka or jsonl:PATH")
    if client == "confluent":
        return ConfluentSink(settings, metrics, ack_log)
    if client == "aiokafka":
        return OrderEmitter(settings, metrics, ack_log)
    raise ValueError(f"unknown client {client!r}; use aiokafka or confluent")
