"""A scenario's traffic curve as a PNG: the first minutes and the whole day, real and emitted.

Drawn on a bare Agg canvas (no pyplot, no global backend), so it runs headless and in any thread.
Like `flashsale/cli`, this module sits above `producers/` and may import it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from producers.curves import Curve

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from flashsale.scenario import Scenario

__all__ = ["plot_curve"]

_SAMPLES: Final = 2_000
_ZOOM_S: Final = 600.0  # the left panel: the first ten minutes


def plot_curve(scenario: Scenario, path: str | Path, hours: float | None = None) -> Path:
    """Write a PNG of the scenario's curve to `path`; `hours` limits the right panel's span.

    Left: the first ten minutes, linear. Right: the whole span (the horizon by default), on a
    log scale so the quiet hours show beside the spike; a span of ten minutes or less gets one
    linear panel. Left axes: real orders per scenario second; right axes: orders emitted per
    wall second. The peak is marked.
    """
    curve = Curve(scenario)
    span = curve.horizon_s if hours is None else hours * 3_600.0
    if not span > 0:
        raise ValueError(f"hours must be positive, got {hours}")
    zoom = min(_ZOOM_S, span)

    two = zoom < span
    fig = Figure(figsize=(13 if two else 7.5, 5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    if two:
        left, right = fig.subplots(1, 2)
        _panel(left, curve, zoom, "the first ten minutes", log=False)
        _panel(right, curve, span, f"{_duration(span)} from the start (log scale)", log=True)
    else:
        _panel(fig.subplots(), curve, span, f"{_duration(span)} from the start", log=False)

    total = curve.cumulative(span)
    fig.suptitle(
        f"{scenario.name}: {total:,.0f} real orders in {_duration(span)}, "
        f"{scenario.scale.sample_ratio * total:,.0f} emitted over "
        f"{_duration(span / curve.compression)} of wall time",
        fontsize=11,
    )
    out = Path(path)
    fig.savefig(out, format="png")
    return out


def _panel(ax: Axes, curve: Curve, span: float, title: str, *, log: bool) -> None:
    """Real rate over [0, span] with an emitted-rate axis, the peak marked."""
    in_minutes = span <= 2 * 3_600
    unit, unit_s = ("minutes", 60.0) if in_minutes else ("hours", 3_600.0)
    if span <= 120:
        unit, unit_s = "seconds", 1.0
    times = [span * i / _SAMPLES for i in range(_SAMPLES + 1)]
    peak_t, peak_rate = curve.peak()
    if peak_t <= span:
        times = sorted({*times, peak_t})
    rates = [curve.rate(t) for t in times]
    ax.plot([t / unit_s for t in times], rates, color="#c0392b", linewidth=1.4)
    ax.fill_between([t / unit_s for t in times], rates, color="#c0392b", alpha=0.12)
    ax.set_xlim(0, span / unit_s)
    top = max(rates) or 1.0
    positive = [r for r in rates if r > 0]
    if log and positive:
        ax.set_yscale("log")
        ax.set_ylim(min(positive) / 2, top * 3)
    else:
        ax.set_ylim(0, top * 1.15)
    ax.set_xlabel(f"scenario time after start ({unit})")
    ax.set_ylabel("real orders per scenario second")
    ax.set_title(title, fontsize=10)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.grid(True, alpha=0.3)

    to_wall = curve.sample_ratio * curve.compression
    # Emitted wall rate is the real rate times a constant: the same curve on a scaled axis.
    wall = ax.secondary_yaxis("right", functions=(_scaled(to_wall), _scaled(1.0 / to_wall)))
    wall.set_ylabel("emitted orders per wall second")
    wall.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))

    if peak_t <= span:
        ax.annotate(
            f"peak {peak_rate:,.0f}/s at {_clock(peak_t)}\n({peak_rate * to_wall:,.0f} emitted/s)",
            xy=(peak_t / unit_s, peak_rate),
            xytext=(0.45, 0.93),
            textcoords="axes fraction",
            va="top",
            fontsize=9,
            arrowprops={"arrowstyle": "->", "color": "#555555"},
        )


def _scaled(factor: float) -> Callable[[Any], Any]:
    """Multiplication by `factor`, for axis transforms (works on floats and arrays)."""

    def scale(values: Any) -> Any:
        return values * factor

    return scale


def _clock(t_s: float) -> str:
    """Scenario seconds as hh:mm:ss after the start."""
    whole = round(t_s)
    return f"{whole // 3_600:02d}:{whole % 3_600 // 60:02d}:{whole % 60:02d}"


def _duration(seconds: float) -> str:
    """A span in the largest unit that keeps it readable."""
    if seconds >= 2 * 3_600:
        return f"{seconds / 3_600:g} h"
    if seconds >= 120:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
