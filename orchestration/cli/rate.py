"""`flashsale rate`: the highest peak a pipeline holds in real time, reconciled, found by
running a scenario's demo again and again at other sample ratios (orchestration/rate.py).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flashsale.events import MAX_PACK
from flashsale.scenario import DEFAULT_SCENARIO
from flashsale.scenario.model import MAX_WALL_RATE
from orchestration.cli.app import (
    BootstrapOpt,
    ClientConfigOpt,
    GuaranteeOpt,
    KafkaOpt,
    ScenarioOpt,
    SeedOpt,
    app,
    check_guarantee,
    check_positive,
    fail,
    pick_scenario,
    refuse_embedded_exactly_once,
    settings_for,
)
from orchestration.cli.runs import check_run_faults
from orchestration.console import console, error
from verify.contract import LEVELS

if TYPE_CHECKING:
    from flashsale.scenario import Scenario
    from flashsale.settings import Settings
    from orchestration.rate import RateOptions, Search, Trial

__all__ = ["rate"]


def _max_ratio(scenario: Scenario) -> float:
    """The highest sample ratio of `scenario`: 1 (every real order), or less when its peak
    would then emit more than a scenario may (`MAX_WALL_RATE`)."""
    per_unit = scenario.peak_real_rate * scenario.scale.compression
    return min(1.0, MAX_WALL_RATE / per_unit)


def _peak_time_s(scenario: Scenario) -> float:
    """Wall seconds from the start of a demo of `scenario` to its curve's peak."""
    from flashsale.scenario.curves import Curve

    at, _ = Curve(scenario).peak()
    return at / scenario.scale.compression


