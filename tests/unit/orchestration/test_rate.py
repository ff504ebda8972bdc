"""`flashsale rate` without a broker: the search over sample ratios against a fake pipeline
that holds up to a threshold, the verdict on a trial, the scenario each trial runs, the
command's rating and its refusals of bad options."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import orchestration.ceiling as ceiling_module
import orchestration.rate as rate_module
from flashsale.scenario import list_presets, load_scenario
from orchestration.bisection import STOPS, search
from orchestration.cli import app
from orchestration.cli.rate import _max_ratio
from orchestration.rate import RateOptions, RatingStopped, Trial, judge, scaled


def below(threshold: float) -> Callable[[float], bool]:
    """A pipeline that holds every ratio up to `threshold`."""
    return lambda ratio: ratio <= threshold


# --- the search ----------------------------------------------------------------------------


def test_a_ratio_that_holds_doubles_until_one_fails_then_bisects() -> None:
    found = search(below(0.0123), 0.005)
    assert found.tried == [
        (0.005, True),
        (0.01, True),
        (0.02, False),
        (0.01414, False),  # sqrt(0.01 * 0.02), to 4 digits
        (0.01189, True),
        (0.01297, False),
    ]
    assert (found.held, found.failed, found.stopped) == (0.01189, 0.01297, "bracketed")
    assert 0.01297 / 0.01189 <= 1.1


def test_a_ratio_that_fails_halves_until_one_holds_then_bisects() -> None:
    found = search(below(0.001), 0.005)
    assert [ratio for ratio, _ in found.tried[:4]] == [0.005, 0.0025, 0.00125, 0.000625]
    assert [held for _, held in found.tried[:4]] == [False, False, False, True]
    assert found.stopped == "bracketed"
    assert found.held is not None and found.failed is not None
    assert found.held <= 0.001 < found.failed <= found.held * 1.1


def test_holding_at_the_cap_stops_there_with_no_ratio_failed() -> None:
    found = search(below(5.0), 0.25)
    assert found.tried == [(0.25, True), (0.5, True), (1.0, True)]
    assert (found.held, found.failed, found.stopped) == (1.0, None, "cap")
    # Doubling never passes the cap: 0.3 -> 0.6 -> 1 (not 1.2).
    assert [r for r, _ in search(below(5.0), 0.3).tried] == [0.3, 0.6, 1.0]
    assert search(below(5.0), 0.02, max_ratio=0.05).tried[-1] == (0.05, True)


def test_a_start_at_the_cap_that_holds_is_one_trial() -> None:
    found = search(below(5.0), 1.0)
    assert (found.tried, found.stopped) == ([(1.0, True)], "cap")


def test_nothing_holding_stops_at_the_min_ratio_with_no_rating() -> None:
    found = search(below(0.0), 0.005, min_ratio=0.001)
    # The floor itself is tried last, not a ratio below it.
    assert found.tried == [(0.005, False), (0.0025, False), (0.00125, False), (0.001, False)]
    assert (found.held, found.failed, found.stopped) == (None, 0.001, "floor")


def test_the_trial_budget_stops_each_phase() -> None:
    doubling = search(below(5.0), 1e-4, max_trials=3)
    assert [r for r, _ in doubling.tried] == [1e-4, 2e-4, 4e-4]
    assert (doubling.held, doubling.failed, doubling.stopped) == (4e-4, None, "max-trials")
    halving = search(below(0.0), 0.005, max_trials=2)
    assert (halving.held, halving.stopped, len(halving.tried)) == (None, "max-trials", 2)
    bisecting = search(below(0.0123), 0.005, max_trials=4)
    assert (bisecting.held, bisecting.failed, bisecting.stopped) == (0.01, 0.01414, "max-trials")


def test_a_coarser_precision_stops_sooner() -> None:
    fine = search(below(0.0123), 0.005, precision=0.01, max_trials=50)
    coarse = search(below(0.0123), 0.005, precision=0.5, max_trials=50)
    assert len(coarse.tried) < len(fine.tried)
    assert coarse.failed is not None and coarse.held is not None
    assert coarse.failed / coarse.held <= 1.5
    assert fine.failed is not None and fine.held is not None
    assert fine.failed / fine.held <= 1.01


@settings(max_examples=300, deadline=None)
@given(
    threshold=st.floats(1e-6, 2.0),
    start=st.floats(1e-5, 1.0),
    precision=st.sampled_from([0.01, 0.1, 0.5]),
    max_trials=st.integers(1, 30),
)
def test_the_search_brackets_the_threshold_within_its_budget(
    threshold: float, start: float, precision: float, max_trials: int
) -> None:
    calls: list[float] = []

    def holds(ratio: float) -> bool:
        calls.append(ratio)
        return ratio <= threshold

    found = search(holds, start, min_ratio=1e-5, precision=precision, max_trials=max_trials)
    assert len(calls) == len(found.tried) <= max_trials
    assert all(1e-5 <= r <= 1.0 for r in calls)
    assert found.stopped in STOPS
    if found.held is not None:
        assert found.held <= threshold
        assert found.held == max(r for r, held in found.tried if held)
    if found.failed is not None:
        assert found.failed > threshold
    if found.stopped == "bracketed":
        assert found.held is not None and found.failed is not None
        assert found.failed / found.held <= 1 + precision
    if found.stopped == "cap":
        assert found.held == 1.0
    if found.stopped == "floor":
        assert found.held is None and found.failed == 1e-5


# --- one trial -----------------------------------------------------------------------------


def summary(p99: float = 200.0, behind: float = 0.2, **fields: Any) -> dict[str, Any]:
    """A demo's run summary with the figures `judge` reads."""
    return {
        "reconciled": True,
        "acked_lost": 0,
        "e2e_latency_p99_ms": p99,
        "events_processed": 1000,
        "orders_processed": 700,
        "producer": {"events_sent": 1000, "restocks_sent": 600, "behind_max_s": behind},
        **fields,
    }


