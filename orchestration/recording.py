"""The bodies of `flashsale record`, `flashsale replay` and `flashsale verify RUN_DIR`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import orjson
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from flashsale.acklog import AckedWrite
from flashsale.brokers.local import broker_for, describe_broker, settings_on
from flashsale.kafka.admin import ensure_run_topics
from flashsale.processes import free_port
from flashsale.settings import Settings
from orchestration.console import console, error, print_judgement, print_verdict
from recordings.format import RecordedRun, RunDirError, load_run
from recordings.offline import business_differences, verify_recorded
from recordings.record import CaptureReport, capture
from recordings.replay import ReplayStats, replay_orders
from streams.process import WorkerProcess, wait_drained, wait_group_ready
from verify.live import NoSuchTopic, judge_live, verify_live
from verify.reconcile import VerifyResult

__all__ = ["record_run", "run_record", "run_replay", "run_verify", "run_verify_dir"]

WORKER_READY_TIMEOUT_S = 90.0


def _message_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("messages {task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


class _Bar:
    """A message-count progress bar with a rate, fed by callbacks."""

    def __init__(self, progress: Progress, description: str) -> None:
        self.progress = progress
        self.description = description
        self.task: TaskID | None = None
        self.last = (time.monotonic(), 0)

    def start(self, total: int, _topics: int = 0) -> None:
        self.task = self.progress.add_task(self.description, total=max(total, 1), rate="")

    def update(self, done: int) -> None:
        if self.task is None:
            return
        now = time.monotonic()
        if now - self.last[0] >= 0.25:
            rate = (done - self.last[1]) / (now - self.last[0])
            self.last = (now, done)
            self.progress.update(self.task, completed=done, rate=f"{rate:,.0f}/s")
        else:
            self.progress.update(self.task, completed=done)

    def finish(self, done: int, total: int | None = None) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=done, total=max(total or done, 1), rate="")


def record_run(
    bootstrap: str,
    out: Path,
    settings: Settings,
    topics: Sequence[str] | None = None,
    worker_settings: Settings | None = None,
) -> CaptureReport:
    """Capture with a progress bar; print what was captured. `RecordError` when it cannot."""
    with _message_bar() as progress:
        bar = _Bar(progress, f"record → {out}")

        def started(total: int, n_topics: int) -> None:
            console.print(f"recording {total:,} offsets of {n_topics} topics into {out}")
            bar.start(total)

        report = asyncio.run(
            capture(bootstrap, out, settings, topics, started, bar.update, worker_settings)
        )
        bar.finish(report.read, report.read)
    m = report.manifest
    if report.already_complete:
        console.print(f"{out} is complete already ({m['messages']:,} messages): nothing to read")
    else:
        if report.skipped:
            console.print(f"not on the broker, skipped: {', '.join(report.skipped)}")
        console.print(
            f"recorded {report.read:,} messages{' (resumed)' if report.resumed else ''}; "
            f"{out} holds {m['messages']:,} messages of {len(m['topics'])} topics"
            f" (scenario {m['scenario']}, seed {m['seed']})"
        )
    return report


def run_record(settings: Settings, topics: Sequence[str] | None, out: Path) -> int:
    """`flashsale record`: 0 when the capture is complete."""
    bootstrap = settings.bootstrap_servers or ""
    report = record_run(bootstrap, out, settings, topics)
    return 0 if report.manifest.get("complete") else 1


def run_verify(
    settings: Settings,
    json_path: Path | None,
    acknowledged: Sequence[AckedWrite] | None = None,
) -> int:
    """`flashsale verify`: reconcile the run on `settings.bootstrap_servers`; with
    `acknowledged` (the lines of `--ack-log` files), check each of those writes too. 0 when
    reconciled and no acknowledged write is lost."""
    assert settings.bootstrap_servers, "verify reads an existing run"
    result = asyncio.run(verify_live(settings, settings.bootstrap_servers, acknowledged))
    print_verdict(result)
    if json_path:
        json_path.write_bytes(orjson.dumps(result.summary, option=orjson.OPT_INDENT_2))
    return 0 if result.passed else 1


def run_verify_against(settings: Settings, topic: str, level: str, json_path: Path | None) -> int:
    """`flashsale verify --against TOPIC`: judge another system's output topic against the
    truth of `orders` (docs/contract.md). 0 without anomalies, 1 with, 2 when a topic is
    missing."""
    assert settings.bootstrap_servers, "verify reads an existing run"
    with console.status(f"reading orders and {topic}, recomputing the truth..."):
        try:
            verdict = asyncio.run(judge_live(settings, settings.bootstrap_servers, topic, level))
        except NoSuchTopic as exc:
            return error(str(exc))
    print_judgement(verdict)
    if json_path:
        json_path.write_bytes(orjson.dumps(verdict.to_json(), option=orjson.OPT_INDENT_2))
    return 0 if verdict.passed else 1


def run_verify_dir(run_dir: Path, json_path: Path | None) -> int:
    """`flashsale verify RUN_DIR`: reconcile the recorded topics offline."""
    with console.status(f"reading {run_dir} ..."):
        run = load_run(run_dir)
    with console.status("verifying against the truth recomputed from the recorded orders..."):
        result = verify_recorded(run)
    print_verdict(result)
    if json_path:
        json_path.write_bytes(orjson.dumps(result.summary, option=orjson.OPT_INDENT_2))
    return 0 if result.reconciled else 1


def run_replay(
    settings: Settings, run_dir: Path, speed: float | None, restamp: bool, summary_json: Path | None
) -> int:
    """`flashsale replay`: into the given Kafka, or into a fresh embedded broker with a worker,
    then drained, verified and compared with the recorded run."""
    run = load_run(run_dir)
    source = run.role("orders")
    if source is None:
        raise RunDirError(f"{run_dir / 'manifest.json'}: the run has no recorded orders topic")
    if settings.bootstrap_servers:
        stats = _replay_with_bar(run, settings, speed, restamp)
        return 0 if stats.errors == 0 else 1
    ran = run.manifest.get("settings", {})
    update = {
        "partitions": run.partitions(source),
        "dedupe_window": int(ran.get("dedupe_window", settings.dedupe_window)),
        "window_grace_s": float(ran.get("window_grace_s", settings.window_grace_s)),
    }
    fresh = settings.model_copy(update=update)
    with broker_for(fresh, announce=False) as (bootstrap, broker):
        console.print(f"broker: {bootstrap} ({describe_broker(broker)})")
        live = asyncio.run(ensure_run_topics(settings_on(fresh, bootstrap), bootstrap))
        worker = WorkerProcess(live, free_port(live.web_host, live.web_port))
        try:
            worker.start()
            with console.status("waiting for the worker to join the consumer group..."):
                wait_group_ready([worker], live.partitions, WORKER_READY_TIMEOUT_S)
            stats = _replay_with_bar(run, live, speed, restamp)
            if stats.errors:
                return 1
            with console.status("waiting for the worker to apply every order..."):
                wait_drained([worker], live, timeout_s=600)
            with console.status("verifying the replay..."):
                result = asyncio.run(verify_live(live, bootstrap))
        except (RuntimeError, TimeoutError) as exc:
            console.print(f"[red]replay stopped: {exc}[/red]")
            return 1
        finally:
            worker.stop()
    print_verdict(result)
    if summary_json:
        summary_json.write_bytes(orjson.dumps(result.summary, option=orjson.OPT_INDENT_2))
        console.print(f"run summary: {summary_json}")
    same = _compare_with_original(run, result)
    return 0 if result.reconciled and same else 1


def _compare_with_original(run: RecordedRun, replayed: VerifyResult) -> bool:
    """Print whether the replay's business figures equal the recorded run's (verified offline)."""
    try:
        original = verify_recorded(run)
    except RunDirError as exc:
        console.print(f"[yellow]not compared with the original run: {exc}[/yellow]")
        return True
    diffs = business_differences(original.summary, replayed.summary)
    if not diffs:
        console.print(
            "[green]the replay equals the recorded run: every outcome count, GMV, "
            "refunds, sell-outs, late events and windows[/green]"
        )
        return True
    console.print("[red]the replay differs from the recorded run (original != replay):[/red]")
    for line in diffs:
        console.print(f"  - {line}")
    return False


def _replay_with_bar(
    run: RecordedRun, settings: Settings, speed: float | None, restamp: bool
) -> ReplayStats:
    stats = ReplayStats()
    pace = "max speed" if speed is None else f"{speed:g}x"
    with _message_bar() as progress:
        bar = _Bar(progress, f"replay {run.path.name} → {settings.topic_orders} ({pace})")

        async def main() -> ReplayStats:
            stop = asyncio.Event()
            task = asyncio.create_task(
                replay_orders(run, settings, speed, stats, restamp, should_stop=stop.is_set)
            )
            try:
                while not task.done():
                    await asyncio.wait({task}, timeout=0.25)
                    if stats.total and bar.task is None:
                        bar.start(stats.total)
                    bar.update(stats.sent)
            except asyncio.CancelledError:
                # Ctrl-C: let the replay stop between messages and close its producer.
                stop.set()
                await asyncio.wait({task}, timeout=10)
                raise
            return task.result()

        asyncio.run(main())
        bar.finish(stats.sent, stats.total)
    console.print(
        f"replayed {stats.sent:,} of {stats.total:,} messages in {stats.duration_s:.1f} s "
        f"({stats.sent / max(stats.duration_s, 1e-9):,.0f}/s); acknowledged {stats.acked:,}, "
        f"failed {stats.errors:,}"
    )
    if stats.errors:
        console.print(f"[red]last error: {stats.last_error}[/red]")
    return stats
