"""The acknowledgement log: one line per write the broker acknowledged, so `verify --ack-log`
can prove each is on the topic (docs/reliability.md, "Acknowledged writes").

A producer writes it (`AckLogWriter`) and `verify` reads it (`read_ack_log`). The format is
text, one comma-separated line per acknowledged message after two header lines::

    # flashsale ack log 1 topic=orders
    partition,offset,seq,crc32
    2,1017,523,9f3a0c11

`seq` is the message's `flashsale.seq` header (empty when it has none) and `crc32` the
CRC-32 of its key and value bytes together (`digest`), 8 hex digits. Lines are written as the
acknowledgements arrive and flushed to the operating system each time, so a producer killed
mid-run leaves every line of the acknowledgements it had handled; the last line may be cut
short by the kill, and a reader drops a last line without its newline.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "ACK_LINE",
    "AckLogError",
    "AckLogWriter",
    "AckedWrite",
    "ack_line",
    "digest",
    "read_ack_log",
]

_MAGIC = b"# flashsale ack log 1 topic="
_COLUMNS = b"partition,offset,seq,crc32\n"

#: One line of a write with a seq: `ACK_LINE % (partition, offset, seq, crc32)` (`ack_line`
#: for any write; this for a producer's hot path).
ACK_LINE = b"%d,%d,%d,%08x\n"


class AckLogError(ValueError):
    """An acknowledgement log that cannot be read; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class AckedWrite:
    """One write the broker acknowledged: where it put it and what it was."""

    partition: int
    offset: int
    #: The message's `flashsale.seq` header, None when it had none.
    seq: int | None
    #: CRC-32 of the key and value bytes (`digest`).
    crc32: int


def digest(key: bytes | None, value: bytes | None) -> int:
    """The CRC-32 of a message's key and value bytes, one after the other (None: empty)."""
    return zlib.crc32(value or b"", zlib.crc32(key or b""))


def ack_line(partition: int, offset: int, seq: bytes | int | None, crc32: int) -> bytes:
    """One line of the log (`seq` as the header's bytes, an int, or None)."""
    if seq is None:
        seq = b""
    elif isinstance(seq, int):
        seq = b"%d" % seq
    return b"%d,%d,%s,%08x\n" % (partition, offset, seq, crc32)


class AckLogWriter:
    """Appends the lines of one producer run's acknowledgements to a new file."""

    def __init__(self, path: Path, topic: str) -> None:
        self.path = path
        self.lines = 0
        self._file: BinaryIO | None = path.open("wb")
        self._file.write(_MAGIC + topic.encode() + b"\n" + _COLUMNS)
        self._file.flush()

    def write(self, lines: list[bytes]) -> None:
        """Write `lines` (from `ack_line`) and hand them to the operating system now."""
        if lines and self._file is not None:
            self._file.write(b"".join(lines))
            self._file.flush()
            self.lines += len(lines)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def read_ack_log(path: Path, topic: str | None = None) -> list[AckedWrite]:
    """Every acknowledged write `path` lists, in its order. A last line without its newline
    (a producer killed while writing it) is dropped; a file cut inside its header holds none.
    With `topic`, a log of another topic is an `AckLogError`, as is any malformed line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AckLogError(f"{path}: cannot read the ack log ({exc.strerror})") from None
    end = data.find(b"\n")
    if end < 0:
        if _MAGIC.startswith(data[: len(_MAGIC)]):
            return []  # killed while writing its first line: nothing acknowledged yet
        raise AckLogError(f"{path}: not a flashsale ack log")
    first, rest = data[:end], data[end + 1 :]
    if not first.startswith(_MAGIC):
        raise AckLogError(f"{path}: not a flashsale ack log")
    if not rest.startswith(_COLUMNS):
        if _COLUMNS.startswith(rest):
            return []  # killed while writing its second line
        raise AckLogError(f"{path}: not a flashsale ack log")
    if topic is not None and first != _MAGIC + topic.encode():
        logged = first.removeprefix(_MAGIC).decode(errors="replace")
        raise AckLogError(f"{path}: an ack log of topic {logged!r}, not of {topic!r}")
    # After the last newline: nothing, or a line the kill cut short.
    body = rest[len(_COLUMNS) :].split(b"\n")[:-1]
    return list(_parse(path, body))


def _parse(path: Path, body: Iterable[bytes]) -> Iterable[AckedWrite]:
    for number, line in enumerate(body, start=3):
        try:
            partition, offset, seq, crc = line.split(b",")
            if len(crc) != 8:
                raise ValueError(crc)
            yield AckedWrite(int(partition), int(offset), int(seq) if seq else None, int(crc, 16))
        except ValueError:
            shown = line[:60].decode(errors="replace")
            raise AckLogError(f"{path}:{number}: not an acknowledgement line: {shown!r}") from None
