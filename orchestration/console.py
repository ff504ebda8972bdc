"""The console every command prints to, and what several commands print: the verdict of a
run, the fault log of one, warnings and one-line errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from producers.sinks.base import ProduceStats
    from verify.against import Judgement
    from verify.reconcile import VerifyResult


__all__ = [
    "console",
    "error",
    "print_faults",
    "print_judgement",
    "print_produced",
    "print_verdict",
    "warn",
]

console = Console(highlight=False)
_err_console = Console(stderr=True, highlight=False)


def print_verdict(result: VerifyResult) -> None:
    """The run summary as a table, then the differences or a reconciled line."""
    s = result.summary
    table = Table(title="flashsale run summary", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", justify="right")
    # A section (the demo's `producer`) shows as one row per field.
    rows = [
        (f"{key}.{sub}", inner) if isinstance(value, dict) else (key, value)
        for key, value in s.items()
        for sub, inner in (value.items() if isinstance(value, dict) else [(None, value)])
    ]
    for key, value in rows:
        if "_cents" in key and isinstance(value, int):
            shown = f"{value:,} (€{value / 100:,.2f})"
        elif isinstance(value, bool):
            shown = "yes" if value else "NO"
        elif isinstance(value, int):
            shown = f"{value:,}"
        elif isinstance(value, float):
            shown = f"{value:,.2f}"
        else:
            shown = str(value)
        table.add_row(key, shown)
    console.print(table)
    if result.reconciled:
        console.print(
            "[green]reconciled: GMV, refunds and every outcome (accepted, rejected, paid, "
            "cancelled, refunded, duplicate, orphan, mismatch) match the truth exactly; "
            "units conserved, no SKU oversold[/green]"
        )
    else:
        console.print("[red]NOT reconciled:[/red]")
        for diff in result.differences:
            console.print(f"  - {diff}")
    writes = s.get("acked_writes")
    if writes is None:
        return
    if result.ack_findings:
        console.print("[red]acknowledged writes NOT all kept as acknowledged:[/red]")
        for line in result.ack_findings:
            console.print(f"  - {line}")
    else:
        console.print(
            f"[green]acknowledged writes: all {writes:,} on orders at their partition and "
            "offset, with their seq and bytes, once[/green]"
        )


def print_produced(st: ProduceStats, acknowledged: bool = True) -> None:
    """What a run's producer sent (with `acknowledged`: what the broker acknowledged), after
    the live status line, and whether it fell behind the scenario's schedule."""
    if not console.is_terminal:
        console.line()  # a piped status line ends without one
    acks = f"; {st.acked:,} messages acknowledged, {st.errors:,} failed" if acknowledged else ""
    console.print(
        f"produced {st.orders_sent:,} order events ({st.restocks_sent:,} restocks) in "
        f"{st.duration_s:.1f} s{acks}"
    )
    if st.max_behind_s > 1.0:
        console.print(
            f"[yellow]the producer fell up to {st.max_behind_s:.1f} s behind schedule[/yellow]"
        )


def print_judgement(verdict: Judgement) -> None:
    """The verdict on another system's output (`verify --against`): a row per anomaly class,
    the latency, then one line."""
    from verify.against import classes

    console.print(
        f"judged {verdict.topic} at the {verdict.level} level: {verdict.records:,} records "
        f"against {verdict.events:,} events of orders"
    )
    table = Table(title="anomalies", title_justify="left")
    table.add_column("class", style="bold")
    table.add_column("count", justify="right")
    table.add_column("meaning")
    table.add_column("first offenders")
    for name, meaning in classes(verdict.level).items():
        count = verdict.counts[name]
        table.add_row(
            name,
            f"[red]{count:,}[/red]" if count else "0",
            meaning,
            "; ".join(verdict.examples[name]),
        )
    console.print(table)
    p50, p99, p999 = (verdict.latency(q) for q in (0.50, 0.99, 0.999))
    if p50 is None:
        console.print("latency from emit to the system's output: no figures")
    else:
        console.print(
            f"latency from emit to the system's output: p50 {p50:,.1f} ms, p99 {p99:,.1f} ms, "
            f"p99.9 {p999:,.1f} ms ({len(verdict.latencies_ms):,} measured)"
        )
    if verdict.passed:
        console.print(f"[green]{verdict.topic}: no anomaly, every figure matches the truth[/green]")
    else:
        found = sum(verdict.counts.values())
        console.print(f"[red]{verdict.topic}: {found:,} anomalies[/red]")


def warn(line: str) -> None:
    """A producer's warning (behind schedule), as a yellow line."""
    console.print(f"[yellow]warning: {line}[/yellow]")


def error(message: str) -> int:
    """Print `flashsale: error: MESSAGE` as one line on stderr; the exit code of bad input, 2."""
    _err_console.print(f"flashsale: error: {message}", markup=False, soft_wrap=True)
    return 2


def print_faults(log: Sequence[dict[str, Any]]) -> None:
    """The fault log as a table: what, when, how long the pipeline took to recover."""
    table = Table(title="faults", title_justify="left")
    for name in ("at", "fault", "target", "started", "ended", "recovered after", "lag max",
                 "events delayed"):  # fmt: skip
        table.add_column(name, justify="left" if name in ("fault", "target") else "right")

    def secs(value: float | None) -> str:
        return "—" if value is None else f"{value:.1f} s"

    for entry in log:
        recovered = entry.get("recovered_after_s")
        table.add_row(
            f"{entry['at_s']:g} s",
            entry["action"] + (f" for {entry['for_s']:g} s" if entry.get("for_s") else ""),
            entry.get("resolved") or entry["target"],
            secs(entry.get("started_s")),
            secs(entry.get("ended_s")),
            "not recovered" if recovered is None else f"{recovered:.1f} s",
            "—" if entry.get("lag_max") is None else f"{entry['lag_max']:,}",
            "—" if entry.get("events_delayed") is None else f"{entry['events_delayed']:,}",
        )
    console.print(table)
    for entry in log:
        if entry.get("error"):
            console.print(f"[red]fault {entry['action']} {entry['target']}: {entry['error']}[/red]")
