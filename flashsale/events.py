"""The versioned order event (topic `orders`, key = SKU): encoding and strict decoding.

One event is one order line (a basket is split into lines, each keyed by its SKU) at one step
of its lifecycle, or a restock. Money is integer euro cents. Every field is required and
typed; anything else is malformed input, which a worker sends to the dead-letter topic with the
reason from `MalformedEvent`.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import Any, Final

import orjson

from flashsale.columns import COMPILED as COLUMNS_COMPILED
from flashsale.columns import expand, int_bounds, text_bounds

__all__ = [
    "CODED_COLUMNS",
    "EVENT_TYPES",
    "MAX_LINE",
    "MAX_PACK",
    "PACKED_COLUMNS",
    "PACKED_HEADER",
    "SCHEMA_VERSION",
    "MalformedEvent",
    "OrderEvent",
    "PackedBatch",
    "decode_event",
    "decode_packed",
    "dictionary_coded",
    "encode_event",
    "encode_packed",
    "packed_count",
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
#: Times (event_ts_ms, emit_ns) are 64-bit signed integers, as Kafka's timestamps are.
MAX_TIME: Final = 2**63 - 1

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
    return _validated(_json_object(raw))


def _json_object(raw: bytes | None) -> dict[str, Any]:
    """A message value parsed as a JSON object, or `MalformedEvent`."""
    if raw is None:
        raise MalformedEvent("empty", "message has no value")
    try:
        doc: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent("not_json", str(exc)) from None
    if not isinstance(doc, dict):
        raise MalformedEvent("not_object", f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _check_shape(doc: dict[str, Any], fields: frozenset[str], missing_prefix: str) -> None:
    """The version is ours and the fields are exactly `fields`, or `MalformedEvent`."""
    version = doc.get("v")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise MalformedEvent("unknown_version", f"v={version!r}, expected {SCHEMA_VERSION}")
    keys = doc.keys()
    if keys != fields:
        missing = sorted(fields - keys)
        if missing:
            raise MalformedEvent("missing_field", f"{missing_prefix} {', '.join(missing)}")
        extra = sorted(str(k) for k in keys - fields)
        raise MalformedEvent("unknown_field", f"unknown {', '.join(extra)}")


def _validated(doc: dict[str, Any]) -> OrderEvent:
    """The event a decoded JSON object describes, or `MalformedEvent` naming the problem."""
    _check_shape(doc, _ALL_FIELDS, "missing")
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
    if not (0 <= doc["event_ts_ms"] <= MAX_TIME and 0 <= doc["emit_ns"] <= MAX_TIME):
        raise MalformedEvent("out_of_range", "event_ts_ms and emit_ns must be in 0..2**63-1")
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


# -- The packed format: many events of one partition in one message ---------------------------

#: Header of a packed message: how many events it carries. A message without it is one event.
PACKED_HEADER: Final = "flashsale.packed"
#: Most events one packed message may carry.
MAX_PACK: Final = 100_000
#: The columns of a packed message: every event field but `v`, one list each.
PACKED_COLUMNS: Final = tuple(f for f in (*_STR_FIELDS, *_INT_FIELDS) if f != "v")
_PACKED_KEYS: Final = frozenset((*PACKED_COLUMNS, "v", "n"))
_PACKED_CODED_KEYS: Final = _PACKED_KEYS | {"dict"}
#: Columns that may be dictionary-coded: the text fields that repeat (every one but the id).
CODED_COLUMNS: Final = tuple(f for f in _STR_FIELDS if f != "order_id")
_INT_COLUMNS: Final = tuple(f for f in _INT_FIELDS if f != "v")


@dataclass(slots=True)
class PackedBatch:
    """A decoded packed message: `n` events as columns, and the rows that break the schema.

    A row in `bad` gets a dead letter of its own (reason from its `MalformedEvent`); every
    other row is a valid event, exactly as if it had come as a message of its own.
    """

    n: int
    columns: dict[str, list[Any]]
    bad: dict[int, MalformedEvent]

    def row(self, i: int) -> dict[str, Any]:
        """Row i as a v1 event object (`encode_row` gives its JSON)."""
        doc = {"v": SCHEMA_VERSION}
        for name, column in self.columns.items():
            doc[name] = column[i]
        return doc

    def event(self, i: int) -> OrderEvent:
        """Row i as an `OrderEvent` (a valid row only)."""
        return _validated(self.row(i))

    def encode_row(self, i: int) -> bytes:
        """Row i as a message of its own (the dead-letter and late topics carry single rows)."""
        return orjson.dumps(self.row(i))


def encode_packed(
    columns: dict[str, list[Any]], dictionary: dict[str, list[str]] | None = None
) -> bytes:
    """One packed message from event columns (every name of `PACKED_COLUMNS`, equal lengths).

    A column named in `dictionary` holds codes: row i's value is `dictionary[name][code]`.
    """
    n = len(columns["order_id"])
    doc = {"v": SCHEMA_VERSION, "n": n, **columns}
    if dictionary:
        doc["dict"] = dictionary
    return orjson.dumps(doc)


def dictionary_coded(
    columns: dict[str, list[Any]],
) -> tuple[dict[str, list[Any]], dict[str, list[str]]]:
    """`columns` with every `CODED_COLUMNS` column replaced by codes, and the dictionary."""
    coded = dict(columns)
    dictionary: dict[str, list[str]] = {}
    for name in CODED_COLUMNS:
        values = list(dict.fromkeys(columns[name]))
        index = {value: code for code, value in enumerate(values)}
        coded[name] = [index[value] for value in columns[name]]
        dictionary[name] = values
    return coded, dictionary


def packed_count(headers: Any) -> int | None:
    """The event count a message's headers announce, or None for a single-event message."""
    for key, value in headers or ():
        if key == PACKED_HEADER:
            try:
                return int(value)
            except ValueError:
                return -1
    return None


