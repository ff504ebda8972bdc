"""`flashsale scenarios` and `flashsale scenarios show`: the presets, one scenario as YAML with
its key figures, and its curve as a PNG.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from flashsale.scenario import list_presets, load_scenario
from orchestration.cli.app import app, need

__all__ = ["scenarios", "scenarios_app", "scenarios_show"]

scenarios_app = typer.Typer(
    help="List the scenario presets, or show one (and plot its curve).",
    invoke_without_command=True,
    rich_markup_mode=None,
)


app.add_typer(scenarios_app, name="scenarios")


@scenarios_app.callback()
def scenarios(ctx: typer.Context) -> None:
    """List the scenario presets."""
    if ctx.invoked_subcommand is None:
        presets = list_presets()
        width = max(len(sc.name) for sc in presets) + 1
        for sc in presets:
            print(f"{sc.name:<{width}} seed={sc.seed:<4} {sc.description}")


@scenarios_app.command("show")
def scenarios_show(
    name: Annotated[str, typer.Argument(help="A preset name or a scenario YAML file.")],
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write the traffic curve as a PNG here.")
    ] = None,
) -> None:
    """Print a scenario as YAML with its key figures; optionally plot its curve."""
    if plot is not None:
        need("research", "flashsale scenarios show --plot")
    import yaml

    from flashsale.scenario.curves import Curve

    chosen = load_scenario(name)
    print(
        yaml.safe_dump(
            chosen.model_dump(mode="json", by_alias=True), sort_keys=False, allow_unicode=True
        )
    )
    curve = Curve(chosen)
    at, peak = curve.peak()
    horizon = chosen.curve.horizon_s
    print(
        f"# peak {peak:,.0f} orders/s (real) at {at:,.1f} s; emitted at the peak "
        f"{chosen.peak_wall_rate:,.0f} orders/s wall; {curve.total_emitted():,.0f} orders "
        f"emitted over the {horizon:,.0f} s horizon "
        f"({horizon / chosen.scale.compression:,.0f} s wall)"
    )
    if plot is not None:
        from recordings.plots import plot_curve

        if not plot.parent.is_dir():
            raise typer.BadParameter(f"no folder {plot.parent}", param_hint="'--plot'")
        # On stderr, so stdout stays a scenario file that loads back as it is.
        print(f"curve plotted: {plot_curve(chosen, plot)}", file=sys.stderr)
