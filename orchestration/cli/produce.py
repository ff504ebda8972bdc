"""`flashsale produce`: the generator and producer only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flashsale.events import MAX_PACK
from flashsale.scenario import DEFAULT_SCENARIO
from orchestration.cli.app import (
    BootstrapOpt,
    ClientConfigOpt,
    KafkaOpt,
    ScenarioOpt,
    SeedOpt,
    app,
    check_ack_log_target,
    check_positive,
    fail,
    pick_scenario,
    settings_for,
)

__all__ = ["produce"]


@app.command()
def produce(
    bootstrap_servers: BootstrapOpt = None,
    kafka: KafkaOpt = False,
    client_config: ClientConfigOpt = None,
    scenario: ScenarioOpt = DEFAULT_SCENARIO,
    seed: SeedOpt = None,
    duration: Annotated[
        float | None,
        typer.Option("--duration", help="Wall-clock seconds to produce [default: 60 for Kafka]."),
    ] = None,
    events: Annotated[
        int | None,
        typer.Option("--events", help="Stop after the scenario's first N events (any sink)."),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="Split the stream across N producer processes.")
    ] = 1,
    sink: Annotated[
        str,
        typer.Option(
            "--sink",
            help="kafka, or jsonl:PATH to write one JSON object per line as fast as possible.",
        ),
    ] = "kafka",
    client: Annotated[
        str, typer.Option("--client", help="Kafka client: aiokafka, or confluent (librdkafka).")
    ] = "aiokafka",
    metrics_port: Annotated[
        int, typer.Option("--metrics-port", help="Port of the producer's /metrics; 0 = free.")
    ] = 0,
    pack: Annotated[
        int,
        typer.Option(
            "--pack",
            help="Pack up to N events of one partition per message (aiokafka client; "
            "docs/events.md). 0: one event per message.",
        ),
    ] = 0,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Go on where a killed producer of the same scenario and seed stopped: send "
            "only what `orders` does not hold yet (docs/reliability.md).",
        ),
    ] = False,
    ack_log: Annotated[
        Path | None,
        typer.Option(
            "--ack-log",
            help="Write every write the broker acknowledged (partition, offset, seq, CRC-32) "
            "to this new file, for `flashsale verify --ack-log` (docs/reliability.md).",
        ),
    ] = None,
) -> None:
    """Run the generator and producer only."""
    from orchestration.produce import run_produce

    check_positive("--duration", duration)
    check_positive("--events", events)
    check_positive("--workers", workers)
    if client not in {"aiokafka", "confluent"}:
        raise typer.BadParameter(
            f"{client!r} is not aiokafka or confluent", param_hint="'--client'"
        )
    if sink != "kafka" and not (sink.startswith("jsonl:") and len(sink) > len("jsonl:")):
        raise typer.BadParameter(f"{sink!r} is not kafka or jsonl:PATH", param_hint="'--sink'")
    if sink.startswith("jsonl:"):
        target = Path(sink.removeprefix("jsonl:"))
        if not target.parent.is_dir():
            raise typer.BadParameter(f"no folder {target.parent}", param_hint="'--sink'")
    if not 0 <= pack <= MAX_PACK:
        raise typer.BadParameter(f"{pack} is not in 0..{MAX_PACK}", param_hint="'--pack'")
    if pack and (sink != "kafka" or client != "aiokafka"):
        raise typer.BadParameter(
            "packed messages need the kafka sink and --client aiokafka", param_hint="'--pack'"
        )
    if resume and sink != "kafka":
        raise typer.BadParameter("--resume needs the kafka sink", param_hint="'--resume'")
    if resume and client != "aiokafka":
        raise typer.BadParameter(
            "--resume needs --client aiokafka (librdkafka may reorder a partition's batches "
            "when it retries, and its messages carry no flashsale.seq)",
            param_hint="'--resume'",
        )
    if resume and workers != 1:
        raise typer.BadParameter("--resume needs --workers 1", param_hint="'--resume'")
    if ack_log is not None:
        check_ack_log_target(ack_log)
        if sink != "kafka":
            raise typer.BadParameter("needs the kafka sink", param_hint="'--ack-log'")
        if workers != 1:
            # Split producers number their streams alike: seqs would repeat between them.
            raise typer.BadParameter("needs --workers 1", param_hint="'--ack-log'")
    chosen = pick_scenario(scenario, seed)
    settings = settings_for(bootstrap_servers, kafka, client_config=client_config).model_copy(
        update={"pack": pack}
    )
    if resume and not settings.bootstrap_servers:
        raise typer.BadParameter(
            "--resume needs the broker the killed producer wrote to (--bootstrap-servers)",
            param_hint="'--resume'",
        )
    if duration is None and events is None and sink == "kafka":
        duration = 60.0
    from producers.resume import ResumeError

    try:
        code = run_produce(
            settings, chosen, duration, events, metrics_port, workers, sink, client, resume, ack_log
        )
    except ResumeError as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)
