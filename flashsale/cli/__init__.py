"""The `flashsale` command: one console script wiring broker, producers, workers and checks."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from pydantic import ValidationError

from flashsale.broker import BrokerError, TansuNotFound
from flashsale.client_config import ClientConfigError
from flashsale.events import MAX_PACK
from flashsale.runs import MANIFEST, RunDirError
from flashsale.scenario import Scenario, ScenarioError, list_presets, load_scenario
from flashsale.settings import Settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="flashsale",
    help="Simulate the Singles' Day order storm on Kafka and reconcile it to the cent.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

BootstrapOpt = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        envvar="FLASHSALE_BOOTSTRAP_SERVERS",
        help="Use this Kafka (HOST:PORT[,...]) instead of starting the embedded broker.",
    ),
]
KafkaOpt = Annotated[
    bool,
    typer.Option(
        "--kafka",
        help="Without --bootstrap-servers: start a local Apache Kafka (jars from Maven Central, "
        "fetched once; Java 17+) instead of the embedded broker.",
    ),
]
ClientConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--client-config",
        envvar="FLASHSALE_CLIENT_CONFIG",
        help="A Kafka client .properties file merged into every client (docs/kafka.md).",
    ),
]
DEFAULT_SCENARIO = "singles-day-2020"
ScenarioOpt = Annotated[
    str,
    typer.Option(
        "--scenario", help="A preset (see `flashsale scenarios`) or a scenario YAML file."
    ),
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Override the scenario's seed.")]


def settings_for(
    bootstrap_servers: str | None, kafka: bool = False, **overrides: object
) -> Settings:
    """Settings from the environment, with the CLI's flags on top (`kafka`: a local Apache
    Kafka rather than the embedded broker, when no servers are given). A `client_config` flag
    also goes to the environment, so every client and process of the command reads it."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if kafka:
        values["local_broker"] = "kafka"
    if bootstrap_servers:
        values["bootstrap_servers"] = bootstrap_servers
    if values.get("client_config") is not None:
        os.environ["FLASHSALE_CLIENT_CONFIG"] = str(values["client_config"])
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, ClientConfigError):
            raise typer.BadParameter(str(cause), param_hint="'--client-config'") from None
        where = ".".join(str(x) for x in err["loc"])
        raise typer.BadParameter(
            f"setting {where}: {err['msg']}" if where else f"settings: {err['msg']}"
        ) from None


def pick_scenario(name: str, seed: int | None) -> Scenario:
    """A preset or a YAML file, with an optional seed; `ScenarioError` names what is wrong."""
    return load_scenario(name).with_seed(seed)


def _fail(message: str) -> typer.Exit:
    """Print a one-line error; the `typer.Exit(2)` to raise."""
    print(f"flashsale: error: {message}", file=sys.stderr)
    return typer.Exit(2)


def _check_new_run_dir(path: Path, option: str) -> None:
    if (path / MANIFEST).exists():
        raise typer.BadParameter(f"{path} already holds a run", param_hint=f"'{option}'")
    if not path.resolve().parent.is_dir():
        raise typer.BadParameter(f"no folder {path.resolve().parent}", param_hint=f"'{option}'")


def _check_positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise typer.BadParameter("must be greater than 0", param_hint=f"'{name}'")


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 0,
) -> None:
    """Run the embedded broker (Tansu, memory storage) in the foreground."""
    from flashsale.broker import EmbeddedBroker

    settings = settings_for(None)
    brk = EmbeddedBroker(
        binary=settings.tansu_bin,
        host=settings.web_host,
        port=port or None,
        start_timeout_s=settings.broker_start_timeout_s,
    )
    with brk:
        print(f"bootstrap={brk.bootstrap}", flush=True)
        print("memory storage: topics are lost when the broker stops. Ctrl-C to stop.", flush=True)
        brk.wait()


