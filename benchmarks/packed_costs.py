"""Where a packed message's time goes, without Kafka: `python -m benchmarks.packed_costs [N]`.

Generates the bench stream's first N events (default 400,000) as packed messages of 1,000
events, then times `decode_packed` and `apply_packed` on them in this process, per event, with the
garbage collector tuned as the worker tunes it.
docs/performance.md quotes it to explain the `process_packed` stage.
"""

from __future__ import annotations

import gc
import sys
import time

from benchmarks.bench import BENCH_SCENARIO, PACK
from flashsale.events import decode_packed
from producers.generator import Generator
from streams.packed import apply_packed
from streams.rules import apply_event
from streams.state import PartitionState

PARTITIONS = 6


def main(n: int) -> None:
    """Time decoding and applying the first `n` events as packed messages; print µs per event."""
    generator = Generator(BENCH_SCENARIO)
    messages: dict[int, list[bytes]] = {}
    for block in generator.blocks(None, n, 0.1):
        for partition, value, _ in block.packed(PACK, PARTITIONS, time.time_ns()):
            messages.setdefault(partition, []).append(value)
    states = {p: PartitionState(partition=p, window=5000) for p in range(PARTITIONS)}
    table = generator._sku_partitions(PARTITIONS)
    index = {s.sku: i for i, s in enumerate(generator.catalog.skus)}
    for restock in generator.restocks():
        apply_event(states[int(table[index[restock.sku]])], restock)
    # The collector as the worker sets it (`run_worker` in streams/app.py): what exists now is
    # never scanned.
    gc.freeze()
    gc.set_threshold(100_000, 50, 1_000)
    events = 0
    decoding = applying = 0.0
    for partition, values in messages.items():
        for value in values:
            started = time.perf_counter()
            batch = decode_packed(value)
            decoded = time.perf_counter()
            apply_packed(states[partition], batch)
            applying += time.perf_counter() - decoded
            decoding += decoded - started
            events += batch.n
    total = decoding + applying
    print(
        f"{events:,} events in messages of {PACK}: decode {decoding / events * 1e6:.2f} µs, "
        f"apply {applying / events * 1e6:.2f} µs per event; {events / total:,.0f} events/s"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 400_000)
