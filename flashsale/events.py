"""The versioned order event (topic `orders`, key = SKU): encoding and strict decoding.

One event is one order line (a basket is split into lines, each keyed by its SKU) at one step
of its lifecycle, or a restock. Money is integer euro cents. Every field is required and
typed; anything else is malformed input, which a worker sends to the dead-letter topic with the
reason from `MalformedEvent`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

__all__ = [
    "EVENT_TYPES",
    "MAX_LINE",
    "SCHEMA_VERSION",
    "MalformedEvent",
    "OrderEvent",
    "decode_event",
    "encode_event",
]

SCHEMA_VERSION: Final = 1

#: An order line's lifecycle: `created` (stock is reserved), then `paid` or `cancelled` (an
#: unpaid timeout, releasing the stock), and after `paid` possibly `refunded`. `restock` is a
#: merchant loading units of a SKU for the sale. All travel on the SKU's key, so a SKU's stock,
#: lines and their lifecycle stay in order.
EVENT_TYPES: Final = frozenset({"created", "paid", "cancelled", "refunded", "restock"})

# Bounds that keep arithmetic in exact, sane integers (8 bytes signed with room to sum).
MAX_QUANTITY: Final = 1_000_000
MAX_UNIT_PRICE_CENTS: Final = 100_000_000  # one million euros per unit
MAX_ID_LEN: Final = 128
#: Lines of one order are numbered 0..MAX_LINE.
MAX_LINE: Final = 99

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
_INT_FIELDS: Final = ("v", "line", "event_ts_ms", "emit_ns", "quantity", "unit_price_cents")
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
    """One order line at one step of its lifecycle (or a restock), on the scenario clock.

    `line` is last, with a default, so positional construction of a single-line order keeps
    working; on the wire it is required.
    """

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
    line: int = 0

    @property
    def amount_cents(self) -> int:
        """Line total in euro cents."""
        return self.quantity * self.unit_price_cents

    @property
    def line_id(self) -> str:
        """The order line this event belongs to: `{order_id}/{line}`."""
        return f"{self.order_id}/{self.line}"

    @property
    def event_id(self) -> str:
        """What dedupe keys on: one line's one lifecycle step, `{order_id}/{line}/{type}`."""
        return f"{self.order_id}/{self.line}/{self.type}"


def encode_event(event: OrderEvent, emit_ns: int | None = None) -> bytes:
    """Serialise to the wire format; `emit_ns` overrides the event's wall-clock emit time."""
    return orjson.dumps(
        {
            "v": SCHEMA_VERSION,
            "order_id": event.order_id,
            "line": event.line,
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
    """Parse and validate one message value; raise `MalformedEvent` naming the problem.

    Fields are looked up by name, so their order in the JSON object does not matter.
    """
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
    line = doc["line"]
    if not 0 <= line <= MAX_LINE:
        raise MalformedEvent("out_of_range", f"line={line} not in 0..{MAX_LINE}")
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
        line=line,
    )
