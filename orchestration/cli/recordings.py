"""`flashsale record`, `replay`, `report`, `compare` and `export`: recorded runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestration.cli.app import (
    BootstrapOpt,
    ClientConfigOpt,
    KafkaOpt,
    app,
    fail,
    need,
    settings_for,
)

__all__ = ["compare", "export", "record", "replay", "report"]


@app.command()
def record(
    out: Annotated[Path, typer.Option("--out", help="The run directory to write (or continue).")],
    topics: Annotated[
        str | None,
        typer.Option(
            "--topics",
            help="Comma-separated topics [default: every topic of a run, the workers' state "
            "changelog included].",
        ),
    ] = None,
    bootstrap_servers: BootstrapOpt = None,
    client_config: ClientConfigOpt = None,
) -> None:
    """Capture every message of a run's topics, up to their ends now, into Parquet files and a
    manifest; run it again on an interrupted RUN_DIR to finish it."""
    need("research", "flashsale record")
    from orchestration.recording import run_record
    from recordings.record import RecordError

    settings = settings_for(bootstrap_servers, client_config=client_config)
    if not settings.bootstrap_servers:
        raise typer.BadParameter(
            "record reads an existing run: pass --bootstrap-servers or set "
            "FLASHSALE_BOOTSTRAP_SERVERS (a new embedded broker would be empty)"
        )
    names = None
    if topics is not None:
        names = [t.strip() for t in topics.split(",") if t.strip()]
        if not names:
            raise typer.BadParameter("no topic named", param_hint="'--topics'")
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} is a file", param_hint="'--out'")
    if not out.resolve().parent.is_dir():
        raise typer.BadParameter(f"no folder {out.resolve().parent}", param_hint="'--out'")
    try:
        code = run_record(settings, names, out)
    except RecordError as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)


@app.command()
def replay(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by flashsale record.")],
    speed: Annotated[
        str,
        typer.Option(
            "--speed",
            help="1: the recorded pace; 10: ten times faster; max: as fast as the broker takes.",
        ),
    ] = "1",
    keep_emit_ns: Annotated[
        bool,
        typer.Option(
            "--keep-emit-ns",
            help="Send values byte-equal to the recording (end-to-end latency then spans the "
            "time since the recording).",
        ),
    ] = False,
    summary_json: Annotated[
        Path | None,
        typer.Option("--summary-json", help="Without --bootstrap-servers: the replay's summary."),
    ] = None,
    bootstrap_servers: BootstrapOpt = None,
    kafka: KafkaOpt = False,
    client_config: ClientConfigOpt = None,
) -> None:
    """Re-emit a recorded run's orders (keys, headers, partitions, order, pace). Without
    --bootstrap-servers: into a fresh embedded broker (or local Kafka) with a worker, then
    verify the replay and compare it with the recorded run."""
    need("research", "flashsale replay")
    from orchestration.recording import run_replay
    from recordings.replay import ReplayError

    try:
        pace = None if speed == "max" else float(speed)
    except ValueError:
        pace = -1.0
    if pace is not None and not pace > 0:
        raise typer.BadParameter(
            f"{speed!r} is not a positive number or max", param_hint="'--speed'"
        )
    settings = settings_for(bootstrap_servers, kafka, client_config=client_config)
    try:
        code = run_replay(settings, run_dir, pace, not keep_emit_ns, summary_json)
    except ReplayError as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by flashsale record.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="The HTML page [default RUN_DIR/report.html]."),
    ] = None,
) -> None:
    """One HTML page of a recorded run's plots (PNGs and summary.json beside it)."""
    need("research", "flashsale report")
    from orchestration.reports import run_report

    raise typer.Exit(run_report(run_dir, out))


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by flashsale record.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="The export folder: new or empty (missing folders are created), or an "
            "earlier export with --force.",
        ),
    ],
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace the earlier export that --out holds."),
    ] = False,
) -> None:
    """A recorded run as typed Parquet, one row per event with its decision, and the report's
    per-second series as CSV, for DuckDB, pandas or Arrow."""
    need("research", "flashsale export")
    from orchestration.exports import run_export

    raise typer.Exit(run_export(run_dir, out, force))


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="Run A: a run directory.")],
    run_b: Annotated[Path, typer.Argument(help="Run B: a run directory.")],
    out: Annotated[Path, typer.Option("--out", help="The HTML page.")] = Path("compare.html"),
) -> None:
    """Two recorded runs' plots overlaid, and the differences of their summaries."""
    need("research", "flashsale compare")
    from orchestration.reports import run_compare

    raise typer.Exit(run_compare(run_a, run_b, out))
