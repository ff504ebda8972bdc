"""`flashsale loadtest`: locust against the gateway or straight into Kafka, beside
flashsale's verdict; what follows `--` goes to locust unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flashsale.scenario import DEFAULT_SCENARIO, list_presets
from orchestration.cli.app import (
    BootstrapOpt,
    ClientConfigOpt,
    KafkaOpt,
    ScenarioOpt,
    SeedOpt,
    app,
    check_positive,
    fail,
    need,
    pick_scenario,
    settings_for,
)
from orchestration.cli.runs import KafkaNetworkOpt, KafkaNodesOpt, check_run_faults

__all__ = ["loadtest"]


def _loadtest_epilog() -> str:
    """`flashsale loadtest --help`'s last paragraph: what goes after `--`, and the
    locustfile's own arguments (locust prints its help before it reads a locustfile)."""
    from loadtests.options import ARGUMENTS

    flags = ", ".join(arg.flag for arg in ARGUMENTS)
    return (
        "After --, arguments go to locust unchanged, after flashsale's own (a repeated "
        "option overrides ours): e.g. -- --master --expect-workers 4 to take workers on other "
        "machines (locust -f loadtests/locustfile.py --worker --master-host HOST), or -- "
        f"--loglevel DEBUG. The locustfile's own arguments, set from the options above: {flags} "
        "(docs/loadtesting.md)."
    )


@app.command(epilog=_loadtest_epilog())
def loadtest(
    bootstrap_servers: BootstrapOpt = None,
    kafka: KafkaOpt = False,
    client_config: ClientConfigOpt = None,
    scenario: ScenarioOpt = DEFAULT_SCENARIO,
    seed: SeedOpt = None,
    users: Annotated[int, typer.Option("--users", help="Locust users at the peak.")] = 20,
    duration: Annotated[float, typer.Option("--duration", help="Seconds of load.")] = 60.0,
    shape: Annotated[
        str,
        typer.Option("--shape", help="singles-day (the scenario's curve) or constant."),
    ] = "singles-day",
    target: Annotated[
        str, typer.Option("--target", help="gateway (HTTP shoppers) or kafka (orders).")
    ] = "gateway",
    html: Annotated[Path | None, typer.Option("--html", help="Locust's HTML report.")] = None,
    csv: Annotated[
        str | None, typer.Option("--csv", help="Prefix of locust's CSV statistics.")
    ] = None,
    processes: Annotated[
        int,
        typer.Option(
            "--processes",
            help="Locust worker processes on this machine, under one master, each a locust "
            "--worker of its own; with --target kafka they split the stream between them.",
        ),
    ] = 1,
    rate: Annotated[
        float,
        typer.Option(
            "--rate",
            help="Kafka target: most order events/s of the whole run, shared by its locust "
            "processes; 0 = max.",
        ),
    ] = 0.0,
    events: Annotated[
        int | None,
        typer.Option(
            "--events",
            help="Kafka target: send the scenario's first N order events once, split across "
            "the locust processes, then end the run (before --duration if sooner) "
            "[default: the whole scenario, again and again until --duration].",
        ),
    ] = None,
    kafka_nodes: KafkaNodesOpt = None,
    kafka_network: KafkaNetworkOpt = None,
    locust_args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="-- LOCUST_ARGS",
            help="Passed to locust unchanged, after flashsale's own.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Load-test with locust (headless): our stack, then locust's summary beside flashsale's."""
    need("loadtest", "flashsale loadtest")
    from loadtests.options import LoadOptions
    from orchestration.loadtest import run_loadtest

    check_positive("--users", users)
    check_positive("--duration", duration)
    check_positive("--processes", processes)
    check_positive("--events", events)
    if shape not in {"singles-day", "constant"}:
        raise typer.BadParameter(
            f"{shape!r} is not singles-day or constant", param_hint="'--shape'"
        )
    if target not in {"gateway", "kafka"}:
        raise typer.BadParameter(f"{target!r} is not gateway or kafka", param_hint="'--target'")
    if rate < 0:
        raise typer.BadParameter(f"{rate:g} is negative", param_hint="'--rate'")
    if events is not None and target != "kafka":
        raise fail("--events: only the kafka target sends the scenario's events")
    if target == "kafka" and users < processes:
        # Locust spreads users evenly: a worker without one would send nothing of its part.
        raise fail(f"--users: {processes} locust processes split the stream, give each a user")
    passed = locust_args or []
    if processes > 1 and "--master" in passed:
        raise fail("--processes starts a master of its own: leave out --master, or --processes")
    for path in [html, Path(csv) if csv else None]:
        if path is not None and not path.parent.resolve().is_dir():
            raise typer.BadParameter(f"no folder {path.parent}", param_hint="'--html/--csv'")
    chosen = pick_scenario(scenario, seed)
    # What the locust processes load: a preset by name, a file by its full path.
    presets = {preset.name for preset in list_presets()}
    spec = scenario if scenario in presets else str(Path(scenario).resolve())
    try:
        load = LoadOptions(
            scenario=spec,
            seed=seed,
            shape=shape,
            users=users,
            duration_s=duration,
            rate=rate,
            events=events or 0,
        )
    except ValueError as exc:
        raise fail(str(exc)) from None
    settings = settings_for(
        bootstrap_servers,
        kafka,
        client_config=client_config,
        kafka_nodes=kafka_nodes,
        kafka_network=kafka_network,
    )
    check_run_faults(chosen, settings, 1, gateway=target == "gateway", producer=False)
    raise typer.Exit(run_loadtest(settings, chosen, load, target, html, csv, processes, passed))