def test_a_reconciled_run_within_both_bounds_holds() -> None:
    held, why, missed = judge(0, summary(), 1000.0, 1.0)
    assert held and missed == ()
    assert why == "p99 ≤ 1,000 ms, behind ≤ 1 s"


@pytest.mark.parametrize(
    ("code", "run", "missed", "named"),
    [
        (0, summary(p99=1500.0), ("p99",), "p99 1,500 ms > 1,000 ms"),
        (0, summary(behind=2.5), ("behind",), "producer 2.5 s behind > 1 s"),
        (1, summary(reconciled=False), ("reconciled",), "not reconciled"),
        (1, summary(acked_lost=3), ("acked",), "3 acknowledged writes lost"),
        (1, summary(), ("exit",), "the demo exited 1"),
        (0, summary(e2e_latency_p99_ms=None), ("p99",), "no latency measured"),
        (0, summary(producer=None), ("behind",), "schedule unknown"),
        (1, None, ("verdict",), "no verdict: the demo exited 1"),
        (-9, None, ("verdict",), "killed by signal 9"),
        (
            1,
            summary(p99=4000.0, behind=3.0, reconciled=False),
            ("reconciled", "p99", "behind"),
            "not reconciled; p99 4,000 ms > 1,000 ms; producer 3.0 s behind > 1 s",
        ),
    ],
)
def test_a_trial_fails_naming_every_bound_it_missed(
    code: int, run: dict[str, Any] | None, missed: tuple[str, ...], named: str
) -> None:
    held, why, what = judge(code, run, 1000.0, 1.0)
    assert not held
    assert what == missed
    assert named in why


def test_each_preset_at_another_ratio_reloads_from_its_file(tmp_path: Path) -> None:
    for preset in list_presets():
        chosen, document = scaled(preset, 0.0123)
        assert chosen.scale.sample_ratio == 0.0123
        assert chosen.peak_wall_rate == pytest.approx(
            preset.peak_real_rate * 0.0123 * preset.scale.compression
        )
        path = tmp_path / f"{preset.name}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
        assert load_scenario(path) == chosen
        assert chosen == preset.model_copy(
            update={"scale": preset.scale.model_copy(update={"sample_ratio": 0.0123})}
        )


def test_a_csv_curve_is_written_with_its_points_and_reloads_from_anywhere(tmp_path: Path) -> None:
    (tmp_path / "rates.csv").write_text("second,rate\n0,100\n10,5000\n60,200\n")
    (tmp_path / "day.yaml").write_text(
        "name: csv-day\ncurve: {shape: csv, path: rates.csv, horizon_s: 60}\n"
        "scale: {sample_ratio: 0.5}\n"
    )
    chosen, document = scaled(load_scenario(tmp_path / "day.yaml"), 0.1)
    assert chosen.peak_wall_rate == pytest.approx(500.0)
    elsewhere = tmp_path / "trials"
    elsewhere.mkdir()
    path = elsewhere / "trial-1.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    assert load_scenario(path) == chosen


def test_the_cap_keeps_a_scenario_within_what_it_may_emit() -> None:
    assert _max_ratio(load_scenario("singles-day-2020")) == 1.0
    huge = scaled(load_scenario("singles-day-2020"), 1e-5)[0]
    huge = huge.model_copy(update={"scale": huge.scale.model_copy(update={"peak_per_s": 1e9})})
    assert _max_ratio(huge) == pytest.approx(0.01)


# --- the command, on a fake pipeline -------------------------------------------------------


