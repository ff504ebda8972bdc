"""A broker that lost messages of `orders`, told apart from a worker that miscounted: only
missing or rewritten offsets count as evidence.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from verify.records import MAX_EXAMPLES, Position, Record, at
from verify.truth import Truth

__all__ = ["lost_by_broker"]


def lost_by_broker(
    orders: Mapping[int, Sequence[Record]],
    truth: Truth,
    states: Sequence[Mapping[str, Any]],
    decided: Collection[Position],
    dead: Collection[Position],
) -> tuple[int, str]:
    """Messages of `orders` the workers applied that the topic no longer holds, at least, and
    how that shows (0 and "" when no offset is missing).

    Only missing offsets count as evidence: a worker's state that applied an offset beyond
    the partition's end; a state whose first or last applied offset now holds other bytes
    than it applied there (its CRC-32 differs: the topic was recreated and written again);
    decisions or dead letters of positions the topic does not hold. The number is a lower
    bound: the offsets beyond the end, the positions up to a rewritten state's offset whose
    message has neither decision nor dead letter (at least one), or the positions decided
    but not held, whichever is most.
    """
    newest: dict[int, int] = {}
    for partition, records in orders.items():
        if records:
            newest[partition] = max(rec.offset for rec in records)
    evidence: list[str] = []
    by_state = 0
    for st in states:
        partition, last = int(st["partition"]), int(st.get("last_offset", -1))
        if last < 0:
            continue
        end = newest.get(partition, -1)
        if last > end:
            evidence.append(
                f"partition {partition} ends at offset {end}, its worker applied up to {last}"
            )
            by_state += last - end
            continue
        rewritten = _rewritten(st, orders.get(partition, ()))
        if rewritten is not None:
            evidence.append(
                f"offset {rewritten} of partition {partition} no longer holds the message "
                "its worker applied there"
            )
            # Each offset the state covers whose message now has neither decision nor dead
            # letter held another message when the worker applied it.
            undecided = sum(
                1
                for where in truth.outcomes
                if where[0] == partition
                and where[1] <= last
                and where not in decided
                and where not in dead
            )
            by_state += max(undecided, 1)
    unheld = {where[:2] for where in (*decided, *dead) if where not in truth.outcomes}
    if unheld:
        evidence.append(
            f"{len(unheld):,} messages have decisions or dead letters but are not on the "
            "topic, e.g. " + ", ".join(at(w) for w in sorted(unheld)[:MAX_EXAMPLES])
        )
    lost = max(by_state, len(unheld))
    return lost, "; ".join(evidence)


def _rewritten(st: Mapping[str, Any], records: Sequence[Record]) -> int | None:
    """The first of a state's fingerprinted offsets (its first and last applied) whose
    message the partition no longer holds with the same CRC-32 of its value, if any."""
    marks = [
        (int(offset), int(crc))
        for offset, crc in (
            (st.get("first_offset"), st.get("first_crc32")),
            (st.get("last_offset"), st.get("last_crc32")),
        )
        if offset is not None and crc is not None and int(offset) >= 0
    ]
    held = {rec.offset: rec for rec in records if rec.offset in {o for o, _ in marks}}
    for offset, crc in marks:
        rec = held.get(offset)
        if rec is None or zlib.crc32(rec.value or b"") != crc:
            return offset
    return None
