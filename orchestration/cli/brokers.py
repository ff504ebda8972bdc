"""`flashsale broker` and `flashsale kafka`: a local broker in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestration.cli.app import app, settings_for

__all__ = ["broker", "kafka"]


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 0,
) -> None:
    """Run the embedded broker (Tansu, memory storage) in the foreground."""
    from orchestration.services import run_broker

    run_broker(settings_for(None), port or None)


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
    network: Annotated[
        str,
        typer.Option(
            "--network",
            help="loopback: every node on 127.0.0.1; namespaces: each node in a network "
            "namespace of its own, with an address of its own on a bridge (Linux, root), so "
            "one can be cut off the network.",
        ),
    ] = "loopback",
) -> None:
    """Run a local Apache Kafka (KRaft, 1 or 3 nodes) in the foreground."""
    from flashsale.brokers.netns import namespaces_unavailable
    from orchestration.services import run_kafka

    if nodes not in (1, 3):
        raise typer.BadParameter(f"{nodes} is not 1 or 3", param_hint="'--nodes'")
    if data is not None and data.exists() and not data.is_dir():
        raise typer.BadParameter(f"{data} is not a folder", param_hint="'--data'")
    if network not in ("loopback", "namespaces"):
        raise typer.BadParameter(
            f"{network!r} is not loopback or namespaces", param_hint="'--network'"
        )
    if network == "namespaces" and (why := namespaces_unavailable()) is not None:
        raise typer.BadParameter(why, param_hint="'--network'")
    run_kafka(
        settings_for(None), nodes, data, "namespaces" if network == "namespaces" else "loopback"
    )
