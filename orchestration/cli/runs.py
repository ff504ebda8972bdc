"""`flashsale demo`, `soak`, `bench` and `verify`: whole runs, and the verdict on one
(`loadtest` is in `orchestration/cli/loadtest.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flashsale.events import MAX_PACK
from flashsale.scenario import DEFAULT_SCENARIO
from orchestration.cli.app import (
    BootstrapOpt,
    ClientConfigOpt,
    GuaranteeOpt,
    KafkaOpt,
    ScenarioOpt,
    SeedOpt,
    app,
    check_ack_log_target,
    check_guarantee,
    check_new_run_dir,
    check_positive,
    fail,
    need,
    pick_scenario,
    refuse_embedded_exactly_once,
    settings_for,
)

if TYPE_CHECKING:
    from flashsale.acklog import AckedWrite
    from flashsale.scenario import Scenario
    from flashsale.settings import Settings

__all__ = ["bench", "demo", "read_ack_logs", "soak", "verify"]


KafkaNodesOpt = Annotated[
    int | None,
    typer.Option(
        "--kafka-nodes",
        help="With --kafka: nodes of the local Apache Kafka, 1 or 3 (replication factor 3, "
        "min.insync.replicas 2) [default: FLASHSALE_KAFKA_NODES or 1].",
    ),
]

KafkaNetworkOpt = Annotated[
    str | None,
    typer.Option(
        "--kafka-network",
        help="With --kafka: loopback, or namespaces (each node in a network namespace of its "
        "own, Linux and root: a fault timeline can cut one off) "
        "[default: FLASHSALE_KAFKA_NETWORK or loopback].",
    ),
]


def check_run_faults(
    scenario: Scenario,
    settings: Settings,
    workers: int,
    gateway: bool = False,
    producer: bool = True,
) -> None:
    """Stop with one line (exit 2) before anything starts when the scenario's fault timeline
    asks for what this run will not have (docs/scenarios.md#faults)."""
    from flashsale.brokers.netns import namespaces_unavailable
    from orchestration.faults import FaultError, check_faults

    local = not settings.bootstrap_servers and settings.local_broker == "kafka"
    if local and settings.kafka_network == "namespaces":
        why = namespaces_unavailable()
        if why is not None:
            raise fail(f"--kafka-network namespaces: {why}")
    try:
        check_faults(
            scenario,
            broker="external" if settings.bootstrap_servers else settings.local_broker,
            nodes=settings.kafka_nodes,
            network=settings.kafka_network,
            workers=workers,
            gateway=gateway,
            producer=producer,
        )
    except FaultError as exc:
        raise fail(str(exc)) from None


def read_ack_logs(paths: list[Path], topic: str) -> list[AckedWrite]:
    """The acknowledged writes of every log in `paths`; an unreadable or foreign one is bad
    input naming the file (exit 2)."""
    from flashsale.acklog import AckLogError, read_ack_log

    out: list[AckedWrite] = []
    for path in paths:
        try:
            out.extend(read_ack_log(path, topic))
        except AckLogError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--ack-log'") from None
    return out


@app.command()
def verify(
    run_dir: Annotated[
        Path | None,
        typer.Argument(help="A recorded run (flashsale record): verify it offline, from files."),
    ] = None,
    bootstrap_servers: BootstrapOpt = None,
    client_config: ClientConfigOpt = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the run summary (JSON) here.")
    ] = None,
    ack_logs: Annotated[
        list[Path] | None,
        typer.Option(
            "--ack-log",
            help="An acknowledgement log (flashsale produce --ack-log); repeatable. Every "
            "write it lists must be on orders at its partition and offset with its seq and "
            "bytes, or verify exits 1 (docs/reliability.md).",
        ),
    ] = None,
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            help="Judge another system's output topic, written to flashsale's contract "
            "(docs/contract.md), instead of flashsale's workers.",
        ),
    ] = None,
    level: Annotated[
        str | None,
        typer.Option(
            "--level",
            help="With --against: decisions (one record per event) or totals (GMV, units and "
            "stock, sell-outs) [default: decisions].",
        ),
    ] = None,
) -> None:
    """Recompute the truth from topic `orders` and compare it with what the workers produced,
    or with another system's output (--against)."""
    from verify.contract import LEVELS

    if level is not None and against is None:
        raise typer.BadParameter("only with --against", param_hint="'--level'")
    level = level or "decisions"
    if level not in LEVELS:
        raise typer.BadParameter(
            f"{level!r} is not one of {', '.join(LEVELS)}", param_hint="'--level'"
        )
    if against is not None and (run_dir is not None or ack_logs):
        raise typer.BadParameter(
            "judges a system's topic on its broker; not with RUN_DIR or --ack-log",
            param_hint="'--against'",
        )
    if run_dir is not None:
        if ack_logs:
            raise typer.BadParameter(
                "checks a run on its broker, not a recorded run", param_hint="'--ack-log'"
            )
        need("research", "flashsale verify RUN_DIR")
        from orchestration.recording import run_verify_dir

        raise typer.Exit(run_verify_dir(run_dir, json_path))
    from orchestration.recording import run_verify

    settings = settings_for(bootstrap_servers, client_config=client_config)
    if not settings.bootstrap_servers:
        raise typer.BadParameter(
            "verify reads an existing run: pass --bootstrap-servers or set "
            "FLASHSALE_BOOTSTRAP_SERVERS (a new embedded broker would be empty)"
        )
    if against is not None:
        from orchestration.recording import run_verify_against

        raise typer.Exit(run_verify_against(settings, against, level, json_path))
    acknowledged = read_ack_logs(ack_logs, settings.topic_orders) if ack_logs else None
    raise typer.Exit(run_verify(settings, json_path, acknowledged))


