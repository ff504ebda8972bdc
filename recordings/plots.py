"""Plots as PNGs: a scenario's traffic curve, the figures of recorded runs' reports, and what a
soak run saw.

Drawn on a bare Agg canvas (no pyplot, no global backend), so it runs headless and in any thread.

The report plots (`plot_rates` ... `plot_dead_and_late`) take one run or several, overlaid in
the colours of `RUN_COLOURS` (`flashsale compare` draws run A and run B).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from flashsale.scenario.curves import Curve

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from flashsale.scenario.model import Scenario
    from recordings.figures import RunFigures

__all__ = [
    "RUN_COLOURS",
    "SoakReading",
    "plot_curve",
    "plot_dead_and_late",
    "plot_gmv",
    "plot_gmv_by",
    "plot_latency",
    "plot_rates",
    "plot_sell_outs",
    "plot_soak",
]


class SoakReading(Protocol):
    """One reading of a soak run, as `plot_soak` draws it."""

    t_s: float
    rss_mb: dict[str, float | None]
    lag: int | None
    p50_ms: float | None
    p99_ms: float | None


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


# --- recorded runs: the figures of `flashsale report` and `flashsale compare` ---------------

#: One colour per overlaid run (run A, run B, ...).
RUN_COLOURS: Final = ("#c0392b", "#2471a3", "#27ae60", "#8e44ad")
#: The shading of each run's faults on a time axis.
FAULT_COLOURS: Final = ("#d68910", "#7d3c98", "#1e8449", "#5d6d7e")
_BARS: Final = 12  # most names in a GMV breakdown


def _figure(width: float = 10.0, height: float = 4.2, panels: int = 1) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, panels)


def _width(i: int) -> float:
    """Run A's lines are the widest, so identical runs still show both colours."""
    return 2.4 if i == 0 else 1.3


def _legend(fig: Figure, ax: Axes) -> None:
    """The legend below the axes, where it hides no data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(
            handles, labels, loc="outside lower center", ncol=min(3, len(labels)), fontsize=8
        )


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    fig.savefig(out, format="png")
    return out


def _euros(ax: Axes, axis: str = "y") -> None:
    fmt = FuncFormatter(lambda v, _: f"€{v:,.0f}")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)


def _seconds(ax: Axes, runs: Sequence[RunFigures] = ()) -> None:
    ax.set_xlabel("wall seconds after the run's first order message")
    ax.grid(True, alpha=0.3)
    _faults(ax, runs)


def _faults(ax: Axes, runs: Sequence[RunFigures]) -> None:
    """Shade each run's faults on a time axis and name them at the top."""
    for i, run in enumerate(runs):
        colour = FAULT_COLOURS[i % len(FAULT_COLOURS)]
        prefix = f"{run.label.split(':')[0]}: " if len(runs) > 1 else ""
        for start, end, label in run.faults:
            stop = end if end is not None and end > start else start + 0.5
            ax.axvspan(start, stop, color=colour, alpha=0.18, linewidth=0)
            ax.annotate(
                prefix + label,
                xy=(start, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -3),
                textcoords="offset points",
                va="top",
                fontsize=7,
                color=colour,
            )


def plot_rates(runs: Sequence[RunFigures], path: str | Path) -> Path:
    """Order baskets produced and processed per second, beside each scenario's emitted rate."""
    fig, ax = _figure()
    for i, run in enumerate(runs):
        colour = RUN_COLOURS[i % len(RUN_COLOURS)]
        prefix = f"{run.label.split(':')[0]}: " if len(runs) > 1 else ""
        secs = list(range(run.seconds))
        # A count per second is drawn at the middle of its second.
        mids = [s + 0.5 for s in secs]
        ax.plot(
            mids, run.orders_per_s, color=colour, linewidth=_width(i), label=f"{prefix}produced"
        )
        ax.plot(
            mids,
            run.processed_per_s,
            color=colour,
            linewidth=_width(i) * 0.8,
            linestyle="--",
            label=f"{prefix}processed",
        )
        if run.scenario is not None:
            curve = Curve(run.scenario)
            times = [run.produce_span_s * k / 400 for k in range(401)]
            ax.plot(
                times,
                [curve.wall_rate(t) for t in times],
                color=colour if len(runs) > 1 else "#555555",
                linewidth=_width(i) * 0.7,
                linestyle=":",
                label=f"{prefix}scenario curve ({run.scenario.name}, emitted rate)",
            )
    ax.set_ylabel("order baskets per second")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    _seconds(ax, runs)
    _legend(fig, ax)
    if any(r.scenario is None for r in runs):
        ax.set_title("no scenario curve for a run whose scenario is not a preset", fontsize=9)
    return _save(fig, path)