def _check_out(out: Path | None) -> Path:
    """The output folder: `out`, which must be new or empty, or `rate-<timestamp>`."""
    if out is None:
        out = Path(f"rate-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise typer.BadParameter(f"{out} exists and is not an empty folder", param_hint="'--out'")
    if not out.resolve().parent.is_dir():
        raise typer.BadParameter(f"no folder {out.resolve().parent}", param_hint="'--out'")
    return out


@app.command()
def rate(
    bootstrap_servers: BootstrapOpt = None,
    kafka: KafkaOpt = False,
    client_config: ClientConfigOpt = None,
    scenario: ScenarioOpt = DEFAULT_SCENARIO,
    seed: SeedOpt = None,
    duration: Annotated[
        float,
        typer.Option(
            "--duration",
            help="Wall-clock seconds of each trial's demo; must reach the scenario's peak.",
        ),
    ] = 40.0,
    p99_ms: Annotated[
        float, typer.Option("--p99-ms", help="A trial holds with an end-to-end p99 up to this.")
    ] = 1000.0,
    max_behind_s: Annotated[
        float,
        typer.Option(
            "--max-behind-s",
            help="... and its producer at most this far behind the scenario's schedule (s).",
        ),
    ] = 1.0,
    start_ratio: Annotated[
        float | None,
        typer.Option(
            "--start-ratio", help="The first trial's sample ratio [default: the scenario's own]."
        ),
    ] = None,
    min_ratio: Annotated[
        float, typer.Option("--min-ratio", help="Halve the ratio no lower than this.")
    ] = 1e-5,
    precision: Annotated[
        float,
        typer.Option(
            "--precision",
            help="Stop once the ratio that failed is within 1 + this of the one that held.",
        ),
    ] = 0.1,
    max_trials: Annotated[
        int, typer.Option("--max-trials", help="Run at most this many trials.")
    ] = 8,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="A new folder for each trial's scenario, log and summary, "
            "and rating.json [default: rate-YYYYmmdd-HHMMSS].",
        ),
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the rating (JSON) here.")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="Faust workers of each trial's demo.")
    ] = 1,
    pack: Annotated[
        int, typer.Option("--pack", help="Produce packed messages of up to N events.")
    ] = 0,
    processing_guarantee: GuaranteeOpt = None,
    system: Annotated[
        str | None,
        typer.Option(
            "--system",
            help="Each demo's system under test: this command (`flashsale demo --system`).",
        ),
    ] = None,
    system_group: Annotated[
        str | None, typer.Option("--system-group", help="Passed to each demo.")
    ] = None,
    against: Annotated[
        str | None, typer.Option("--against", help="Passed to each demo (TOPIC).")
    ] = None,
    level: Annotated[
        str | None,
        typer.Option("--level", help="Passed to each demo: decisions or totals."),
    ] = None,
) -> None:
    """Rate the highest peak the pipeline holds in real time, reconciled: run the scenario's
    demo at sample ratios found by bisection until it stops holding."""
    from orchestration.rate import RateOptions, RatingStopped, run_rate

    for name, value in (("--duration", duration), ("--p99-ms", p99_ms),
                        ("--max-behind-s", max_behind_s), ("--start-ratio", start_ratio),
                        ("--min-ratio", min_ratio), ("--precision", precision),
                        ("--max-trials", max_trials), ("--workers", workers)):  # fmt: skip
        check_positive(name, value)
    if not 0 <= pack <= MAX_PACK:
        raise typer.BadParameter(f"{pack} is not in 0..{MAX_PACK}", param_hint="'--pack'")
    check_guarantee(processing_guarantee)
    if level is not None and level not in LEVELS:
        raise typer.BadParameter(
            f"{level!r} is not one of {', '.join(LEVELS)}", param_hint="'--level'"
        )
    if json_path is not None and not json_path.resolve().parent.is_dir():
        raise typer.BadParameter(f"no folder {json_path.resolve().parent}", param_hint="'--json'")
    chosen = pick_scenario(scenario, seed)
    highest = _max_ratio(chosen)
    start = chosen.scale.sample_ratio if start_ratio is None else start_ratio
    if start > highest:
        raise typer.BadParameter(f"must be at most {highest:g}", param_hint="'--start-ratio'")
    if min_ratio > start:
        raise typer.BadParameter(
            f"{min_ratio:g} is above the start ratio {start:g}", param_hint="'--min-ratio'"
        )
    peak_at = _peak_time_s(chosen)
    if peak_at > duration:
        raise fail(
            f"--duration {duration:g} ends before the peak of {chosen.name} ({peak_at:g} s "
            "into the run): a trial would not reach the rate it is rated at"
        )
    settings = settings_for(
        bootstrap_servers,
        kafka,
        client_config=client_config,
        processing_guarantee=processing_guarantee,
    )
    refuse_embedded_exactly_once(settings)
    if workers > settings.partitions:
        raise typer.BadParameter(
            f"{workers} workers for {settings.partitions} partitions would leave some idle; "
            "raise FLASHSALE_PARTITIONS",
            param_hint="'--workers'",
        )
    check_run_faults(chosen, settings, workers)
    folder = _check_out(out)
    # As given: what the demo was not given keeps the demo's default (and its checks, such as
    # --system's, stay the demo's).
    passed: dict[str, Any] = {
        "--bootstrap-servers": bootstrap_servers,
        "--client-config": client_config,
        "--workers": workers if workers != 1 else None,
        "--pack": pack or None,
        "--processing-guarantee": processing_guarantee,
        "--system": system,
        "--system-group": system_group,
        "--against": against,
        "--level": level,
    }
    demo_args = [x for name, v in passed.items() if v is not None for x in (name, str(v))]
    if kafka:
        demo_args.append("--kafka")
    opts = RateOptions(
        scenario=chosen,
        duration_s=duration,
        out=folder,
        start_ratio=start,
        max_ratio=highest,
        min_ratio=min_ratio,
        precision=precision,
        max_trials=max_trials,
        p99_ms=p99_ms,
        max_behind_s=max_behind_s,
        broker=settings.bootstrap_servers or settings.local_broker,
        pack=pack,
        system=None
        if system is None
        else {"command": system, "group": system_group, "against": against, "level": level},
        demo_args=tuple(demo_args),
        json_path=json_path,
    )
    try:
        _measure_ceiling(opts, settings)
        trials, found = run_rate(opts)
    except RatingStopped as exc:
        error(str(exc))
        raise typer.Exit(exc.code) from None
    except KeyboardInterrupt:
        print(
            f"flashsale: rate interrupted; the running trial's demo was stopped; trials so far "
            f"in {folder / 'rating.json'}",
            file=sys.stderr,
        )
        raise typer.Exit(130) from None
    console.print(_table(trials))
    raise typer.Exit(_conclude(opts, trials, found))