@app.command()
def kafka(
    nodes: Annotated[
        int, typer.Option("--nodes", help="Combined broker+controller nodes: 1 or 3.")
    ] = 1,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Keep the cluster's data in this folder; a later run on it starts on the same "
            "topics. Default: a temporary folder, removed at exit.",
        ),
    ] = None,
) -> None:
    """Run a local Apache Kafka (KRaft, 1 or 3 nodes on loopback) in the foreground."""
    import time

    from flashsale.apache_kafka import KafkaCluster

    if nodes not in (1, 3):
        raise typer.BadParameter(f"{nodes} is not 1 or 3", param_hint="'--nodes'")
    if data is not None and data.exists() and not data.is_dir():
        raise typer.BadParameter(f"{data} is not a folder", param_hint="'--data'")
    settings = settings_for(None)
    # Progress on stderr: stdout's first line is the bootstrap servers, for scripts.
    cluster = KafkaCluster(
        nodes=nodes,
        data=data,
        host=settings.web_host,
        say=lambda line: print(line, file=sys.stderr, flush=True),
    )
    with cluster:
        print(f"bootstrap={cluster.bootstrap}", flush=True)
        memory = ", ".join(f"node {n}: {mb:.0f} MiB" for n, mb in cluster.memory_mb().items())
        where = f"data in {cluster.data}" if data is not None else "data removed at exit"
        print(
            f"Apache Kafka {cluster.version}, {nodes} node{'s' if nodes > 1 else ''} ready in "
            f"{cluster.started_s:.1f} s ({memory}); {where}. Ctrl-C to stop.",
            flush=True,
        )
        while all(n.alive() for n in cluster.nodes):
            time.sleep(0.5)
        gone = [n for n in cluster.nodes if not n.alive()]
        raise BrokerError(f"Kafka node {gone[0].node_id} exited: {gone[0].log_tail()}")


@app.command()
def worker(
    bootstrap_servers: BootstrapOpt = None,
    kafka: KafkaOpt = False,
    client_config: ClientConfigOpt = None,
    web_port: Annotated[
        int | None, typer.Option("--web-port", help="Port of views and /metrics [default 6066].")
    ] = None,
    log_level: Annotated[
        str, typer.Option(help="Faust log level: crit, error, warn, info, debug.")
    ] = "warn",
) -> None:
    """Run one Faust worker; its views and /metrics on --web-port."""
    from flashsale.cli.processes import bootstrap_for, settings_on
    from flashsale.kafka import ensure_run_topics
    from streams.app import run_worker

    if log_level not in {"crit", "error", "warn", "info", "debug"}:
        raise typer.BadParameter(
            f"{log_level!r} is not one of crit, error, warn, info, debug",
            param_hint="'--log-level'",
        )
    settings = settings_for(
        bootstrap_servers, kafka, client_config=client_config, web_port=web_port
    )
    with bootstrap_for(settings) as bootstrap:
        resolved = asyncio.run(ensure_run_topics(settings_on(settings, bootstrap), bootstrap))
        print(
            f"worker: web and /metrics on http://{settings.web_host}:{settings.web_port}",
            flush=True,
        )
        run_worker(resolved, log_level)


@app.command()
def gateway(
    bootstrap_servers: BootstrapOpt = None,
    client_config: ClientConfigOpt = None,
    scenario: ScenarioOpt = DEFAULT_SCENARIO,
    seed: SeedOpt = None,
    worker_url: Annotated[
        str | None,
        typer.Option("--worker", help="A worker's web URL, for GET /products/{sku}/stock."),
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port [default 8060].")] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind [default 127.0.0.1].")
    ] = None,
    restock: Annotated[
        bool,
        typer.Option(
            "--restock/--no-restock",
            help="Load the scenario catalog's stock first (leave it to a producer that does).",
        ),
    ] = True,
) -> None:
    """Serve the HTTP checkout gateway: POST /orders publishes order lines to Kafka."""
    from flashsale.cli.run import run_gateway

    if worker_url is not None and not worker_url.startswith(("http://", "https://")):
        raise typer.BadParameter(f"{worker_url!r} is not an http:// URL", param_hint="'--worker'")
    if port is not None and not 0 < port < 65536:
        raise typer.BadParameter(f"{port} is not a port", param_hint="'--port'")
    chosen = pick_scenario(scenario, seed)
    settings = settings_for(bootstrap_servers, client_config=client_config)
    raise typer.Exit(
        run_gateway(
            settings,
            chosen,
            worker_url,
            host or settings.web_host,
            port if port is not None else settings.gateway_port,
            restock,
        )
    )