def decode_packed(raw: bytes | None) -> PackedBatch:
    """Parse a packed message. A message-wide problem (not JSON, wrong version, a missing or
    short column) raises `MalformedEvent`; a row that breaks the schema goes to `bad`."""
    doc = _json_object(raw)
    _check_shape(
        doc, _PACKED_CODED_KEYS if "dict" in doc else _PACKED_KEYS, "packed message without"
    )
    n = doc["n"]
    if type(n) is not int or not 0 < n <= MAX_PACK:
        raise MalformedEvent("out_of_range", f"n={n!r:.40} not in 1..{MAX_PACK}")
    columns = {name: doc[name] for name in PACKED_COLUMNS}
    for name, column in columns.items():
        if type(column) is not list or len(column) != n:
            raise MalformedEvent("wrong_type", f"column {name} must be a list of {n} values")
    # Compiled, the column checks look at each value's type. As plain Python they are faster
    # knowing that no value is a bool: no JSON true/false anywhere (the bytes say so).
    assert raw is not None  # _json_object refused None
    bool_free = not COLUMNS_COMPILED and b"true" not in raw and b"false" not in raw
    coded = _expand_codes(columns, doc["dict"], bool_free) if "dict" in doc else {}
    batch = PackedBatch(n=n, columns=columns, bad={})
    if not _columns_valid(columns, coded, bool_free):
        # Some row breaks the schema: find which, with the reason a single event would get.
        for i in range(n):
            try:
                _validated(batch.row(i))
            except MalformedEvent as exc:
                batch.bad[i] = exc
    return batch


def _expand_codes(
    columns: dict[str, list[Any]], dictionary: Any, bool_free: bool = False
) -> dict[str, list[Any]]:
    """Replace each coded column's codes by their values, in place; return the dictionary of
    each column whose codes were all valid (its values include every value of the column).

    A code that is not an integer index of its dictionary stays as it is, so the row is
    judged as a single event with that value would be (an integer where text belongs is a
    `wrong_type`).
    """
    if type(dictionary) is not dict or not dictionary.keys() <= set(CODED_COLUMNS):
        raise MalformedEvent(
            "wrong_type", f"dict must map some of {', '.join(CODED_COLUMNS)} to lists of values"
        )
    clean: dict[str, list[Any]] = {}
    for name, values in dictionary.items():
        if type(values) is not list:
            raise MalformedEvent("wrong_type", f"dict {name} must be a list of values")
        codes = columns[name]
        with contextlib.suppress(TypeError):
            # Interned: equal text from every message is one object, so the lines a worker
            # holds open share their country, category, merchant and province strings.
            values = list(map(sys.intern, values))
        expanded = expand(values, codes, bool_free)
        if expanded is not None:
            columns[name] = expanded
            clean[name] = values
            continue
        size = len(values)
        columns[name] = [
            values[code] if type(code) is int and 0 <= code < size else code for code in codes
        ]
    return clean


#: The integer columns with a range, (least, greatest) allowed.
_RANGES: Final = {
    "quantity": (1, MAX_QUANTITY),
    "unit_price_cents": (1, MAX_UNIT_PRICE_CENTS),
    "line": (0, MAX_LINE),
    "event_ts_ms": (0, MAX_TIME),
    "emit_ns": (0, MAX_TIME),
}


def _columns_valid(
    columns: dict[str, list[Any]],
    values_of: dict[str, list[Any]] | None = None,
    bool_free: bool = False,
) -> bool:
    """True when every row is valid: whole-column checks, the fast path of `decode_packed`.

    String columns other than the order id repeat a few values (SKUs, countries, provinces),
    so they are checked on their distinct values; any doubt sends the message to the
    row-by-row path, which names each bad row's problem. `values_of`: for some columns, a
    list that holds every value of the column (a message's dictionary): checked instead of
    the column. `bool_free`: no value is a bool. The scans of whole columns are
    flashsale/columns.py (compiled).
    """
    values_of = values_of or {}
    for name in _INT_COLUMNS:
        bounds = int_bounds(columns[name], bool_free)
        if bounds is None:
            return False
        low, high = _RANGES[name]
        if bounds[0] < low or bounds[1] > high:
            return False
    lengths = text_bounds(columns["order_id"])
    if lengths is None or lengths[0] == 0 or lengths[1] > MAX_ID_LEN:
        return False
    kinds = columns["type"]
    try:
        distinct_kinds = set(values_of.get("type", kinds))
        if not distinct_kinds <= EVENT_TYPES:
            return False
        for name in _STR_FIELDS:
            if name in ("order_id", "type"):
                continue
            distinct = set(values_of.get(name, columns[name]))
            if any(type(v) is not str or len(v) > MAX_ID_LEN for v in distinct):
                return False
            if "" in distinct:
                # Only a restock may leave its buyer fields empty.
                if name not in _BUYER_FIELDS or "restock" not in distinct_kinds:
                    return False
                column = columns[name]
                if any(not v and k != "restock" for v, k in zip(column, kinds, strict=True)):
                    return False
    except TypeError:  # an unhashable value (a list, an object) in a string column
        return False
    return True
