"""The HTML pages of `flashsale report` and `flashsale compare`, with their PNGs beside them.

A report is one self-contained page (its PNGs embedded as data URIs and also written beside
it) and a JSON summary: `verify`'s verdict on the recorded topics plus the report's own
figures (`recordings.figures`). A comparison overlays two runs' plots and lists the summary
figures that differ. The pages reach for nothing outside themselves.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from recordings.figures import Difference, RunFigures, differences, figures_of
from recordings.format import RecordedRun

#: The plots of a page, in order: (file suffix, title, plot function in recordings.plots).
PLOTS: Final = (
    ("rates", "Orders per second: the scenario's curve, produced and processed", "plot_rates"),
    ("gmv", "Cumulative GMV (paid decisions)", "plot_gmv"),
    ("gmv-by", "GMV by country and by category", "plot_gmv_by"),
    ("sell-outs", "Sell-out timeline of flash-sale SKUs", "plot_sell_outs"),
    ("latency", "End-to-end latency percentiles over time", "plot_latency"),
    ("dlq-late", "Dead letters and late events", "plot_dead_and_late"),
)


_CSS: Final = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;
background:#f6f6f4}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:1.5em;margin:0 0 4px}h2{font-size:1.15em;margin:28px 0 8px}
.sub{color:#666;margin:0 0 16px}
.ok{color:#1e7d32;font-weight:600}.bad{color:#b71c1c;font-weight:600}
figure{background:#fff;border:1px solid #ddd;border-radius:6px;margin:0 0 18px;padding:10px}
figure img{max-width:100%;height:auto;display:block}
figcaption{color:#555;font-size:.9em;margin-top:6px}
table{border-collapse:collapse;background:#fff;font-size:.92em}
th,td{border:1px solid #ddd;padding:4px 10px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px;overflow:auto;
font-size:.85em}
"""


def _page(title: str, subtitle: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        # No favicon request: the page must not reach for anything.
        '<link rel=icon href="data:,">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body><main>"
        f"<h1>{html.escape(title)}</h1><p class=sub>{html.escape(subtitle)}</p>\n"
        f"{body}</main></body></html>\n"
    )


def _figure(png: Path, caption: str) -> str:
    data = base64.b64encode(png.read_bytes()).decode()
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)} ({html.escape(png.name)})</figcaption></figure>\n"
    )


def _verdict(fig: RunFigures) -> str:
    if not fig.verify_differences:
        return f"<p class=ok>{html.escape(fig.label)}: reconciled with the truth</p>"
    items = "".join(f"<li>{html.escape(d)}</li>" for d in fig.verify_differences)
    return f"<p class=bad>{html.escape(fig.label)}: NOT reconciled</p><ul>{items}</ul>"


def _plots(runs: Sequence[RunFigures], out: Path, tick: Callable[[str], None]) -> list[Path]:
    from recordings import plots

    written = []
    for suffix, title, function in PLOTS:
        tick(f"plotting {title.lower()}")
        path = out.with_name(f"{out.stem}-{suffix}.png")
        getattr(plots, function)(runs, path)
        written.append(path)
    return written


def shown(value: Any) -> str:
    """A summary figure as a page or a table shows it."""
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "—"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def relative(d: Difference) -> str:
    """A difference relative to run A, as a signed percentage ("—" where A is 0)."""
    return "—" if d.relative is None else f"{d.relative:+.2%}"


def _subtitle(fig: RunFigures) -> str:
    run = fig.summary["run"]
    return (
        f"{fig.label}: {run['orders_produced']:,} order lines, "
        f"GMV €{run['gmv_cents_expected'] / 100:,.2f}, {fig.seconds} s from the first order "
        f"to the last message"
    )


def _sell_out_table(fig: RunFigures, limit: int = 20) -> str:
    if not fig.sell_outs:
        return "<h2>Sell-outs</h2><p>No SKU sold out.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(sku)}</td><td class=n>{t:,.1f}</td></tr>"
        for sku, t in fig.sell_outs[:limit]
    )
    more = len(fig.sell_outs) - limit
    tail = f"<p>… and {more} more.</p>" if more > 0 else ""
    return (
        f"<h2>Sell-outs ({len(fig.sell_outs)} SKUs, first {min(limit, len(fig.sell_outs))})</h2>"
        "<table><tr><th>SKU</th><th>scenario seconds after restock</th></tr>"
        f"{rows}</table>{tail}"
    )