@pytest.fixture
def fake_trials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Trials without a demo: p99 grows with the ratio and reaches 1,000 ms at `threshold`;
    `seen` collects the options of each trial; `no_summary` and `raise_at` set a trial that
    ends without a verdict or raises."""
    monkeypatch.chdir(tmp_path)
    state: dict[str, Any] = {"threshold": 0.0123, "seen": [], "no_summary": None, "raise_at": None}

    def run_trial(
        opts: RateOptions, number: int, ratio: float, tick: Callable[[float], None]
    ) -> Trial:
        state["seen"].append((opts, number, ratio))
        tick(0.0)
        if state["raise_at"] == number:
            raise state["raise"]
        run = None if state["no_summary"] == number else summary(1000 * ratio / state["threshold"])
        code = 0 if run is not None else 1  # a demo exits 0 when it reconciles
        held, why, missed = judge(code, run, opts.p99_ms, opts.max_behind_s)
        peak = scaled(opts.scenario, ratio)[0].peak_wall_rate
        log = opts.out / f"trial-{number}.log"
        return Trial(number, ratio, peak, code, 1.0, run, held, why, log, missed)

    monkeypatch.setattr(rate_module, "run_trial", run_trial)
    # The bare-client ceiling without a broker: a loop that reads 50,000 events/s.
    monkeypatch.setattr(
        ceiling_module,
        "measure_ceiling",
        lambda settings, pack: {"events": 1_000, "events_per_s": 50_000.0, "what": "a bare loop"},
    )
    yield state


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["rate", *args])


def test_the_rating_is_the_peak_at_the_highest_ratio_held(
    fake_trials: dict[str, Any], tmp_path: Path
) -> None:
    result = invoke("--out", "r", "--json", "copy.json")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # 583,000 real orders/s at the peak x 0.01189 = 6,932 emitted orders/s.
    assert (
        "highest peak held: 6,932 orders/s (sample ratio 0.01189, scenario singles-day-2020, "
        "broker embedded, per-order)" in lines
    )
    assert any(
        line.startswith("it failed at 7,562 orders/s (sample ratio 0.01297") for line in lines
    )
    assert sum(line.startswith("trial ") for line in lines) == 6
    assert "FAILED (p99 1,626 ms > 1,000 ms)" in result.output  # trial 3, at 0.02
    doc = json.loads((tmp_path / "r" / "rating.json").read_text())
    assert doc == json.loads((tmp_path / "copy.json").read_text())
    assert doc["scenario"] == "singles-day-2020" and doc["broker"] == "embedded"
    assert (doc["pack"], doc["system"], doc["stopped"]) == (0, None, "bracketed")
    assert (doc["p99_bound_ms"], doc["max_behind_s"]) == (1000.0, 1.0)
    assert [t["sample_ratio"] for t in doc["trials"]] == [
        0.005, 0.01, 0.02, 0.01414, 0.01189, 0.01297
    ]  # fmt: skip
    rating = doc["rating"]
    assert rating["trial"] == 5 and rating["sample_ratio"] == 0.01189
    assert rating["peak_orders_per_s"] == pytest.approx(583_000 * 0.01189, abs=0.1)
    assert rating["reconciled"] is True and rating["events_sent"] == 1000
    assert rating["e2e_latency_p99_ms"] == pytest.approx(1000 * 0.01189 / 0.0123)
    assert rating["failed_at"]["sample_ratio"] == 0.01297
    # Beside the ceiling measured in the same run: the busiest second's events per order
    # (about 2.1 in this scenario: payments, retries and cancellations follow the orders).
    assert doc["ceiling"]["events_per_s"] == 50_000.0
    assert 2.0 < rating["peak_events_per_s"] / rating["peak_orders_per_s"] < 2.3
    assert rating["of_ceiling"] == pytest.approx(rating["peak_events_per_s"] / 50_000, abs=1e-3)
    assert any(line.startswith("ceiling: a bare loop reads 50,000 events/s") for line in lines)
    assert any("of the bare-client ceiling (50,000 events/s)" in line for line in lines)
    opts = fake_trials["seen"][0][0]
    assert (opts.duration_s, opts.start_ratio, opts.max_trials, opts.demo_args) == (
        40.0, 0.005, 8, ()
    )  # fmt: skip


def test_no_ratio_held_is_exit_1_and_no_rating(fake_trials: dict[str, Any], tmp_path: Path) -> None:
    fake_trials["threshold"] = 1e-9
    result = invoke("--out", "r", "--min-ratio", "0.001")
    assert result.exit_code == 1, result.output
    assert "no trial held, down to 583 orders/s at the peak (sample ratio 0.001" in result.output
    doc = json.loads((tmp_path / "r" / "rating.json").read_text())
    assert doc["rating"] is None and doc["stopped"] == "floor"
    assert [t["sample_ratio"] for t in doc["trials"]] == [0.005, 0.0025, 0.00125, 0.001]


def test_options_go_to_every_trial_s_demo(fake_trials: dict[str, Any]) -> None:
    result = invoke(
        "--scenario", "singles-day-2014", "--duration", "8", "--start-ratio", "0.0005",
        "--max-trials", "2", "--kafka", "--pack", "50", "--workers", "2",
        "--processing-guarantee", "exactly_once", "--system", "python -m my.app {bootstrap}",
        "--system-group", "mine", "--against", "decisions", "--level", "totals",
        "--p99-ms", "250", "--max-behind-s", "0.5",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    opts = fake_trials["seen"][0][0]
    assert opts.demo_args == (
        "--workers", "2", "--pack", "50", "--processing-guarantee", "exactly_once",
        "--system", "python -m my.app {bootstrap}", "--system-group", "mine",
        "--against", "decisions", "--level", "totals", "--kafka",
    )  # fmt: skip
    assert (opts.broker, opts.pack, opts.p99_ms, opts.max_behind_s) == ("kafka", 50, 250, 0.5)
    assert opts.system == {
        "command": "python -m my.app {bootstrap}",
        "group": "mine",
        "against": "decisions",
        "level": "totals",
    }
    assert [ratio for _, _, ratio in fake_trials["seen"]] == [0.0005, 0.001]
    assert "no trial failed above it, a lower bound: raise --max-trials" in result.output
    assert "broker kafka, packed 50)" in result.output


def test_a_first_trial_without_a_verdict_stops_the_rating(fake_trials: dict[str, Any]) -> None:
    fake_trials["no_summary"] = 1
    result = invoke("--out", "r")
    assert result.exit_code == 1
    assert len(fake_trials["seen"]) == 1
    assert "flashsale: error: trial 1 ended without a verdict" in result.output


def test_a_trial_whose_demo_refuses_its_options_is_exit_2(
    fake_trials: dict[str, Any], tmp_path: Path
) -> None:
    fake_trials["raise_at"] = 1
    fake_trials["raise"] = RatingStopped("trial 1: no such option: --level", 2)
    result = invoke("--out", "r")
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "flashsale: error: trial 1: no such option: --level"
    )
    assert json.loads((tmp_path / "r" / "rating.json").read_text())["stopped"] == "refused"


def test_ctrl_c_is_exit_130_with_one_line_and_the_trials_so_far(
    fake_trials: dict[str, Any], tmp_path: Path
) -> None:
    fake_trials["raise_at"] = 3
    fake_trials["raise"] = KeyboardInterrupt()
    result = invoke("--out", "r")
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines() == [
        "flashsale: rate interrupted; the running trial's demo was stopped; trials so far in "
        "r/rating.json"
    ]
    doc = json.loads((tmp_path / "r" / "rating.json").read_text())
    assert doc["stopped"] == "interrupted" and len(doc["trials"]) == 2
    assert doc["rating"]["sample_ratio"] == 0.01


# --- bad options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--duration", "-1"), "--duration"),
        (("--duration", "20"), "before the peak of singles-day-2020 (26 s"),
        (("--p99-ms", "0"), "--p99-ms"),
        (("--max-behind-s", "0"), "--max-behind-s"),
        (("--start-ratio", "0"), "--start-ratio"),
        (("--start-ratio", "1.5"), "--start-ratio"),
        (("--min-ratio", "0.01"), "--min-ratio"),
        (("--precision", "0"), "--precision"),
        (("--max-trials", "0"), "--max-trials"),
        (("--workers", "0"), "--workers"),
        (("--workers", "9"), "--workers"),
        (("--pack", "-1"), "--pack"),
        (("--level", "everything"), "--level"),
        (("--processing-guarantee", "twice"), "--processing-guarantee"),
        (("--processing-guarantee", "exactly_once"), "embedded broker"),
        (("--out", "missing/r"), "--out"),
        (("--out", "full"), "--out"),
        (("--json", "missing/r.json"), "--json"),
        (("--scenario", "leader-kill-at-peak"), "kill"),
    ],
)
def test_a_bad_option_is_exit_2_naming_it_with_nothing_started(
    fake_trials: dict[str, Any], tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "rating.json").write_text("{}")
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert fake_trials["seen"] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


@pytest.mark.parametrize(
    ("args", "named"),
    [(("--max-trials", "0"), "--max-trials"), (("--scenario", "black-friday"), "black-friday")],
)
def test_a_bad_option_is_one_line_on_stderr(
    tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "orchestration", "rate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flashsale: error:") and named in lines[0]
    assert done.stdout == "" and list(tmp_path.iterdir()) == []
