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
) -> None:
    """Run a local Apache Kafka (KRaft, 1 or 3 nodes on loopback) in the foreground."""
    from orchestration.services import run_kafka

    if nodes not in (1, 3):
        raise typer.BadParameter(f"{nodes} is not 1 or 3", param_hint="'--nodes'")
    if data is not None and data.exists() and not data.is_dir():
        raise typer.BadParameter(f"{data} is not a folder", param_hint="'--data'")
    run_kafka(settings_for(None), nodes, data)
