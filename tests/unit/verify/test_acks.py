"""Every acknowledged write proven on `orders`: hand-made topic contents and logs, no broker."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from flashsale.acklog import AckedWrite, digest
from verify.acks import check_acks
from verify.reconcile import reconcile


@dataclass
class Rec:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = field(default_factory=list)


def _rec(partition: int, offset: int, seq: int | None, value: bytes) -> Rec:
    headers = [] if seq is None else [("flashsale.seq", b"%d" % seq)]
    return Rec(partition, offset, b"SKU-%d" % partition, value, headers)


def _ack(rec: Rec) -> AckedWrite:
    seq = next((int(v) for k, v in rec.headers if k == "flashsale.seq"), None)
    return AckedWrite(rec.partition, rec.offset, seq, digest(rec.key, rec.value))


# Offsets with gaps (as transaction markers or compaction leave them): 0, 1, 4, 9.
TOPIC = {
    0: [_rec(0, 0, -1, b"restock"), _rec(0, 1, 0, b"a"), _rec(0, 4, 2, b"c")],
    1: [_rec(1, 9, 1, b"b")],
}
ACKS = [_ack(r) for records in TOPIC.values() for r in records]


def test_every_acknowledged_write_held_is_proven_offsets_gaps_and_all() -> None:
    check = check_acks(TOPIC, ACKS)
    assert (check.writes, check.lost, check.duplicated) == (4, [], [])
    assert check.findings() == []


def test_the_same_line_in_two_logs_counts_once() -> None:
    check = check_acks(TOPIC, ACKS + ACKS[:2])
    assert (check.writes, check.lost, check.duplicated) == (4, [], [])


def test_a_write_past_the_end_in_a_gap_or_on_an_empty_partition_is_lost() -> None:
    past, gap, empty = AckedWrite(0, 5, 3, 1), AckedWrite(0, 2, 4, 1), AckedWrite(3, 0, 5, 1)
    check = check_acks(TOPIC, [*ACKS, past, gap, empty])
    assert check.lost == [
        (past, "(past the partition's last offset, 4)"),
        (gap, "(no message at this offset)"),
        (empty, "(the partition is empty)"),
    ]
    (line,) = check.findings()
    assert line.startswith("3 of 7 acknowledged writes lost, e.g. partition 0 offset 5 seq 3 ")


def test_a_write_before_the_partitions_start_is_lost() -> None:
    early = AckedWrite(1, 3, 7, 1)
    assert check_acks(TOPIC, [early]).lost == [(early, "(before the partition's first offset, 9)")]


def test_other_bytes_or_another_seq_at_the_offset_is_a_lost_write() -> None:
    changed = replace(ACKS[1], crc32=ACKS[1].crc32 ^ 1)
    other_seq = replace(ACKS[2], seq=99)
    check = check_acks(TOPIC, [ACKS[0], changed, other_seq, ACKS[3]])
    assert [ack for ack, _ in check.lost] == [changed, other_seq]
    assert check.lost[0][1] == f"(the message there has other bytes: CRC-32 {ACKS[1].crc32:08x})"
    assert check.lost[1][1] == "(the message there carries seq 2)"
    assert check.duplicated == []


def test_a_message_whose_key_changed_is_lost_too() -> None:
    topic = {0: [replace(TOPIC[0][0], key=b"SKU-9")]}
    assert len(check_acks(topic, ACKS[:1]).lost) == 1


def test_a_seq_acknowledged_at_two_offsets_is_duplicated() -> None:
    again = _rec(1, 10, 0, b"a, sent again")
    topic = {0: TOPIC[0], 1: [*TOPIC[1], again]}
    check = check_acks(topic, [*ACKS, _ack(again)])
    assert check.lost == []
    assert check.duplicated == [
        (ACKS[1], "(also acknowledged at partition 1 offset 10)"),
        (_ack(again), "(also acknowledged at partition 0 offset 1)"),
    ]
    assert check.findings() == [
        "2 of 5 acknowledged writes duplicated, e.g. partition 0 offset 1 seq 0 (also "
        "acknowledged at partition 1 offset 10); partition 1 offset 10 seq 0 (also "
        "acknowledged at partition 0 offset 1)"
    ]


def test_the_same_seq_and_bytes_held_twice_is_duplicated() -> None:
    # A retried batch the broker wrote twice: the producer heard of one of them.
    copy = replace(TOPIC[0][1], offset=5)
    topic = {0: [*TOPIC[0], copy], 1: TOPIC[1]}
    check = check_acks(topic, ACKS)
    assert check.lost == []
    assert check.duplicated == [(ACKS[1], "(held again at partition 0 offset 5)")]


def test_the_same_seq_with_other_bytes_elsewhere_is_no_duplicate() -> None:
    # Split producers number their streams alike: a seq alone does not make a copy.
    other = _rec(1, 10, 0, b"another producer's event 0")
    check = check_acks({0: TOPIC[0], 1: [*TOPIC[1], other]}, ACKS)
    assert (check.lost, check.duplicated) == ([], [])


def test_no_log_leaves_the_fields_null_and_a_lost_write_fails_apart_from_the_business() -> None:
    result = reconcile(TOPIC, {}, {}, {}, {}, default_window=8)
    assert [result.summary[k] for k in ("acked_writes", "acked_lost", "acked_duplicated")] == [
        None,
        None,
        None,
    ]
    business = result.reconciled
    result.add_ack_check(check_acks(TOPIC, [*ACKS, AckedWrite(0, 7, 3, 0)]))
    assert [result.summary[k] for k in ("acked_writes", "acked_lost", "acked_duplicated")] == [
        5,
        1,
        0,
    ]
    assert result.reconciled == business
    assert not result.passed
    assert result.ack_findings[0].startswith("1 of 5 acknowledged writes lost")
