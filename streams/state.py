"""Per-partition worker state and the order rules, as plain functions (no Faust here).

Everything a partition's processing changes lives in one `PartitionState` record: the source
offset last applied, GMV and counts, stock of the partition's SKUs, and the window of order
ids already seen. One changelog write carries all of it, so a worker killed at any moment
recovers a state that is consistent with exactly one source offset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from flashsale.events import OrderEvent

__all__ = [
    "ACCEPTED",
    "DUPLICATE",
    "REJECTED_OVERSELL",
    "RESTOCKED",
    "PartitionState",
    "apply_event",
]

ACCEPTED: Final = "accepted"
REJECTED_OVERSELL: Final = "rejected_oversell"
DUPLICATE: Final = "duplicate"
RESTOCKED: Final = "restocked"


@dataclass(slots=True)
class PartitionState:
    """The aggregates, stock and dedupe window of one source partition."""

    partition: int
    window: int
    last_offset: int = -1
    gmv_cents: int = 0
    accepted: int = 0
    rejected_oversell: int = 0
    duplicates: int = 0
    restocks: int = 0
    dlq: int = 0
    gmv_by_country: dict[str, int] = field(default_factory=dict)
    gmv_by_category: dict[str, int] = field(default_factory=dict)
    stock: dict[str, int] = field(default_factory=dict)
    sold_out: list[str] = field(default_factory=list)
    # Insertion-ordered: the oldest id is evicted first once `window` ids are held.
    seen: dict[str, None] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """Serialise for the changelog."""
        return orjson.dumps(
            {
                "partition": self.partition,
                "window": self.window,
                "last_offset": self.last_offset,
                "gmv_cents": self.gmv_cents,
                "accepted": self.accepted,
                "rejected_oversell": self.rejected_oversell,
                "duplicates": self.duplicates,
                "restocks": self.restocks,
                "dlq": self.dlq,
                "gmv_by_country": self.gmv_by_country,
                "gmv_by_category": self.gmv_by_category,
                "stock": self.stock,
                "sold_out": self.sold_out,
                "seen": list(self.seen),
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> PartitionState:
        """Inverse of `to_bytes`."""
        doc: dict[str, Any] = orjson.loads(raw)
        doc["seen"] = dict.fromkeys(doc["seen"])
        return cls(**doc)

    def summary(self) -> dict[str, Any]:
        """The totals without the per-SKU stock and the id window (sold-out SKUs counted once)."""
        return {
            "partition": self.partition,
            "last_offset": self.last_offset,
            "gmv_cents": self.gmv_cents,
            "accepted": self.accepted,
            "rejected_oversell": self.rejected_oversell,
            "duplicates": self.duplicates,
            "restocks": self.restocks,
            "dlq": self.dlq,
            "sold_out": len(set(self.sold_out)),
        }


def apply_event(state: PartitionState, event: OrderEvent) -> str:
    """Apply one valid event to its partition's state and return the outcome.

    A repeated order id inside the window is a duplicate and changes nothing else. A restock
    adds units. An order is accepted only when stock covers its whole quantity.
    """
    seen = state.seen
    order_id = event.order_id
    if order_id in seen:
        state.duplicates += 1
        return DUPLICATE
    seen[order_id] = None
    if len(seen) > state.window:
        del seen[next(iter(seen))]
    sku = event.sku
    stock = state.stock
    have = stock.get(sku, 0)
    if event.type == "restock":
        stock[sku] = have + event.quantity
        state.restocks += 1
        return RESTOCKED
    quantity = event.quantity
    if have < quantity:
        state.rejected_oversell += 1
        return REJECTED_OVERSELL
    left = have - quantity
    stock[sku] = left
    amount = quantity * event.unit_price_cents
    state.gmv_cents += amount
    state.accepted += 1
    by_country = state.gmv_by_country
    by_country[event.country] = by_country.get(event.country, 0) + amount
    by_category = state.gmv_by_category
    by_category[event.category] = by_category.get(event.category, 0) + amount
    if left == 0:
        state.sold_out.append(sku)
    return ACCEPTED
