"""The acknowledgement log's format: written as acknowledgements come, read back whole, a
producer killed mid-line tolerated, anything else refused with the file and line named."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from flashsale.acklog import AckedWrite, AckLogError, AckLogWriter, ack_line, digest, read_ack_log

WRITES = [
    AckedWrite(2, 0, -3, digest(b"NL-1", b'{"a":1}')),
    AckedWrite(0, 17, 41, digest(b"NL-2", b'{"a":2}')),
    AckedWrite(1, 5, None, digest(None, b"packed")),
]


def _lines(writes: list[AckedWrite]) -> list[bytes]:
    return [ack_line(w.partition, w.offset, w.seq, w.crc32) for w in writes]


def _log(tmp_path: Path, writes: list[AckedWrite] = WRITES) -> Path:
    path = tmp_path / "acks.csv"
    log = AckLogWriter(path, "orders-x")
    log.write(_lines(writes[:1]))
    log.write(_lines(writes[1:]))
    log.close()
    return path


def test_the_digest_is_the_crc32_of_key_and_value_together() -> None:
    assert digest(b"NL-1", b"value") == zlib.crc32(b"NL-1value")
    assert digest(None, b"value") == zlib.crc32(b"value")


def test_written_lines_read_back_in_order(tmp_path: Path) -> None:
    path = _log(tmp_path)
    assert read_ack_log(path, "orders-x") == WRITES
    assert read_ack_log(path) == WRITES
    text = path.read_text().splitlines()
    assert text[:2] == ["# flashsale ack log 1 topic=orders-x", "partition,offset,seq,crc32"]
    assert text[2] == f"2,0,-3,{WRITES[0].crc32:08x}"
    assert text[4] == f"1,5,,{WRITES[2].crc32:08x}"  # no seq header: empty


def test_each_write_is_handed_to_the_os_at_once(tmp_path: Path) -> None:
    path = tmp_path / "acks.csv"
    log = AckLogWriter(path, "orders")
    log.write(_lines(WRITES[:2]))
    # Still open: what a producer SIGKILLed now leaves behind.
    assert read_ack_log(path, "orders") == WRITES[:2]
    log.close()


@pytest.mark.parametrize("cut", [1, 5, 9])
def test_a_torn_last_line_is_dropped(tmp_path: Path, cut: int) -> None:
    path = _log(tmp_path)
    whole = path.read_bytes()
    last = whole.rstrip(b"\n").rsplit(b"\n", 1)[1]
    path.write_bytes(whole[: len(whole) - len(last) - 1 + cut])
    assert read_ack_log(path, "orders-x") == WRITES[:2]


@pytest.mark.parametrize("cut", [0, 3, 20, 36, 40])
def test_a_header_cut_short_holds_no_writes(tmp_path: Path, cut: int) -> None:
    path = _log(tmp_path)
    path.write_bytes(path.read_bytes()[:cut])
    assert read_ack_log(path, "orders-x") == []


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (b"partition,offset\n1,2\n", "not a flashsale ack log"),
        (b"# flashsale ack log 1 topic=orders-x\nwhat,ever\n", "not a flashsale ack log"),
        (
            b"# flashsale ack log 1 topic=orders-x\npartition,offset,seq,crc32\n1,2,3,0000000a\n"
            b"1,x,3,0000000a\n2,3,4,0000000b\n",
            ":4: not an acknowledgement line: '1,x,3,0000000a'",
        ),
        (
            b"# flashsale ack log 1 topic=orders-x\npartition,offset,seq,crc32\n1,2,3,a\n",
            ":3: not an acknowledgement line",
        ),
    ],
)
def test_a_malformed_log_is_named(tmp_path: Path, content: bytes, named: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(AckLogError, match=named) as err:
        read_ack_log(path, "orders-x")
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_a_log_of_another_topic_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AckLogError, match="an ack log of topic 'orders-x', not of 'orders'"):
        read_ack_log(_log(tmp_path), "orders")


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(AckLogError, match="cannot read the ack log"):
        read_ack_log(tmp_path / "none.csv")