@app.command()
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
        int, typer.Option("--processes", help="Locust processes on this machine.")
    ] = 1,
    rate: Annotated[
        float,
        typer.Option("--rate", help="Kafka target: most orders/s per locust process; 0 = max."),
    ] = 0.0,
) -> None:
    """Load-test with locust (headless): our stack, then locust's summary beside flashsale's."""
    from flashsale.cli.run import run_loadtest

    _check_positive("--users", users)
    _check_positive("--duration", duration)
    _check_positive("--processes", processes)
    if shape not in {"singles-day", "constant"}:
        raise typer.BadParameter(
            f"{shape!r} is not singles-day or constant", param_hint="'--shape'"
        )
    if target not in {"gateway", "kafka"}:
        raise typer.BadParameter(f"{target!r} is not gateway or kafka", param_hint="'--target'")
    if rate < 0:
        raise typer.BadParameter(f"{rate:g} is negative", param_hint="'--rate'")
    for path in [html, Path(csv) if csv else None]:
        if path is not None and not path.parent.resolve().is_dir():
            raise typer.BadParameter(f"no folder {path.parent}", param_hint="'--html/--csv'")
    chosen = pick_scenario(scenario, seed)
    settings = settings_for(bootstrap_servers, kafka, client_config=client_config)
    raise typer.Exit(
        run_loadtest(settings, chosen, users, duration, shape, target, html, csv, processes, rate)
    )