def _difference_html(diffs: Sequence[Difference], runs: Sequence[RunFigures]) -> str:
    head = "<h2>Differences of the summary figures</h2>"
    if not diffs:
        return head + "<p class=ok>no differences</p>"
    rows = "".join(
        f"<tr><td>{html.escape(d.name)}</td><td class=n>{html.escape(shown(d.a))}</td>"
        f"<td class=n>{html.escape(shown(d.b))}</td>"
        f"<td class=n>{'—' if d.diff is None else html.escape(shown(d.diff))}</td>"
        f"<td class=n>{relative(d)}</td></tr>"
        for d in diffs
    )
    return (
        f"{head}<p>{html.escape(runs[0].label)}; {html.escape(runs[1].label)}</p>"
        "<table><tr><th>figure</th><th>A</th><th>B</th><th>B − A</th><th>relative</th></tr>"
        f"{rows}</table>"
    )


#: Steps `write_report` ticks, and `write_compare` (reading, figures, plots, the page).
REPORT_STEPS: Final = 2 + len(PLOTS)
COMPARE_STEPS: Final = 4 + len(PLOTS)


def write_report(run: RecordedRun, page: Path, tick: Callable[[str], None]) -> list[Path]:
    """Write the report of `run` to `page`, its PNGs and `summary.json` beside it; return
    every file written."""
    fig = figures_of(run, step=tick)
    pngs = _plots([fig], page, tick)
    summary_path = page.with_name("summary.json")
    summary = {**fig.summary, "verify_differences": fig.verify_differences}
    summary_path.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    body = [_verdict(fig)]
    body += [_figure(p, title) for p, (_, title, _) in zip(pngs, PLOTS, strict=True)]
    body.append(_sell_out_table(fig))
    body.append(
        f"<h2>Summary ({html.escape(summary_path.name)})</h2><pre>"
        f"{html.escape(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())}</pre>"
    )
    page.write_text(
        _page(f"flashsale report: {run.path.name}", _subtitle(fig), "".join(body)),
        encoding="utf-8",
    )
    return [page, *pngs, summary_path]


def write_compare(
    runs: Sequence[tuple[str, RecordedRun]], page: Path, tick: Callable[[str], None]
) -> tuple[list[Difference], list[RunFigures], list[Path]]:
    """Write the comparison of two runs, each with its letter, to `page` (PNGs and
    `<page>.json` beside it); return the differences of their summaries (B - A), each run's
    figures and every file written."""
    figs = []
    for letter, run in runs:
        fig = figures_of(run, step=tick)
        fig.label = f"{letter}: {fig.label}"
        figs.append(fig)
    diffs = differences(figs[0].summary, figs[1].summary)
    pngs = _plots(figs, page, tick)
    body = [_difference_html(diffs, figs), *(_verdict(f) for f in figs)]
    body += [_figure(p, title) for p, (_, title, _) in zip(pngs, PLOTS, strict=True)]
    for fig in figs:
        body.append(
            f"<h2>Summary of {html.escape(fig.label)}</h2><pre>"
            + html.escape(orjson.dumps(fig.summary, option=orjson.OPT_INDENT_2).decode())
            + "</pre>"
        )
    (_, run_a), (_, run_b) = runs
    page.write_text(
        _page(
            f"flashsale compare: {run_a.path.name} vs {run_b.path.name}",
            f"{figs[0].label} against {figs[1].label}",
            "".join(body),
        ),
        encoding="utf-8",
    )
    json_path = page.with_name(f"{page.stem}.json")
    json_path.write_bytes(
        orjson.dumps(
            {
                "a": str(run_a.path),
                "b": str(run_b.path),
                "differences": [d.__dict__ for d in diffs],
            },
            option=orjson.OPT_INDENT_2,
        )
    )
    return diffs, figs, [page, *pngs, json_path]
