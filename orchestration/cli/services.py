"""`flashsale worker`, `gateway` and `dashboard`: one service each, in the foreground."""

from __future__ import annotations

from typing import Annotated

import typer

from flashsale.scenario import DEFAULT_SCENARIO
from orchestration.cli.app import (
    BootstrapOpt,
    ClientConfigOpt,
    GuaranteeOpt,
    KafkaOpt,
    ScenarioOpt,
    SeedOpt,
    app,
    check_guarantee,
    fail,
    pick_scenario,
    refuse_embedded_exactly_once,
    settings_for,
)

__all__ = ["dashboard", "gateway", "worker"]


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
    processing_guarantee: GuaranteeOpt = None,
) -> None:
    """Run one Faust worker; its views and /metrics on --web-port."""
    from orchestration.services import run_worker_service

    if log_level not in {"crit", "error", "warn", "info", "debug"}:
        raise typer.BadParameter(
            f"{log_level!r} is not one of crit, error, warn, info, debug",
            param_hint="'--log-level'",
        )
    check_guarantee(processing_guarantee)
    settings = settings_for(
        bootstrap_servers,
        kafka,
        client_config=client_config,
        web_port=web_port,
        processing_guarantee=processing_guarantee,
    )
    refuse_embedded_exactly_once(settings)
    from streams.transactions import TransactionsUnsupported

    try:
        run_worker_service(settings, log_level)
    except TransactionsUnsupported as exc:
        raise fail(str(exc)) from None


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
    from orchestration.services import run_gateway

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
    scenario: Annotated[
        str | None,
        typer.Option(
            "--scenario",
            help="The run's scenario (a preset or a YAML file): the page shows its times in "
            "the scenario's time zone, and its clock from the scenario's start [default: UTC].",
        ),
    ] = None,
) -> None:
    """Serve the live dashboard of a running run; reads the workers' views and metrics."""
    from orchestration.services import run_dashboard

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
            None if scenario is None else pick_scenario(scenario, None).start,
        )
    )
