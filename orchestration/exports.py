"""`flashsale export`: a progress bar per stage while a recorded run is exported, then what
was written."""

from __future__ import annotations

from pathlib import Path

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from orchestration.console import console, error
from recordings.export import EVENTS_FILE, ExportError, check_out, export_run
from recordings.format import RunDirError, load_run

__all__ = ["run_export"]


def run_export(run_dir: Path, out: Path, force: bool) -> int:
    """`flashsale export`: 0 when written, 2 on bad input (one line)."""
    try:
        check_out(out, force)  # before reading a large run
        with console.status(f"reading {run_dir} ..."):
            run = load_run(run_dir)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            # Piped output gets the result lines only.
            disable=not console.is_terminal,
        ) as progress:
            tasks: dict[str, TaskID] = {}

            def tick(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=max(total, 1))
                progress.update(tasks[stage], completed=done, total=max(total, 1))

            report = export_run(run, out, force, tick)
    except (RunDirError, ExportError, OSError) as exc:
        return error(str(exc))
    packed = f" ({report.packed_messages:,} packed)" if report.packed_messages else ""
    console.print(
        f"export: {out / EVENTS_FILE}: {report.rows:,} events of {report.messages:,} messages"
        f"{packed}, {report.dead_letters:,} dead letters"
    )
    if report.decisions_from == "truth":
        console.print(
            "decisions: the truth recomputed from orders (the run was recorded without the "
            "workers' decisions, dead letters, late events or sell-outs)"
        )
    else:
        console.print("decisions: the workers' own, from the recorded topics")
    if report.series_skipped:
        console.print(f"no series: {report.series_skipped}")
    else:
        console.print(f"series: {len(report.series)} CSVs in {out / 'series'}")
    return 0
