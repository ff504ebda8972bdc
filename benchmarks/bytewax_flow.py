"""The peer figure for `flashsale bench`: a Bytewax dataflow summing paid revenue per SKU.

Run as `python -m benchmarks.bytewax_flow BOOTSTRAP TOPIC`: it reads the topic from the
beginning to its end (Bytewax's `KafkaSource` with `tail=False`), decodes every order with
orjson, sums paid amounts per SKU, and prints one JSON line: events read, the cents per SKU
(which the bench checks against the bare loop's sums), seconds.
Bytewax is optional (`pip install -e '.[peers]'`); the bench skips this stage without it.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson

__all__ = ["paid_cents", "run"]


def paid_cents(value: bytes) -> tuple[str, int]:
    """(sku, cents): the line total of a `paid` event, 0 for any other step."""
    doc = orjson.loads(value)
    if doc["type"] == "paid":
        return doc["sku"], doc["quantity"] * doc["unit_price_cents"]
    return doc["sku"], 0


def run(bootstrap: str, topic: str) -> dict[str, Any]:
    """Build and run the dataflow in this process; what it read, summed and how long it took."""
    import bytewax.operators as op
    from bytewax.connectors.kafka import KafkaSource
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, run_main

    events = 0

    def decode(msg: Any) -> tuple[str, int]:
        nonlocal events
        events += 1
        return paid_cents(msg.value)

    flow = Dataflow("flashsale_per_sku_revenue")
    messages = op.input("orders", flow, KafkaSource([bootstrap], [topic], tail=False))
    keyed = op.map("decode", messages, decode)
    totals = op.reduce_final("sum", keyed, lambda total, cents: total + cents)
    out: list[tuple[str, int]] = []
    op.output("out", totals, TestingSink(out))
    started = time.perf_counter()
    run_main(flow)
    seconds = time.perf_counter() - started
    return {"events": events, "revenue": dict(out), "seconds": seconds}


if __name__ == "__main__":
    print(orjson.dumps(run(sys.argv[1], sys.argv[2])).decode())