def plot_gmv(runs: Sequence[RunFigures], path: str | Path) -> Path:
    """Cumulative GMV in euros at the end of each second (paid decisions)."""
    fig, ax = _figure()
    for i, run in enumerate(runs):
        euros = [c / 100 for c in run.gmv_cumulative_cents]
        ax.step(
            range(1, run.seconds + 1),
            euros,
            where="post",
            color=RUN_COLOURS[i % len(RUN_COLOURS)],
            linewidth=_width(i),
            label=f"{run.label}: €{euros[-1]:,.2f}",
        )
    ax.set_ylabel("GMV (paid), euros")
    _euros(ax)
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    _seconds(ax, runs)
    _legend(fig, ax)
    return _save(fig, path)


def plot_gmv_by(runs: Sequence[RunFigures], path: str | Path) -> Path:
    """GMV by country and by category: horizontal bars, one per run side by side."""
    fig, axes = _figure(12.0, 5.0, panels=2)
    for ax, dimension in zip(axes, ("country", "category"), strict=True):
        totals: dict[str, int] = {}
        for run in runs:
            for name, cents in run.gmv_by.get(dimension, {}).items():
                totals[name] = max(totals.get(name, 0), cents)
        names = sorted(totals, key=lambda n: (-totals[n], n))[:_BARS][::-1]
        height = 0.8 / max(len(runs), 1)
        for i, run in enumerate(runs):
            by = run.gmv_by.get(dimension, {})
            ax.barh(
                [k + (i - (len(runs) - 1) / 2) * height for k in range(len(names))],
                [by.get(n, 0) / 100 for n in names],
                height=height,
                color=RUN_COLOURS[i % len(RUN_COLOURS)],
                label=run.label,
            )
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_title(f"GMV by {dimension}" + (f" (top {_BARS})" if len(totals) > _BARS else ""))
        _euros(ax, "x")
        ax.grid(True, axis="x", alpha=0.3)
        if not names:
            ax.text(0.5, 0.5, "no paid orders", ha="center", transform=ax.transAxes)
    _legend(fig, axes[0])
    return _save(fig, path)


def plot_sell_outs(runs: Sequence[RunFigures], path: str | Path) -> Path:
    """SKUs sold out against scenario seconds after their restock (each SKU's first sell-out)."""
    fig, ax = _figure()
    for i, run in enumerate(runs):
        colour = RUN_COLOURS[i % len(RUN_COLOURS)]
        times = [t for _, t in run.sell_outs]
        ax.step(
            [0.0, *times],
            range(len(times) + 1),
            where="post",
            color=colour,
            linewidth=_width(i),
            marker="o" if len(times) <= 60 else None,
            markersize=3,
            label=f"{run.label}: {len(times)} SKUs sold out",
        )
        if len(runs) == 1 and len(run.sell_outs) <= 8:  # more would overlap: see the table
            for k, (sku, t) in enumerate(run.sell_outs, start=1):
                ax.annotate(sku, (t, k), xytext=(6, -3), textcoords="offset points", fontsize=7)
    if not any(run.sell_outs for run in runs):
        ax.text(0.5, 0.5, "no SKU sold out", ha="center", transform=ax.transAxes)
    ax.set_xlabel("scenario seconds after the SKU's restock (time to sell out)")
    ax.set_ylabel("SKUs sold out")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    _legend(fig, ax)
    return _save(fig, path)