@app.command()
def demo(
    bootstrap_servers: BootstrapOpt = None,
    kafka: KafkaOpt = False,
    client_config: ClientConfigOpt = None,
    scenario: ScenarioOpt = DEFAULT_SCENARIO,
    seed: SeedOpt = None,
    duration: Annotated[
        float, typer.Option("--duration", help="Wall-clock seconds of the scenario to run.")
    ] = 60.0,
    summary_json: Annotated[
        Path | None, typer.Option("--summary-json", help="Write the run summary (JSON) here.")
    ] = None,
    workers: Annotated[
        int,
        typer.Option("--workers", help="Faust workers sharing the partitions (web ports P, P+1…)."),
    ] = 1,
    pack: Annotated[
        int,
        typer.Option("--pack", help="Produce packed messages of up to N events (docs/events.md)."),
    ] = 0,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the live dashboard in this machine's browser.")
    ] = False,
    record: Annotated[
        Path | None,
        typer.Option(
            "--record",
            help="After the drain, record every topic of the run into this run directory.",
        ),
    ] = None,
    processing_guarantee: GuaranteeOpt = None,
    ack_log: Annotated[
        Path | None,
        typer.Option(
            "--ack-log",
            help="Log every write the broker acknowledged to this file [default: acks.csv in "
            "the demo's folder of worker logs]; the verdict checks each on orders.",
        ),
    ] = None,
    kafka_nodes: KafkaNodesOpt = None,
    kafka_network: KafkaNetworkOpt = None,
    system: Annotated[
        str | None,
        typer.Option(
            "--system",
            help="Run this command, another team's stream processor, instead of flashsale's "
            "workers ({bootstrap} and {orders} are replaced by the run's servers and orders "
            "topic), and judge its output (needs --system-group and --against; "
            "docs/contract.md).",
        ),
    ] = None,
    system_group: Annotated[
        str | None,
        typer.Option(
            "--system-group",
            help="With --system: its consumer group on orders (joined: ready; committed to "
            "the end: drained).",
        ),
    ] = None,
    against: Annotated[
        str | None,
        typer.Option("--against", help="With --system: the topic it writes to the contract."),
    ] = None,
    level: Annotated[
        str | None,
        typer.Option("--level", help="With --system: decisions or totals [default: decisions]."),
    ] = None,
) -> None:
    """Broker, topics, workers, producer, metrics; run, verify, summarise, clean up."""
    from orchestration.demo import run_demo

    if system is not None:
        from orchestration.cli.system import system_demo

        raise typer.Exit(
            system_demo(
                system,
                system_group,
                against,
                level,
                bootstrap_servers=bootstrap_servers,
                kafka=kafka,
                client_config=client_config,
                scenario=scenario,
                seed=seed,
                duration=duration,
                summary_json=summary_json,
                pack=pack,
                kafka_nodes=kafka_nodes,
                kafka_network=kafka_network,
                refused={
                    "--workers": workers != 1,
                    "--open": open_browser,
                    "--record": record is not None,
                    "--processing-guarantee": processing_guarantee is not None,
                    "--ack-log": ack_log is not None,
                },
            )
        )
    for name, given in (
        ("--system-group", system_group),
        ("--against", against),
        ("--level", level),
    ):
        if given is not None:
            raise typer.BadParameter("only with --system", param_hint=f"'{name}'")
    check_positive("--duration", duration)
    if record is not None:
        need("research", "flashsale demo --record")
        check_new_run_dir(record, "--record")
    if ack_log is not None:
        check_ack_log_target(ack_log)
    check_positive("--workers", workers)
    check_guarantee(processing_guarantee)
    if not 0 <= pack <= MAX_PACK:
        raise typer.BadParameter(f"{pack} is not in 0..{MAX_PACK}", param_hint="'--pack'")
    chosen = pick_scenario(scenario, seed)
    settings = settings_for(
        bootstrap_servers,
        kafka,
        client_config=client_config,
        processing_guarantee=processing_guarantee,
        kafka_nodes=kafka_nodes,
        kafka_network=kafka_network,
    ).model_copy(update={"pack": pack})
    refuse_embedded_exactly_once(settings)
    if workers > settings.partitions:
        raise typer.BadParameter(
            f"{workers} workers for {settings.partitions} partitions would leave some idle; "
            "raise FLASHSALE_PARTITIONS",
            param_hint="'--workers'",
        )
    check_run_faults(chosen, settings, workers)
    raise typer.Exit(
        run_demo(settings, chosen, duration, summary_json, workers, open_browser, record, ack_log)
    )


