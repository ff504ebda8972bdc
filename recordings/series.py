"""The data behind each plot of `flashsale report`, as CSV: one file per plot (`report.PLOTS`),
named by the plot's suffix, with a header row whose names carry the units.

Time columns count wall seconds from the run's first message on `orders` (broker time), the
report's axis; money is integer euro cents; latency is milliseconds.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from recordings.figures import RunFigures
from recordings.report import PLOTS

__all__ = ["SERIES", "series_rows", "write_series"]

Rows = tuple[Sequence[str], Iterable[Sequence[Any]]]


def _rates(fig: RunFigures) -> Rows:
    curve = None
    if fig.scenario is not None:
        from flashsale.scenario.curves import Curve

        curve = Curve(fig.scenario)

    def expected(second: int) -> float | str:
        # The curve is drawn over the seconds the producer sent in, read here at each
        # second's middle; empty where it is not drawn.
        if curve is None or second > fig.produce_span_s:
            return ""
        return round(curve.wall_rate(second + 0.5), 3)

    return (
        (
            "second_start_s",
            "orders_produced_per_s",
            "orders_processed_per_s",
            "scenario_orders_emitted_per_s",
        ),
        (
            (s, int(fig.orders_per_s[s]), int(fig.processed_per_s[s]), expected(s))
            for s in range(fig.seconds)
        ),
    )


def _gmv(fig: RunFigures) -> Rows:
    return (
        ("second_end_s", "gmv_paid_cumulative_cents"),
        ((s + 1, int(c)) for s, c in enumerate(fig.gmv_cumulative_cents)),
    )


def _gmv_by(fig: RunFigures) -> Rows:
    rows = [
        (dimension, name, cents)
        for dimension in ("country", "category")
        for name, cents in sorted(
            fig.gmv_by.get(dimension, {}).items(), key=lambda kv: (-kv[1], kv[0])
        )
    ]
    return ("dimension", "name", "gmv_paid_cents"), rows


def _sell_outs(fig: RunFigures) -> Rows:
    return (
        ("sku", "time_to_sell_out_scenario_s", "skus_sold_out"),
        ((sku, t, k) for k, (sku, t) in enumerate(fig.sell_outs, start=1)),
    )


def _latency(fig: RunFigures) -> Rows:
    return (
        ("bucket_start_s", "bucket_s", "decisions", "p50_ms", "p90_ms", "p99_ms"),
        (
            (int(b.start_s), fig.latency_bucket_s, b.count, *_ms(b.p50_ms, b.p90_ms, b.p99_ms))
            for b in fig.latency
        ),
    )


def _ms(*values: float) -> tuple[float, ...]:
    """Milliseconds, rounded to the microsecond."""
    return tuple(round(v, 3) for v in values)


def _dead_and_late(fig: RunFigures) -> Rows:
    return (
        ("second_start_s", "dead_letters_per_s", "late_events_per_s"),
        ((s, int(fig.dlq_per_s[s]), int(fig.late_per_s[s])) for s in range(fig.seconds)),
    )


#: The rows of each plot's CSV, by the plot's suffix in `report.PLOTS`.
SERIES: Final[dict[str, Callable[[RunFigures], Rows]]] = {
    "rates": _rates,
    "gmv": _gmv,
    "gmv-by": _gmv_by,
    "sell-outs": _sell_outs,
    "latency": _latency,
    "dlq-late": _dead_and_late,
}


def series_rows(fig: RunFigures, suffix: str) -> Rows:
    """The header and rows of the CSV of the plot `suffix`."""
    return SERIES[suffix](fig)


def write_series(fig: RunFigures, folder: Path) -> list[Path]:
    """Write one CSV per plot of the report into `folder` (created); return the files."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, _, _ in PLOTS:
        header, rows = series_rows(fig, suffix)
        path = folder / f"{suffix}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(header)
            out.writerows(rows)
        written.append(path)
    return written