def plot_latency(runs: Sequence[RunFigures], path: str | Path) -> Path:
    """End-to-end latency p50, p90 and p99 per time bucket (decision broker time)."""
    fig, ax = _figure()
    styles = (("p50_ms", "-", "p50"), ("p90_ms", "--", "p90"), ("p99_ms", ":", "p99"))
    for i, run in enumerate(runs):
        colour = RUN_COLOURS[i % len(RUN_COLOURS)]
        prefix = f"{run.label.split(':')[0]} " if len(runs) > 1 else ""
        mids = [b.start_s + run.latency_bucket_s / 2 for b in run.latency]
        for attr, style, name in styles:
            ax.plot(
                mids,
                [getattr(b, attr) for b in run.latency],
                color=colour,
                linestyle=style,
                linewidth=_width(i) * 0.8,
                marker="." if len(mids) < 40 else None,
                label=f"{prefix}{name}",
            )
    bucket = {r.latency_bucket_s for r in runs}
    each = f"{bucket.pop()} s" if len(bucket) == 1 else "per-run"
    ax.set_title(f"processed_ns − emit_ns of each decision, {each} buckets", fontsize=9)
    ax.set_ylabel("end-to-end latency (ms)")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    _seconds(ax, runs)
    _legend(fig, ax)
    return _save(fig, path)


def plot_dead_and_late(runs: Sequence[RunFigures], path: str | Path) -> Path:
    """Dead letters and late events per second (left, right), totals in the legend."""
    fig, axes = _figure(12.0, 4.0, panels=2)
    for ax, attr, what in zip(
        axes, ("dlq_per_s", "late_per_s"), ("dead letters", "late events"), strict=True
    ):
        for i, run in enumerate(runs):
            counts = getattr(run, attr)
            ax.step(
                range(run.seconds + 1),
                [0, *counts],
                where="pre",
                color=RUN_COLOURS[i % len(RUN_COLOURS)],
                linewidth=_width(i),
                label=run.label,
            )
        ax.set_ylabel(f"{what} per second")
        ax.set_ylim(0, max([1, *(int(max(getattr(r, attr), default=0)) for r in runs)]) * 1.1)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(left=0)
        _seconds(ax, runs)
        ax.set_title(
            f"{what} per second ("
            + ", ".join(f"{int(sum(getattr(r, attr))):,}" for r in runs)
            + " in total)",
            fontsize=10,
        )
    _legend(fig, axes[0])
    return _save(fig, path)


def plot_soak(samples: Sequence[SoakReading], max_growth_mb: float, path: str | Path) -> Path:
    """A soak run: resident memory per process, consumer lag, latency p50/p99 over time."""
    fig = Figure(figsize=(10.0, 8.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    memory, lag, latency = fig.subplots(3, 1, sharex=True)
    minutes = [s.t_s / 60 for s in samples]
    names = list(samples[0].rss_mb) if samples else []
    # The embedded broker keeps every message in memory: gigabytes beside processes of a
    # hundred megabytes, so it gets the right-hand axis.
    broker = memory.twinx() if "broker" in names else None
    for i, name in enumerate(names):
        values = [s.rss_mb.get(name) for s in samples]
        ax = broker if name == "broker" and broker is not None else memory
        ax.plot(
            minutes,
            [float("nan") if v is None else v for v in values],
            label=name if ax is memory else f"{name} (right axis)",
            color=RUN_COLOURS[i % len(RUN_COLOURS)],
            linestyle="--" if ax is broker else "-",
        )
    memory.set_ylabel("RSS (MB)")
    memory.set_title(
        f"resident memory (bound: {max_growth_mb:,.0f} MB of growth after warm-up; "
        "the embedded broker's is the data it stores)",
        fontsize=9,
    )
    handles, labels = memory.get_legend_handles_labels()
    if broker is not None:
        broker.set_ylabel("broker RSS (MB)")
        broker.set_ylim(bottom=0)
        more = broker.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    memory.legend(handles, labels, fontsize=8, ncol=len(names) or 1, loc="upper left")
    lag.plot(
        minutes, [float("nan") if s.lag is None else s.lag for s in samples], color=RUN_COLOURS[0]
    )
    lag.set_ylabel("consumer lag (messages)")
    for label, attr, style in (("p50", "p50_ms", "-"), ("p99", "p99_ms", ":")):
        values = [getattr(s, attr) for s in samples]
        latency.plot(
            minutes,
            [float("nan") if v is None else v for v in values],
            style,
            color=RUN_COLOURS[1],
            label=label,
        )
    latency.set_ylabel("end-to-end latency (ms)")
    latency.set_xlabel("minutes of the soak")
    latency.legend(fontsize=8, loc="upper left")
    for ax in (memory, lag, latency):
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    return _save(fig, path)