@app.command()
def soak(
    bootstrap_servers: BootstrapOpt = None,
    kafka: KafkaOpt = False,
    client_config: ClientConfigOpt = None,
    minutes: Annotated[float, typer.Option("--minutes", help="How long to run.")] = 10.0,
    scenario: ScenarioOpt = "steady",
    seed: SeedOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for soak.png and soak.json.")] = Path(
        "soak"
    ),
    max_growth_mb: Annotated[
        float,
        typer.Option("--max-growth-mb", help="Memory a process may gain after the warm-up (MB)."),
    ] = 64.0,
    sample_s: Annotated[float, typer.Option("--sample-s", help="Seconds between samples.")] = 5.0,
    checkouts_per_s: Annotated[
        float, typer.Option("--checkouts-per-s", help="Checkouts posted to the gateway.")
    ] = 5.0,
    kafka_nodes: KafkaNodesOpt = None,
    kafka_network: KafkaNetworkOpt = None,
) -> None:
    """A long steady run: memory of every process, lag and latency sampled; fails on a leak,
    a worker falling behind, or a run that does not reconcile."""
    need("soak", "flashsale soak")
    from orchestration.soak import run_soak

    for name, value in (
        ("--minutes", minutes),
        ("--max-growth-mb", max_growth_mb),
        ("--sample-s", sample_s),
        ("--checkouts-per-s", checkouts_per_s),
    ):
        check_positive(name, value)
    chosen = pick_scenario(scenario, seed)
    settings = settings_for(
        bootstrap_servers,
        kafka,
        client_config=client_config,
        kafka_nodes=kafka_nodes,
        kafka_network=kafka_network,
    )
    check_run_faults(chosen, settings, 1, gateway=True)
    raise typer.Exit(
        run_soak(settings, chosen, minutes, out, max_growth_mb, sample_s, checkouts_per_s)
    )


@app.command()
def bench(
    bootstrap_servers: BootstrapOpt = None,
    client_config: ClientConfigOpt = None,
    quick: Annotated[bool, typer.Option("--quick", help="Smaller runs (seconds).")] = False,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the stage figures (JSON) here.")
    ] = None,
    broker_name: Annotated[
        str | None,
        typer.Option(
            "--broker",
            help="Which local broker to start and measure: embedded, kafka (Apache Kafka from "
            "Maven Central's jars; Java 17+) or both, one after the other [default: both]. "
            "Not with --bootstrap-servers, which measures those servers only.",
        ),
    ] = None,
) -> None:
    """Our path beside a bare-client ceiling, stage by stage, on each broker, in one run."""
    need("bench", "flashsale bench")
    from benchmarks.bench import LOCAL_BROKERS, run_bench

    choices = {**{name: (name,) for name in LOCAL_BROKERS}, "both": LOCAL_BROKERS}
    if broker_name is not None and broker_name not in choices:
        raise typer.BadParameter(
            f"{broker_name!r} is not one of {', '.join(choices)}", param_hint="'--broker'"
        )
    settings = settings_for(bootstrap_servers, client_config=client_config)
    if broker_name is not None and settings.bootstrap_servers:
        raise typer.BadParameter(
            "picks a local broker to start; with --bootstrap-servers the bench measures "
            "those servers only",
            param_hint="'--broker'",
        )
    brokers = choices[broker_name or "both"]
    raise typer.Exit(run_bench(settings, quick=quick, json_path=json_path, brokers=brokers))
