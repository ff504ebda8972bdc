"""The worker reads back whatever offsets its Faust stream skipped (faust-streaming #216)."""

from __future__ import annotations

import pytest

from streams.recovery import missing_ranges


@pytest.mark.parametrize(
    ("applied", "offsets", "upto", "gaps"),
    [
        (9, [10, 11, 12], None, []),
        (9, [13, 14], None, [(10, 13)]),  # the stream resumed past the state
        (9, [10, 13, 14], None, [(11, 13)]),  # measured: a jump between two fetches
        (9, [10, 12, 15], None, [(11, 12), (13, 15)]),
        (9, [7, 8, 9, 10], None, []),  # re-deliveries are no gap
        (9, [12, 10, 11, 12], None, [(10, 12)]),  # a jump forward, then back
        (9, [], 14, [(10, 14)]),  # a quiet partition whose last messages were skipped
        (9, [10, 11], 12, []),  # nothing missing when `upto` is already reached
        (-1, [], 0, []),
        (-1, [2], 5, [(0, 2), (3, 5)]),
    ],
)
def test_missing_ranges(
    applied: int, offsets: list[int], upto: int | None, gaps: list[tuple[int, int]]
) -> None:
    assert missing_ranges(applied, offsets, upto) == gaps
