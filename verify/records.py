"""What verify reads: Kafka records, positions on `orders`, and the decisions a decision
message carries (one per row of a packed message).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

__all__ = [
    "MAX_EXAMPLES",
    "Position",
    "Record",
    "at",
    "decision_docs",
    "header",
    "position_of",
    "source_offsets",
]

MAX_EXAMPLES = 5


#: Where an event sits on `orders`: (partition, offset) for a message of its own,
#: (partition, offset, index) for a row of a packed message.
Position = tuple[int, ...]


class Record(Protocol):
    """What verify needs of a Kafka record (aiokafka's ConsumerRecord has it)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


def decision_docs(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The per-event decisions one decision message carries (a packed one, one per row)."""
    if "packed" not in doc:
        yield doc
        return
    columns = [k for k, v in doc.items() if isinstance(v, list) and k != "index"]
    for j, index in enumerate(doc["index"]):
        row = {k: doc[k][j] for k in columns}
        row.update(
            partition=doc["partition"],
            offset=doc["offset"],
            index=index,
            processed_ns=doc["processed_ns"],
        )
        yield row


def at(where: Position) -> str:
    """`partition:offset` (`:index` for a packed row), as messages name a position."""
    return ":".join(map(str, where))


def position_of(doc: Mapping[str, Any]) -> Position:
    """The position on `orders` a decision or a sell-out record names."""
    where = (int(doc["partition"]), int(doc["offset"]))
    return (*where, int(doc["index"])) if "index" in doc else where


def header(rec: Record, name: str) -> bytes | None:
    """The value of a record's header `name` (None when it has none)."""
    for key, value in rec.headers or ():
        if key == name:
            return value
    return None


def source_offsets(records: Mapping[int, Sequence[Record]]) -> set[Position]:
    """The position on `orders` each record names in its `flashsale.*` headers (with the
    row index for a row of a packed message)."""
    out: set[Position] = set()
    for part in sorted(records):
        for rec in records[part]:
            p, o = header(rec, "flashsale.partition"), header(rec, "flashsale.offset")
            if p is not None and o is not None:
                i = header(rec, "flashsale.index")
                out.add((int(p), int(o)) if i is None else (int(p), int(o), int(i)))
    return out
