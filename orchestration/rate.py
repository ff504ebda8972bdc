"""`flashsale rate`: the highest peak a pipeline holds in real time, reconciled.

Each trial is one `flashsale demo` of the scenario at some sample ratio, as a child process
whose output goes to a log. A trial HOLDS when the demo exits 0 (reconciled, no acknowledged
write lost), its end-to-end p99 is within the bound, and the producer kept the scenario's
schedule within the bound. The search (`search`) doubles or halves the ratio from the start
until one trial holds and one fails, then bisects geometrically between them; the rating is
the peak of the scenario (emitted orders per wall second) at the highest ratio that held.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
import yaml
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn

from flashsale.processes import die_with_parent, stop_process
from flashsale.scenario import Scenario, parse_scenario
from orchestration.bisection import Search, search
from orchestration.console import console

__all__ = [
    "INTERRUPT_WAIT_S",
    "RateOptions",
    "RatingStopped",
    "Trial",
    "judge",
    "packing",
    "run_rate",
    "run_trial",
    "scaled",
]

#: How long a trial's demo may take to clean up after rate's SIGINT before it is killed.
INTERRUPT_WAIT_S: Final = 60.0

# --- one trial -----------------------------------------------------------------------------


def judge(
    exit_code: int, summary: dict[str, Any] | None, p99_bound_ms: float, max_behind_s: float
) -> tuple[bool, str, tuple[str, ...]]:
    """(held, why, what missed) of a trial: it holds when the demo exited 0 (reconciled, no
    acknowledged write lost), its end-to-end p99 is at most `p99_bound_ms` and its producer
    fell at most `max_behind_s` behind schedule. `why` names every bound missed with its
    figures, or the bounds met; `what missed` in a word each (`verdict`, `reconciled`,
    `acked`, `exit`, `p99`, `behind`)."""
    if summary is None:
        how = f"killed by signal {-exit_code}" if exit_code < 0 else f"exited {exit_code}"
        return False, f"no verdict: the demo {how} before its run summary", ("verdict",)
    missed: list[tuple[str, str]] = []
    if not summary.get("reconciled"):
        missed.append(("reconciled", "not reconciled"))
    if summary.get("acked_lost"):
        missed.append(("acked", f"{summary['acked_lost']:,} acknowledged writes lost"))
    if exit_code != 0 and not missed:
        missed.append(("exit", f"the demo exited {exit_code}"))
    p99 = summary.get("e2e_latency_p99_ms")
    if p99 is None:
        missed.append(("p99", "no latency measured"))
    elif p99 > p99_bound_ms:
        missed.append(("p99", f"p99 {p99:,.0f} ms > {p99_bound_ms:,g} ms"))
    behind = (summary.get("producer") or {}).get("behind_max_s")
    if behind is None:
        missed.append(("behind", "the producer's schedule unknown (no `producer` figures)"))
    elif behind > max_behind_s:
        missed.append(("behind", f"producer {behind:,.1f} s behind > {max_behind_s:g} s"))
    if missed:
        return False, "; ".join(why for _, why in missed), tuple(tag for tag, _ in missed)
    return True, f"p99 ≤ {p99_bound_ms:,g} ms, behind ≤ {max_behind_s:g} s", ()


#: The figures of a trial's run summary `rating.json` gives: (key, summary field).
FIGURES: Final = (
    ("events_sent", "producer.events_sent"),
    ("events_processed", "events_processed"),
    ("orders_processed", "orders_processed"),
    ("gmv_cents_streamed", "gmv_cents_streamed"),
    ("acked_writes", "acked_writes"),
    ("e2e_latency_p99_ms", "e2e_latency_p99_ms"),
    ("behind_max_s", "producer.behind_max_s"),
    ("reconciled", "reconciled"),
)


@dataclass
class Trial:
    """One demo of the scenario at `ratio` and what came of it."""

    number: int
    ratio: float
    peak_per_s: float
    exit_code: int
    elapsed_s: float
    summary: dict[str, Any] | None
    held: bool
    why: str
    log: Path
    missed: tuple[str, ...] = ()
    """What the trial missed, in a word each (`judge`)."""

    def figure(self, name: str) -> Any:
        """A field of the run summary (`producer.X` for the producer's), or None."""
        if self.summary is None:
            return None
        if name.startswith("producer."):
            return (self.summary.get("producer") or {}).get(name.removeprefix("producer."))
        return self.summary.get(name)

    def figures(self) -> dict[str, Any]:
        """The trial's figures in `rating.json` (None where the demo gave no summary)."""
        return {
            "sample_ratio": self.ratio,
            "peak_orders_per_s": round(self.peak_per_s, 1),
            **{key: self.figure(name) for key, name in FIGURES},
        }

    def to_json(self) -> dict[str, Any]:
        """The trial as `rating.json` lists it."""
        return {
            "trial": self.number,
            "held": self.held,
            "why": self.why,
            "missed": list(self.missed),
            "exit_code": self.exit_code,
            "elapsed_s": round(self.elapsed_s, 1),
            **self.figures(),
            "log": self.log.name,
            "summary": f"trial-{self.number}.json" if self.summary is not None else None,
        }

    def cells(self) -> list[str]:
        """ratio, peak orders/s, events, p99 ms, producer behind s, reconciled: as shown."""
        events, p99, behind, ok = (
            self.figure(name)
            for name in ("producer.events_sent", "e2e_latency_p99_ms", "producer.behind_max_s",
                         "reconciled")
        )  # fmt: skip
        return [
            f"{self.ratio:g}",
            f"{self.peak_per_s:,.0f}",
            "—" if events is None else f"{events:,}",
            "—" if p99 is None else f"{p99:,.0f}",
            "—" if behind is None else f"{behind:.2f}",
            "—" if ok is None else ("yes" if ok else "NO"),
        ]

    def verdict(self, short: bool = False) -> str:
        """HELD or FAILED (rich markup); `short`: with what it missed in a word each."""
        if self.held:
            return "[green]HELD[/green]"
        return "[red]FAILED[/red]" + (f" ({', '.join(self.missed)})" if short else "")


def scaled(scenario: Scenario, ratio: float) -> tuple[Scenario, dict[str, Any]]:
    """`scenario` at sample ratio `ratio`, and the document a YAML file of it holds (a csv
    curve's points written in, not its path: the file loads back the same from anywhere)."""
    data = scenario.model_dump(mode="json", by_alias=True)
    data["scale"]["sample_ratio"] = ratio
    if data["curve"].get("points"):
        data["curve"]["path"] = None
    return parse_scenario(data, f"{scenario.name} at sample ratio {ratio:g}"), data


@dataclass
class RateOptions:
    """What `flashsale rate` was asked: the scenario, the bounds, the search, and the options
    every trial's demo is given (`demo_args`)."""

    scenario: Scenario
    duration_s: float
    out: Path
    start_ratio: float
    max_ratio: float = 1.0
    min_ratio: float = 1e-5
    precision: float = 0.1
    max_trials: int = 8
    p99_ms: float = 1000.0
    max_behind_s: float = 1.0
    broker: str = "embedded"
    pack: int = 0
    system: dict[str, Any] | None = None
    demo_args: tuple[str, ...] = ()
    json_path: Path | None = None
    #: The bare-client ceiling measured before the trials (`orchestration.ceiling`), and the
    #: events the scenario's busiest second holds per order at the curve's peak.
    ceiling: dict[str, Any] | None = None
    events_per_peak_order: float | None = None


class RatingStopped(Exception):
    """The rating cannot go on: `message` says why, `code` is the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _last_error(log: Path) -> str | None:
    """The demo's one-line error (`flashsale: error: ...`) in its log, if any."""
    lines = log.read_text(errors="replace").splitlines()
    for line in reversed(lines):
        if line.startswith("flashsale: "):
            return line.removeprefix("flashsale: ").removeprefix("error: ")
    return None


def _interrupt(proc: subprocess.Popen[bytes]) -> None:
    """Stop a trial's demo as Ctrl-C would (it stops its broker and workers), then wait; kill
    it when it takes too long or when Ctrl-C comes again."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=INTERRUPT_WAIT_S)
    except subprocess.TimeoutExpired:
        stop_process(proc, 10.0)
    except KeyboardInterrupt:
        proc.kill()
        proc.wait()


def run_trial(opts: RateOptions, number: int, ratio: float, tick: Callable[[float], None]) -> Trial:
    """Run the demo of trial `number` at `ratio` (its files `trial-N.*` in the output folder),
    calling `tick(elapsed seconds)` while it runs; on Ctrl-C the demo is stopped first."""
    chosen, document = scaled(opts.scenario, ratio)
    scenario_file = opts.out / f"trial-{number}.yaml"
    scenario_file.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    summary_file = opts.out / f"trial-{number}.json"
    log = opts.out / f"trial-{number}.log"
    command = [
        sys.executable, "-m", "orchestration", "demo",
        "--scenario", str(scenario_file),
        "--duration", f"{opts.duration_s:g}",
        "--summary-json", str(summary_file),
        *opts.demo_args,
    ]  # fmt: skip
    started = time.monotonic()
    with log.open("wb") as out:
        out.write(f"$ {' '.join(command)}\n".encode())
        out.flush()
        # A process group of its own: Ctrl-C at the terminal reaches rate only, which stops
        # the demo with one SIGINT (a second one would cut short its clean-up).
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),
            process_group=0,
        )
        try:
            while True:
                tick(time.monotonic() - started)
                try:
                    code = proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    continue
        except BaseException:
            _interrupt(proc)
            out.write(f"# flashsale rate: stopped the demo (exit {proc.returncode})\n".encode())
            raise
        elapsed = time.monotonic() - started
        out.write(f"# flashsale rate: the demo exited {code} after {elapsed:.1f} s\n".encode())
    if code == 2:
        why = _last_error(log) or "the demo refused its options"
        raise RatingStopped(f"trial {number}: {why} (log: {log})", 2)
    summary = orjson.loads(summary_file.read_bytes()) if summary_file.exists() else None
    held, why, missed = judge(code, summary, opts.p99_ms, opts.max_behind_s)
    peak = chosen.peak_wall_rate
    return Trial(number, ratio, peak, code, elapsed, summary, held, why, log, missed)


# --- the rating ----------------------------------------------------------------------------


def _line(trial: Trial) -> str:
    """The one line printed after a trial."""
    ratio, peak, events, p99, behind, ok = trial.cells()
    return (
        f"trial {trial.number}  ratio {ratio}  peak {peak} orders/s  events {events}  "
        f"p99 {p99} ms  behind {behind} s  reconciled {ok}  {trial.verdict()} ({trial.why})"
    )


def _document(opts: RateOptions, trials: list[Trial], stopped: str) -> dict[str, Any]:
    """What `rating.json` (and `--json`) holds: the options, every trial, the rating."""
    rating = None
    best = max((t for t in trials if t.held), key=lambda t: t.ratio, default=None)
    if best is not None:
        above = min((t for t in trials if not t.held and t.ratio > best.ratio),
                    key=lambda t: t.ratio, default=None)  # fmt: skip
        rating = {
            "trial": best.number,
            **best.figures(),
            # The lowest ratio above it that failed: the limit lies between (None: no trial
            # failed above it, the rating is a lower bound).
            "failed_at": None
            if above is None
            else {"sample_ratio": above.ratio, "peak_orders_per_s": round(above.peak_per_s, 1)},
        }
        if opts.ceiling and opts.events_per_peak_order:
            events = best.peak_per_s * opts.events_per_peak_order
            rating["peak_events_per_s"] = round(events, 1)
            rating["of_ceiling"] = round(events / opts.ceiling["events_per_s"], 3)
    return {
        "scenario": opts.scenario.name,
        "broker": opts.broker,
        "pack": opts.pack,
        "system": opts.system,
        "p99_bound_ms": opts.p99_ms,
        "max_behind_s": opts.max_behind_s,
        "duration_s": opts.duration_s,
        "precision": opts.precision,
        "max_trials": opts.max_trials,
        "stopped": stopped,
        "ceiling": opts.ceiling,
        "trials": [t.to_json() for t in trials],
        "rating": rating,
    }


def _write(opts: RateOptions, doc: dict[str, Any]) -> None:
    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
    (opts.out / "rating.json").write_bytes(data)
    if opts.json_path is not None:
        opts.json_path.write_bytes(data)


def packing(pack: int) -> str:
    """How the producer sends: per-order messages, or packed ones of up to `pack` events."""
    return "per-order" if pack == 0 else f"packed {pack}"


def run_rate(opts: RateOptions) -> tuple[list[Trial], Search]:
    """`flashsale rate`'s search, a line printed after each trial and `rating.json` written
    after each (and on Ctrl-C); every trial and where the search stopped. `RatingStopped`
    when a trial's demo refused its options (code 2) or the first trial reached no verdict
    (code 1): a pipeline that never gets as far as a verdict is not rated."""
    opts.out.mkdir(parents=False, exist_ok=True)
    trials: list[Trial] = []
    stopped = "interrupted"
    console.print(
        f"rating {opts.scenario.name} on {opts.broker} ({packing(opts.pack)}): a trial holds "
        f"when its demo reconciles, p99 ≤ {opts.p99_ms:,g} ms and the producer ≤ "
        f"{opts.max_behind_s:g} s behind; {opts.duration_s:g} s per trial, logs in "
        f"{escape(str(opts.out))}",
        soft_wrap=True,
    )
    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True
    )
    task = progress.add_task("", total=None)

    def holds(ratio: float) -> bool:
        number = len(trials) + 1
        peak = scaled(opts.scenario, ratio)[0].peak_wall_rate
        best = max((t for t in trials if t.held), key=lambda t: t.ratio, default=None)
        shown_best = "none yet" if best is None else f"{best.peak_per_s:,.0f} orders/s"

        def tick(elapsed: float) -> None:
            progress.update(
                task,
                description=f"trial {number}/{opts.max_trials}  ratio {ratio:g}  peak "
                f"{peak:,.0f} orders/s  {elapsed:4.0f} s  best held: {shown_best}",
            )

        trial = run_trial(opts, number, ratio, tick)
        trials.append(trial)
        console.print(_line(trial), soft_wrap=True)
        _write(opts, _document(opts, trials, "searching"))
        if number == 1 and trial.summary is None:
            raise RatingStopped(
                f"trial {number} ended without a verdict ({trial.why}); not rating a pipeline "
                f"that never reached one: see {trial.log}",
                1,
            )
        return trial.held

    found: Search | None = None
    try:
        with progress:
            found = search(
                holds,
                opts.start_ratio,
                min_ratio=opts.min_ratio,
                max_ratio=opts.max_ratio,
                precision=opts.precision,
                max_trials=opts.max_trials,
            )
        stopped = found.stopped
    except RatingStopped as exc:
        stopped = "refused" if exc.code == 2 else "no-verdict"
        raise
    finally:
        _write(opts, _document(opts, trials, stopped))
    assert found is not None  # the search returned
    return trials, found