def _measure_ceiling(opts: RateOptions, settings: Settings) -> None:
    """The bare-client ceiling on a broker of the rating's kind, in this run, before the
    trials; and the events per order of the scenario's busiest second, to compare with it."""
    from orchestration.ceiling import measure_ceiling, peak_events_per_s
    from orchestration.rate import scaled

    with console.status("measuring the bare-client ceiling on this kind of broker..."):
        opts.ceiling = measure_ceiling(settings, opts.pack)
        # Events grow with the ratio as orders do: counted once, at a small ratio.
        small = scaled(opts.scenario, min(opts.start_ratio, 0.005))[0]
        opts.events_per_peak_order = peak_events_per_s(small, opts.duration_s) / max(
            small.peak_wall_rate, 1e-9
        )
    console.print(
        f"ceiling: {opts.ceiling['what']} reads {opts.ceiling['events_per_s']:,.0f} events/s "
        f"on this broker; the scenario sends {opts.events_per_peak_order:.2f} events per order "
        "in its busiest second",
        soft_wrap=True,
    )


def _table(trials: list[Trial]) -> Any:
    """Every trial, one row each (why one failed: its line above, and rating.json)."""
    from rich import box
    from rich.table import Table

    table = Table(title="flashsale rate: trials", title_justify="left", box=box.SIMPLE_HEAD)
    for name in ("#", "ratio", "peak/s", "events", "p99 ms", "behind s", "reconciled"):
        table.add_column(name, justify="right")
    table.add_column("verdict")
    for t in trials:
        table.add_row(str(t.number), *t.cells(), t.verdict(short=True))
    return table


def _conclude(opts: RateOptions, trials: list[Trial], found: Search) -> int:
    """Print the rating line and where the search stopped; the exit code: 0 when a trial
    held, 1 when none did."""
    from rich.markup import escape

    from orchestration.rate import packing

    where = f"scenario {opts.scenario.name}, broker {opts.broker}, {packing(opts.pack)}"
    rating = escape(str(opts.out / "rating.json"))
    if found.held is None:
        lowest = min(trials, key=lambda t: t.ratio)
        console.print(
            f"[red]no trial held[/red], down to {lowest.peak_per_s:,.0f} orders/s at the peak "
            f"(sample ratio {lowest.ratio:g}, {where}); rating: {rating}",
            soft_wrap=True,
        )
        return 1
    best = next(t for t in trials if t.held and t.ratio == found.held)
    console.print(
        f"[bold]highest peak held: {best.peak_per_s:,.0f} orders/s[/bold] (sample ratio "
        f"{best.ratio:g}, {where})",
        soft_wrap=True,
    )
    if opts.ceiling and opts.events_per_peak_order:
        events = best.peak_per_s * opts.events_per_peak_order
        console.print(
            f"that is {events:,.0f} events/s in the busiest second: "
            f"{events / opts.ceiling['events_per_s']:.2f} of the bare-client ceiling "
            f"({opts.ceiling['events_per_s']:,.0f} events/s)",
            soft_wrap=True,
        )
    if found.failed is not None:
        failed = next(t for t in trials if not t.held and t.ratio == found.failed)
        how = "within the precision" if found.stopped == "bracketed" else "trials used up"
        note = (
            f"it failed at {failed.peak_per_s:,.0f} orders/s (sample ratio {failed.ratio:g}; {how})"
        )
    elif found.stopped == "cap":
        note = "held at the highest ratio the scenario allows: a lower bound"
    else:
        note = "no trial failed above it, a lower bound: raise --max-trials"
    console.print(f"{note}; rating: {rating}", soft_wrap=True)
    return 0