@app.command()
def dashboard(
    worker_url: Annotated[
        list[str] | None,
        typer.Option(
            "--worker",
            help="A worker's web URL (repeat for several) [default http://127.0.0.1:6066].",
        ),
    ] = None,
    bootstrap_servers: Annotated[
        str | None,
        typer.Option(
            "--bootstrap-servers",
            envvar="FLASHSALE_BOOTSTRAP_SERVERS",
            help="Kafka to read the end offsets of orders from (consumer lag).",
        ),
    ] = None,
    client_config: ClientConfigOpt = None,
    producer_metrics: Annotated[
        list[str] | None,
        typer.Option("--producer-metrics", help="A producer's /metrics URL (scenario clock)."),
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port [default 8050].")] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind [default 127.0.0.1].")
    ] = None,
) -> None:
    """Serve the live dashboard of a running run; reads the workers' views and metrics."""
    from flashsale.cli.run import run_dashboard

    urls = worker_url or ["http://127.0.0.1:6066"]
    for url in [*urls, *(producer_metrics or [])]:
        if not url.startswith(("http://", "https://")):
            raise typer.BadParameter(f"{url!r} is not an http:// URL", param_hint="'--worker'")
    settings = settings_for(bootstrap_servers, client_config=client_config)
    if port is not None and not 0 < port < 65536:
        raise typer.BadParameter(f"{port} is not a port", param_hint="'--port'")
    raise typer.Exit(
        run_dashboard(
            urls,
            bootstrap_servers,
            settings.topic_orders,
            producer_metrics or [],
            host or settings.web_host,
            port if port is not None else settings.dashboard_port,
        )
    )


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
) -> None:
    """Run the generator and producer only."""
    from flashsale.cli.run import run_produce

    _check_positive("--duration", duration)
    _check_positive("--events", events)
    _check_positive("--workers", workers)
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
    from producers.emitter import ResumeError

    try:
        code = run_produce(
            settings, chosen, duration, events, metrics_port, workers, sink, client, resume
        )
    except ResumeError as exc:
        raise _fail(str(exc)) from None
    raise typer.Exit(code)


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
) -> None:
    """Recompute the truth from topic `orders` and compare it with what the workers produced."""
    from flashsale.cli.run import print_verdict
    from flashsale.verify import verify_live

    if run_dir is not None:
        from flashsale.cli.recording import run_verify_dir

        raise typer.Exit(run_verify_dir(run_dir, json_path))
    settings = settings_for(bootstrap_servers, client_config=client_config)
    if not settings.bootstrap_servers:
        raise typer.BadParameter(
            "verify reads an existing run: pass --bootstrap-servers or set "
            "FLASHSALE_BOOTSTRAP_SERVERS (a new embedded broker would be empty)"
        )
    result = asyncio.run(verify_live(settings, settings.bootstrap_servers))
    print_verdict(result)
    if json_path:
        json_path.write_bytes(orjson.dumps(result.summary, option=orjson.OPT_INDENT_2))
    raise typer.Exit(0 if result.reconciled else 1)


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
) -> None:
    """Broker, topics, workers, producer, metrics; run, verify, summarise, clean up."""
    from flashsale.cli.run import run_demo

    _check_positive("--duration", duration)
    if record is not None:
        _check_new_run_dir(record, "--record")
    _check_positive("--workers", workers)
    if not 0 <= pack <= MAX_PACK:
        raise typer.BadParameter(f"{pack} is not in 0..{MAX_PACK}", param_hint="'--pack'")
    chosen = pick_scenario(scenario, seed)
    settings = settings_for(bootstrap_servers, kafka, client_config=client_config).model_copy(
        update={"pack": pack}
    )
    if workers > settings.partitions:
        raise typer.BadParameter(
            f"{workers} workers for {settings.partitions} partitions would leave some idle; "
            "raise FLASHSALE_PARTITIONS",
            param_hint="'--workers'",
        )
    raise typer.Exit(
        run_demo(settings, chosen, duration, summary_json, workers, open_browser, record)
    )


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
    from flashsale.cli.recording import run_record
    from producers.record import RecordError

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
        raise _fail(str(exc)) from None
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
    from flashsale.cli.recording import run_replay
    from producers.replay import ReplayError

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
        raise _fail(str(exc)) from None
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
    from flashsale.report import run_report

    raise typer.Exit(run_report(run_dir, out))


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="Run A: a run directory.")],
    run_b: Annotated[Path, typer.Argument(help="Run B: a run directory.")],
    out: Annotated[Path, typer.Option("--out", help="The HTML page.")] = Path("compare.html"),
) -> None:
    """Two recorded runs' plots overlaid, and the differences of their summaries."""
    from flashsale.report import run_compare

    raise typer.Exit(run_compare(run_a, run_b, out))


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
        for sc in list_presets():
            print(f"{sc.name:<18} seed={sc.seed:<4} {sc.description}")


