"""The second peer figure for `flashsale bench`: Quix Streams summing paid revenue per SKU.

Run as `python -m benchmarks.quix_flow BOOTSTRAP TOPIC EVENTS`: a Quix Streams application
(a new consumer group, from the earliest offset) reads the topic, decodes every order with the
same `paid_cents` as the Bytewax peer, and keeps each SKU's paid cents in Quix's own state
(RocksDB, changelogged to Kafka: its defaults). The orders topic is keyed by SKU, so the state
of a message's key is its SKU's. It stops after EVENTS outputs (one per message) and prints one
JSON line: events read, the cents per SKU, seconds (start-up and shutdown included, as for
Bytewax). Quix Streams is optional (`pip install -e '.[peers]'`) and needs a real Kafka: the
bench runs it on Apache Kafka only.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from typing import Any

import orjson

from benchmarks.bytewax_flow import paid_cents

__all__ = ["run"]

#: Seconds without a new message after which the application stops even short of EVENTS.
IDLE_TIMEOUT_S = 30.0


def run(bootstrap: str, topic: str, events: int) -> dict[str, Any]:
    """Build and run the application in this process; what it read, summed and how long."""
    from quixstreams import Application, State

    revenue: dict[str, int] = {}
    seen = 0

    def decode(value: bytes, key: str, timestamp: int, headers: Any) -> int:
        nonlocal seen
        seen += 1
        sku, cents = paid_cents(value)
        if sku != key:
            raise ValueError(f"message keyed {key!r} is about SKU {sku!r}")
        return cents

    def add(cents: int, state: State) -> int:
        total = int(state.get("paid_cents", 0)) + cents
        state.set("paid_cents", total)
        return total

    def keep(total: int, key: str, timestamp: int, headers: Any) -> None:
        revenue[key] = total

    with tempfile.TemporaryDirectory(prefix="flashsale-quix-") as state_dir:
        app = Application(
            broker_address=bootstrap,
            consumer_group=f"flashsale-quix-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            state_dir=state_dir,
            loglevel="WARNING",
        )
        orders = app.topic(topic, key_deserializer="str", value_deserializer="bytes")
        sdf = app.dataframe(orders)
        sdf = sdf.apply(decode, metadata=True)
        sdf = sdf.apply(add, stateful=True)
        sdf = sdf.update(keep, metadata=True)
        started = time.perf_counter()
        app.run(count=events, timeout=IDLE_TIMEOUT_S, collect=False)
        seconds = time.perf_counter() - started
    return {"events": seen, "revenue": revenue, "seconds": seconds}


if __name__ == "__main__":
    print(orjson.dumps(run(sys.argv[1], sys.argv[2], int(sys.argv[3]))).decode())
