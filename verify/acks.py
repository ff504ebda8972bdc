"""Did the broker keep every write it acknowledged? Each line of a producer's acknowledgement
log (`flashsale.acklog`) checked against the message `orders` holds at its partition and
offset: there, with the same `flashsale.seq` header and the same CRC-32 of key and value.

Offsets are looked up one by one, never counted: a topic whose offsets have gaps
(transaction markers, compaction) is read as it is.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from flashsale.acklog import AckedWrite
from verify.records import MAX_EXAMPLES, Record, header

__all__ = ["AckCheck", "check_acks"]

_SEQ = "flashsale.seq"


@dataclass
class AckCheck:
    """The verdict on a run's acknowledged writes."""

    #: Distinct acknowledged writes checked (a line given twice counts once).
    writes: int = 0
    #: Acknowledged writes the topic does not hold as acknowledged, each with why, in the
    #: order of the logs.
    lost: list[tuple[AckedWrite, str]] = field(default_factory=list)
    #: Acknowledged writes whose seq was acknowledged at another offset too, or whose message
    #: the topic holds again at another offset (the same seq and bytes), each with where.
    duplicated: list[tuple[AckedWrite, str]] = field(default_factory=list)

    def findings(self) -> list[str]:
        """One line for the lost writes and one for the duplicated ones, naming the first few
        (none when every acknowledged write is held once)."""
        out = []
        for label, found in (("lost", self.lost), ("duplicated", self.duplicated)):
            if found:
                out.append(
                    f"{len(found):,} of {self.writes:,} acknowledged writes {label}, e.g. "
                    + "; ".join(f"{_named(ack)} {why}" for ack, why in found[:MAX_EXAMPLES])
                )
        return out


def _named(ack: AckedWrite) -> str:
    seq = "none" if ack.seq is None else f"{ack.seq}"
    return f"partition {ack.partition} offset {ack.offset} seq {seq}"


def _seq_of(rec: Record) -> int | None:
    raw = header(rec, _SEQ)
    try:
        return None if raw is None else int(raw)
    except ValueError:
        return None


def check_acks(
    orders: Mapping[int, Sequence[Record]], acknowledged: Iterable[AckedWrite]
) -> AckCheck:
    """Check each acknowledged write against `orders` (every record of the topic, per
    partition): `lost` when no message is at its offset, or the message there carries
    another seq or other bytes; `duplicated` when its seq was acknowledged at another offset
    too, or the topic holds the same seq with the same bytes at another offset as well."""
    acks = list(dict.fromkeys(acknowledged))
    check = AckCheck(writes=len(acks))
    if not acks:
        return check
    held: dict[tuple[int, int], Record] = {}
    # Where the topic holds each (seq, CRC-32): more than one place is a duplicate.
    copies: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for partition, records in orders.items():
        for rec in records:
            held[(partition, rec.offset)] = rec
            seq = _seq_of(rec)
            if seq is not None:
                copies.setdefault((seq, _crc(rec)), []).append((partition, rec.offset))
    acked_at: dict[int, list[AckedWrite]] = {}
    for ack in acks:
        if ack.seq is not None:
            acked_at.setdefault(ack.seq, []).append(ack)
    for ack in acks:
        found = held.get((ack.partition, ack.offset))
        if found is None:
            check.lost.append((ack, _absent(orders.get(ack.partition, ()), ack.offset)))
            continue
        seq, crc = _seq_of(found), _crc(found)
        if seq != ack.seq:
            check.lost.append((ack, f"(the message there carries seq {seq})"))
        elif crc != ack.crc32:
            check.lost.append((ack, f"(the message there has other bytes: CRC-32 {crc:08x})"))
        elif ack.seq is not None and len(acked_at[ack.seq]) > 1:
            other = next(o for o in acked_at[ack.seq] if o != ack)
            check.duplicated.append(
                (ack, f"(also acknowledged at partition {other.partition} offset {other.offset})")
            )
        elif seq is not None and len(copies[(seq, crc)]) > 1:
            p, o = next(w for w in copies[(seq, crc)] if w != (ack.partition, ack.offset))
            check.duplicated.append((ack, f"(held again at partition {p} offset {o})"))
    return check


def _crc(rec: Record) -> int:
    return zlib.crc32(rec.value or b"", zlib.crc32(rec.key or b""))


def _absent(records: Sequence[Record], offset: int) -> str:
    """Why no message is at `offset` of a partition holding `records`."""
    if not records:
        return "(the partition is empty)"
    if offset > records[-1].offset:
        return f"(past the partition's last offset, {records[-1].offset})"
    if offset < records[0].offset:
        return f"(before the partition's first offset, {records[0].offset})"
    return "(no message at this offset)"
