"""The versioned order event (topic `orders`, key = SKU): encoding and strict decoding.

Money is integer euro cents. Every field is required and typed; anything else is malformed
input, which a worker sends to the dead-letter topic with the reason from `MalformedEvent`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "MalformedEvent",
    "OrderEvent",
    "decode_event",
    "encode_event",
]

SCHEMA_VERSION: Final = 1

#: `created` is an order line; `restock` is a merchant loading units of a SKU for the sale
#: (it travels on the same key as the SKU's orders, so stock and orders stay in order).
EVENT_TYPES: Final = frozenset({"created", "restock"})

# Bounds that keep arithmetic in exact, sane integers (8 bytes signed with room to sum).
MAX_QUANTITY: Final = 1_000_000
MAX_UNIT_PRICE_CENTS: Final = 100_000_000  # one million euros per unit
MAX_ID_LEN: Final = 128

_STR_FIELDS: Final = (
    "order_id",
    "type",
    "sku",
    "merchant",
    "country",
    "category",
    "province",
    "channel",
    "payment",
)
_INT_FIELDS: Final = ("v", "event_ts_ms", "emit_ns", "quantity", "unit_price_cents")
_ALL_FIELDS: Final = frozenset(_STR_FIELDS + _INT_FIELDS)
# A restock is not a purchase: it has no buyer.
_BUYER_FIELDS: Final = frozenset({"province", "channel", "payment"})


class MalformedEvent(ValueError):
    """An event that breaks the schema; `reason` is a short machine-stable code, `detail` prose."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One order line (or a restock) on the scenario clock."""

    order_id: str
    type: str
    event_ts_ms: int
    sku: str
    merchant: str
    country: str
    category: str
    quantity: int
    unit_price_cents: int
    province: str
    channel: str
    payment: str
    emit_ns: int = 0

    @property
    def amount_cents(self) -> int:
        """Line total in euro cents."""
        return self.quantity * self.unit_price_cents


def encode_event(event: OrderEvent, emit_ns: int | None = None) -> bytes:
    """Serialise to the wire format; `emit_ns` overrides the event's wall-clock emit time."""
    return orjson.dumps(
        {
            "v": SCHEMA_VERSION,
            "order_id": event.order_id,
            "type": event.type,
            "event_ts_ms": event.event_ts_ms,
            "emit_ns": event.emit_ns if emit_ns is None else emit_ns,
            "sku": event.sku,
            "merchant": event.merchant,
            "country": event.country,
            "category": event.category,
            "quantity": event.quantity,
            "unit_price_cents": event.unit_price_cents,
            "province": event.province,
            "channel": event.channel,
            "payment": event.payment,
        }
    )


def decode_event(raw: bytes | None) -> OrderEvent:
    """Parse and validate one message value; raise `MalformedEvent` naming the problem."""
    if raw is None:
        raise MalformedEvent("empty", "message has no value")
    try:
        doc: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent("not_json", str(exc)) from None
    if not isinstance(doc, dict):
        raise MalformedEvent("not_object", f"expected a JSON object, got {type(doc).__name__}")
    version = doc.get("v")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise MalformedEvent("unknown_version", f"v={version!r}, expected {SCHEMA_VERSION}")
    keys = doc.keys()
    if keys != _ALL_FIELDS:
        missing = sorted(_ALL_FIELDS - keys)
        if missing:
            raise MalformedEvent("missing_field", f"missing {', '.join(missing)}")
        extra = sorted(str(k) for k in keys - _ALL_FIELDS)
        raise MalformedEvent("unknown_field", f"unknown {', '.join(extra)}")
    for name in _INT_FIELDS:
        value = doc[name]
        if type(value) is not int:
            raise MalformedEvent("wrong_type", f"{name} must be an integer, got {value!r:.40}")
    for name in _STR_FIELDS:
        value = doc[name]
        if type(value) is not str:
            raise MalformedEvent("wrong_type", f"{name} must be a string, got {value!r:.40}")
        if len(value) > MAX_ID_LEN:
            raise MalformedEvent("out_of_range", f"{name} longer than {MAX_ID_LEN} characters")
    kind = doc["type"]
    if kind not in EVENT_TYPES:
        raise MalformedEvent("unknown_type", f"type={kind!r:.40}")
    for name in _STR_FIELDS:
        if not doc[name] and not (kind == "restock" and name in _BUYER_FIELDS):
            raise MalformedEvent("out_of_range", f"{name} must not be empty")
    quantity = doc["quantity"]
    if not 0 < quantity <= MAX_QUANTITY:
        raise MalformedEvent("out_of_range", f"quantity={quantity} not in 1..{MAX_QUANTITY}")
    price = doc["unit_price_cents"]
    if not 0 < price <= MAX_UNIT_PRICE_CENTS:
        raise MalformedEvent(
            "out_of_range", f"unit_price_cents={price} not in 1..{MAX_UNIT_PRICE_CENTS}"
        )
    if doc["event_ts_ms"] < 0 or doc["emit_ns"] < 0:
        raise MalformedEvent("out_of_range", "event_ts_ms and emit_ns must not be negative")
    return OrderEvent(
        order_id=doc["order_id"],
        type=kind,
        event_ts_ms=doc["event_ts_ms"],
        sku=doc["sku"],
        merchant=doc["merchant"],
        country=doc["country"],
        category=doc["category"],
        quantity=quantity,
        unit_price_cents=price,
        province=doc["province"],
        channel=doc["channel"],
        payment=doc["payment"],
        emit_ns=doc["emit_ns"],
    )