@scenarios_app.command("show")
def scenarios_show(
    name: Annotated[str, typer.Argument(help="A preset name or a scenario YAML file.")],
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write the traffic curve as a PNG here.")
    ] = None,
) -> None:
    """Print a scenario as YAML with its key figures; optionally plot its curve."""
    import yaml

    from producers.curves import Curve

    chosen = load_scenario(name)
    print(yaml.safe_dump(chosen.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
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
        from flashsale.plots import plot_curve

        if not plot.parent.is_dir():
            raise typer.BadParameter(f"no folder {plot.parent}", param_hint="'--plot'")
        # On stderr, so stdout stays a scenario file that loads back as it is.
        print(f"curve plotted: {plot_curve(chosen, plot)}", file=sys.stderr)


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
) -> None:
    """A long steady run: memory of every process, lag and latency sampled; fails on a leak,
    a worker falling behind, or a run that does not reconcile."""
    from flashsale.cli.soak import run_soak

    for name, value in (
        ("--minutes", minutes),
        ("--max-growth-mb", max_growth_mb),
        ("--sample-s", sample_s),
        ("--checkouts-per-s", checkouts_per_s),
    ):
        _check_positive(name, value)
    chosen = pick_scenario(scenario, seed)
    settings = settings_for(bootstrap_servers, kafka, client_config=client_config)
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


def _connection_error(exc: Exception) -> str:
    """One line for a client that could not reach the brokers, naming the protocol it spoke."""
    import os
    import re

    hosts = re.findall(r"\('([^']+)', (\d+)", str(exc))
    where = ",".join(f"{h}:{p}" for h, p in hosts) or "the bootstrap servers"
    protocol = os.environ.get("FLASHSALE_SECURITY_PROTOCOL", "PLAINTEXT")
    return (
        f"cannot connect to Kafka at {where} with security_protocol {protocol} "
        "(check FLASHSALE_BOOTSTRAP_SERVERS and FLASHSALE_SECURITY_PROTOCOL)"
    )


class _ConnectionFailures(logging.Handler):
    """Keeps the last reason aiokafka logged for a failed connection: its bootstrap gives up
    with "Unable to bootstrap" alone, and the reason (a refused login, an untrusted
    certificate) is only in its log."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: BaseException | None = None
        self.where = ""

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        causes = [a for a in args if isinstance(a, BaseException)]
        if causes:
            self.last = causes[-1]
            self.where = ":".join(str(a) for a in args[:2]) if len(args) >= 3 else ""


def _refused(failures: _ConnectionFailures) -> str | None:
    """One line for a connection the brokers refused for its credentials or that did not
    trust their certificate; None for any other failure."""
    import os
    import ssl

    from aiokafka.errors import AuthenticationFailedError, SaslAuthenticationFailed

    cause = failures.last
    where = failures.where or "the bootstrap servers"
    if isinstance(cause, SaslAuthenticationFailed | AuthenticationFailedError):
        user = os.environ.get("FLASHSALE_SASL_USERNAME", "")
        mechanism = os.environ.get("FLASHSALE_SASL_MECHANISM", "PLAIN")
        return (
            f"Kafka at {where} refused the {mechanism} login of user {user!r}: authentication "
            "failed (check FLASHSALE_SASL_USERNAME and FLASHSALE_SASL_PASSWORD)"
        )
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = cause.verify_message or "certificate verify failed"
        return (
            f"the TLS certificate of Kafka at {where} is not trusted: {reason} (check "
            "FLASHSALE_SSL_CAFILE: the CA that signed the brokers' certificates)"
        )
    return None


def main() -> None:
    """Entry point: usage and setup errors as one line on stderr with exit code 2."""
    command = typer.main.get_command(app)
    # Without logging set up, Python prints aiokafka's warnings (each failed connection
    # attempt) on stderr; a command says in one line what failed instead. The worker sets up
    # logging of its own, and aiokafka's records reach it.
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    failures = _ConnectionFailures()
    logging.getLogger("aiokafka").addHandler(failures)
    # SIGTERM behaves like Ctrl-C, so every `finally` and context manager cleans up.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        code = command.main(prog_name="flashsale", standalone_mode=False)
    except typer.TyperException as exc:
        # typer vendors click: its usage errors carry `format_message`, `exit_code` and `ctx`.
        if type(exc).__name__ == "NoArgsIsHelpError":
            ctx = getattr(exc, "ctx", None)
            print(ctx.get_help() if ctx else str(exc))
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `flashsale {ctx.info_name} --help`)" if ctx and ctx.parent else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"flashsale: error: {message}{hint}", file=sys.stderr)
        sys.exit(int(getattr(exc, "exit_code", 2)))
    except (TansuNotFound, BrokerError, ScenarioError, RunDirError, ClientConfigError) as exc:
        print(f"flashsale: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except typer.Abort:
        print("flashsale: aborted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("flashsale: interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        # aiokafka is imported here, not at start-up: commands without Kafka start faster.
        from aiokafka.errors import KafkaConnectionError

        if not isinstance(exc, KafkaConnectionError):
            raise
        refused = _refused(failures)
        if refused is not None:
            # A setting to correct, as a bad argument is: exit 2.
            print(f"flashsale: error: {refused}", file=sys.stderr)
            sys.exit(2)
        print(f"flashsale: error: {_connection_error(exc)}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
