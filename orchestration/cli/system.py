"""`flashsale demo --system`: the checks of a run of another team's stream processor in place
of flashsale's workers (`orchestration.system` runs it)."""

from __future__ import annotations

from pathlib import Path

import typer

from flashsale.events import MAX_PACK
from orchestration.cli.app import check_positive, fail, pick_scenario, settings_for

__all__ = ["system_demo"]


def system_demo(
    command: str,
    group: str | None,
    against: str | None,
    level: str | None,
    *,
    bootstrap_servers: str | None,
    kafka: bool,
    client_config: Path | None,
    scenario: str,
    seed: int | None,
    duration: float,
    summary_json: Path | None,
    pack: int,
    kafka_nodes: int | None,
    kafka_network: str | None,
    refused: dict[str, bool],
) -> int:
    """`demo --system`: checks, then `orchestration.system.run_system_demo`."""
    from orchestration.system import SystemUnderTest, run_system_demo
    from verify.contract import LEVELS

    for name, given in refused.items():
        if given:
            raise typer.BadParameter(
                "is for flashsale's workers, not with --system", param_hint=f"'{name}'"
            )
    if not command.strip():
        raise typer.BadParameter("is empty", param_hint="'--system'")
    if group is None or against is None:
        raise typer.BadParameter(
            "needs --system-group (its consumer group) and --against (its output topic)",
            param_hint="'--system'",
        )
    level = level or "decisions"
    if level not in LEVELS:
        raise typer.BadParameter(
            f"{level!r} is not one of {', '.join(LEVELS)}", param_hint="'--level'"
        )
    check_positive("--duration", duration)
    if not 0 <= pack <= MAX_PACK:
        raise typer.BadParameter(f"{pack} is not in 0..{MAX_PACK}", param_hint="'--pack'")
    chosen = pick_scenario(scenario, seed)
    if chosen.faults:
        raise fail("a fault timeline runs with flashsale's workers, not with --system")
    settings = settings_for(
        bootstrap_servers,
        kafka,
        client_config=client_config,
        kafka_nodes=kafka_nodes,
        kafka_network=kafka_network,
    ).model_copy(update={"pack": pack})
    return run_system_demo(
        settings, chosen, duration, summary_json, SystemUnderTest(command, group, against, level)
    )
