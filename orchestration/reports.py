"""`flashsale report` and `flashsale compare`: a progress bar while the pages are written, then
where they are and, for a comparison, the table of what differs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestration.console import console, error
from recordings.figures import Difference, RunFigures
from recordings.format import RunDirError, load_run
from recordings.report import (
    COMPARE_STEPS,
    REPORT_STEPS,
    relative,
    shown,
    write_compare,
    write_report,
)

__all__ = ["run_compare", "run_report"]


class _UsageError(Exception):
    """Bad input: one line on stderr, exit 2."""


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[step]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        # Piped output gets the result lines only.
        disable=not console.is_terminal,
    )


def _output(out: Path, default_name: str) -> Path:
    """Where a page goes: `out` (inside it when it is a folder); its folder is created."""
    if out.is_dir():
        out = out / default_name
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _UsageError(f"cannot create the folder of --out {out}: {exc.strerror}") from None
    return out


def run_report(run_dir: Path, out: Path | None) -> int:
    """`flashsale report`: the page, its PNGs and summary.json; 0 when written, 2 on bad input."""
    try:
        page = _output(out if out is not None else run_dir / "report.html", "report.html")
        with _progress() as progress:
            task = progress.add_task(f"report {run_dir.name}", total=REPORT_STEPS + 1, step="")

            def tick(what: str) -> None:
                progress.update(task, advance=1, step=what)

            progress.update(task, step=f"reading {run_dir}")
            written = write_report(load_run(run_dir), page, tick)
            progress.update(task, advance=1, step="written")
    except (RunDirError, _UsageError, OSError) as exc:
        return error(str(exc))
    console.print(f"report: {page} ({len(written) - 2} PNGs and {written[-1].name} beside it)")
    return 0


def run_compare(run_a: Path, run_b: Path, out: Path) -> int:
    """`flashsale compare`: both runs overlaid, and the differences of their summaries."""
    try:
        page = _output(out, "compare.html")
        with _progress() as progress:
            task = progress.add_task("compare", total=COMPARE_STEPS + 1, step="")

            def tick(what: str) -> None:
                progress.update(task, advance=1, step=what)

            runs = []
            for letter, path in (("A", run_a), ("B", run_b)):
                progress.update(task, step=f"reading {path}")
                runs.append((letter, load_run(path)))
            diffs, figs, written = write_compare(runs, page, tick)
            progress.update(task, advance=1, step="written")
    except (RunDirError, _UsageError, OSError) as exc:
        return error(str(exc))
    _print_differences(diffs, figs)
    console.print(f"compare: {page} ({len(written) - 2} PNGs and {page.stem}.json beside it)")
    return 0


def _print_differences(diffs: Sequence[Difference], runs: Sequence[RunFigures]) -> None:
    if not diffs:
        console.print(f"no differences between {runs[0].label} and {runs[1].label}")
        return
    table = Table(title="differences of the summary figures (B − A)", title_justify="left")
    table.add_column("figure")
    for name in ("A", "B", "B − A", "relative"):
        table.add_column(name, justify="right")
    for d in diffs:
        table.add_row(
            d.name,
            shown(d.a),
            shown(d.b),
            "—" if d.diff is None else shown(d.diff),
            relative(d),
        )
    console.print(table)
    console.print(f"{runs[0].label}\n{runs[1].label}")
