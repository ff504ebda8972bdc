"""A JSON-lines file sink, driven by the scenario clock as fast as the disk takes it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from producers.metrics import ProducerMetrics
from producers.sinks.base import CountingSink, Headers, ProduceStats

__all__ = ["JsonlSink"]


class JsonlSink(CountingSink):
    """One JSON object per line: `{"key": SKU, "value": {event}}`; driven by the scenario clock."""

    wall_clock = False

    def __init__(self, path: Path, metrics: ProducerMetrics | None = None) -> None:
        self.path = path
        self.metrics = metrics
        self.stats = ProduceStats()
        self._file: Any = None
        self._key_literals: dict[bytes, bytes] = {}

    async def start(self) -> None:
        """Open (truncate) the file."""
        self._file = self.path.open("wb")

    async def _send(
        self,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        headers: Headers | None,
        restocks: int,
        seqs: Sequence[int] | None,
    ) -> None:
        literals = self._key_literals
        lines = []
        for key, value in zip(keys, values, strict=True):
            literal = literals.get(key)
            if literal is None:
                literal = literals[key] = orjson.dumps(key.decode())
            lines.append(b'{"key":%b,"value":%b}\n' % (literal, value))
        self._count_sent(len(values), restocks)
        self._file.write(b"".join(lines))
        self._count_settled(len(values), 0)

    async def flush(self) -> None:
        """Flush the file."""
        if self._file is not None:
            self._file.flush()
        self.stats.finished_ns = time.time_ns()

    async def stop(self) -> None:
        """Close the file."""
        if self._file is not None:
            await self.flush()
            self._file.close()
            self._file = None
