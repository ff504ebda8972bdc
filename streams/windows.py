"""Event-time tumbling windows of one partition: GMV and counts per second and per minute.

Per partition, in offset order, for every valid event that is not a restock or a duplicate:

1. the watermark is the newest event time seen so far minus the grace (`state.grace_ms`);
   an event whose time is below it is *late*: counted, sent to `orders-late`, kept out of the
   windows (its lifecycle rules still apply: it still reserves stock or counts as paid GMV);
2. the newest event time advances;
3. an event on time adds to its 1 s and 60 s windows: `accepted` lines count as accepted
   (and their units count for their SKU in the minute: the hot products), `paid` lines count
   as paid with their amount in GMV; other outcomes add nothing;
4. every window whose end is at or below the new watermark closes and is published.

Everything lives in the partition's state record, so windows survive restarts and follow a
partition through a rebalance; a batch replayed after a crash publishes the same closed
windows again (consumers and `verify` key them by partition, size and start).
"""

from __future__ import annotations

from typing import Final

from flashsale.counters import ACCEPTED, PAID
from flashsale.events import OrderEvent
from streams.state import PartitionState

__all__ = ["SIZES_S", "TOP_N", "Window", "apply_window", "close_windows", "top_skus"]

#: Window sizes in seconds: per second and per minute.
SIZES_S: Final = (1, 60)

#: Hot products: the SKUs with the most units in a minute, this many.
TOP_N: Final = 10

#: A closed window: (size_s, start_ms, accepted, paid, gmv_cents, top) where `top` lists the
#: minute's hot products as (sku, units) pairs (empty for 1 s windows).
Window = tuple[int, int, int, int, int, list[tuple[str, int]]]


def top_skus(units: dict[str, int], n: int = TOP_N) -> list[tuple[str, int]]:
    """The `n` SKUs with the most units, most first, ties by SKU."""
    return sorted(units.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def apply_window(
    state: PartitionState, event: OrderEvent, outcome: str, amount: int
) -> tuple[bool, list[Window]]:
    """Count one decided event into its windows; return (late?, the windows it closed)."""
    ts = event.event_ts_ms
    newest = state.max_event_ms
    late = newest >= 0 and ts < newest - state.grace_ms
    if late:
        state.late += 1
        return True, []
    windows = state.windows
    if outcome in (ACCEPTED, PAID):
        for size in SIZES_S:
            size_ms = size * 1000
            key = f"{size}:{ts - ts % size_ms}"
            counts = windows.get(key)
            if counts is None:
                counts = windows[key] = [0, 0, 0]
            if outcome == ACCEPTED:
                counts[0] += 1
                if size == 60:
                    minute = state.minute_units.setdefault(str(ts - ts % size_ms), {})
                    minute[event.sku] = minute.get(event.sku, 0) + event.quantity
            else:
                counts[1] += 1
                counts[2] += amount
    if ts <= newest:
        return False, []
    state.max_event_ms = ts
    watermark = ts - state.grace_ms
    # Every window ends on a whole second: none can close until the watermark crosses one,
    # so most events skip the scan (this runs once per event).
    if newest >= 0 and watermark // 1000 == (newest - state.grace_ms) // 1000:
        return False, []
    return False, close_windows(state, watermark)


def close_windows(state: PartitionState, watermark: int) -> list[Window]:
    """Remove and return, sorted, every open window ending at or below `watermark`."""
    windows = state.windows
    closed: list[Window] = []
    for key in list(windows):
        size_text, start_text = key.split(":")
        size, start = int(size_text), int(start_text)
        if start + size * 1000 <= watermark:
            accepted, paid, gmv = windows.pop(key)
            top = top_skus(state.minute_units.pop(str(start), {})) if size == 60 else []
            closed.append((size, start, accepted, paid, gmv, top))
    closed.sort()
    return closed
