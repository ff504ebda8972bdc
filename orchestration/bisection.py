"""The search of `flashsale rate`: from a start ratio, double while the pipeline holds or halve
while it fails, then bisect geometrically between the highest ratio held and the lowest
failed, within a precision and a trial budget."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

__all__ = ["STOPS", "Search", "search"]

#: How a search ended: one trial held and one failed within the precision; the trial budget
#: ran out; the ratio held at its cap (the scenario's whole real rate, or the most a scenario
#: may emit); or no ratio down to the floor held.
STOPS: Final = ("bracketed", "max-trials", "cap", "floor")


@dataclass
class Search:
    """What a search tried, in order, and where it stopped."""

    tried: list[tuple[float, bool]] = field(default_factory=list)
    held: float | None = None
    """The highest ratio that held (None: none did)."""
    failed: float | None = None
    """The lowest ratio above `held` that failed (None: none did)."""
    stopped: str = ""
    """One of `STOPS`."""


def _round(ratio: float) -> float:
    """`ratio` to 4 significant digits: trial files and lines stay readable."""
    return float(f"{ratio:.4g}")


def _between(lo: float, hi: float) -> float:
    """The geometric middle of `lo` and `hi`, rounded when that keeps it strictly inside."""
    mid = math.sqrt(lo * hi)
    short = _round(mid)
    return short if lo < short < hi else mid


def search(
    holds: Callable[[float], bool],
    start: float,
    *,
    min_ratio: float = 1e-5,
    max_ratio: float = 1.0,
    precision: float = 0.1,
    max_trials: int = 8,
) -> Search:
    """Find the highest sample ratio at which `holds(ratio)` is true, calling it at most
    `max_trials` times: from `start`, double while it holds (to `max_ratio` at most) or halve
    while it fails (to `min_ratio` at least), then bisect geometrically until the ratio that
    failed is within `1 + precision` of the one that held."""
    found = Search()

    def attempt(ratio: float) -> bool:
        held = holds(ratio)
        found.tried.append((ratio, held))
        return held

    def stop(reason: str, lo: float | None, hi: float | None) -> Search:
        found.held, found.failed, found.stopped = lo, hi, reason
        return found

    lo: float | None = None
    hi: float | None = None
    if attempt(start):
        lo = start
        while hi is None:
            if lo >= max_ratio:
                return stop("cap", lo, None)
            if len(found.tried) >= max_trials:
                return stop("max-trials", lo, None)
            ratio = min(_round(lo * 2), max_ratio)
            if attempt(ratio):
                lo = ratio
            else:
                hi = ratio
    else:
        hi = start
        while lo is None:
            if hi <= min_ratio:
                return stop("floor", None, hi)
            if len(found.tried) >= max_trials:
                return stop("max-trials", None, hi)
            ratio = max(_round(hi / 2), min_ratio)
            if attempt(ratio):
                lo = ratio
            else:
                hi = ratio
    while hi / lo > 1 + precision:
        if len(found.tried) >= max_trials:
            return stop("max-trials", lo, hi)
        ratio = _between(lo, hi)
        if attempt(ratio):
            lo = ratio
        else:
            hi = ratio
    return stop("bracketed", lo, hi)
