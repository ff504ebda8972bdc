"""What an install of flashsale without extras pulls in, and the commands that need an extra:
without it they say so in one line and exit 2, with nothing started."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata

import pytest

from orchestration.cli.app import EXTRAS
from tests.paths import ROOT

#: What a worker or a producer never needs.
HEAVY = ("locust", "matplotlib", "pyarrow")


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _closure(requirements: list[str]) -> set[str]:
    """Every distribution the requirements pull in, transitively, as installed here (markers
    that do not hold on this machine and extras are left out)."""
    seen: set[str] = set()
    todo = list(requirements)
    while todo:
        requirement = todo.pop()
        if ";" in requirement and "extra" in requirement.split(";", 1)[1]:
            continue
        name = _name(requirement)
        if name in seen:
            continue
        seen.add(name)
        try:
            todo.extend(metadata.requires(name) or [])
        except metadata.PackageNotFoundError:
            continue  # a marker excludes it here (win32, an older Python)
    return seen


def test_a_worker_or_producer_install_pulls_no_locust_matplotlib_or_pyarrow() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pulled = _closure(project["dependencies"])
    assert "faust-streaming" in pulled and "aiokafka" in pulled  # the closure is walked
    assert [name for name in HEAVY if name in pulled] == []
    # Each extra the commands ask for is one pyproject.toml declares, bringing its modules.
    extras = project["optional-dependencies"]
    for extra, modules in EXTRAS.items():
        assert set(modules) <= _closure(_expanded(extras, extra)), extra


def _expanded(extras: dict[str, list[str]], extra: str) -> list[str]:
    """The requirements of `extra`, with `flashsale[a,b]` replaced by those of a and b."""
    out = []
    for requirement in extras[extra]:
        if requirement.startswith("flashsale["):
            for other in requirement[len("flashsale[") : -1].split(","):
                out += _expanded(extras, other)
        else:
            out.append(requirement)
    return out


def test_the_worker_and_the_cli_start_without_the_extras() -> None:
    code = (
        "import sys\n"
        "import streams.app, producers.sinks, producers.pacing, orchestration.cli\n"
        f"print(sorted(m for m in {(*HEAVY, 'psutil')!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


#: Hides modules from imports and from `importlib.util.find_spec`, as if not installed.
HIDE = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in HIDDEN:
            raise ModuleNotFoundError(name)
        return None
HIDDEN = set(sys.argv.pop(1).split(','))
sys.meta_path.insert(0, Hide())
from orchestration.cli import main
sys.argv[0] = 'flashsale'
main()
"""


@pytest.mark.parametrize(
    ("hidden", "args", "extra"),
    [
        ("pyarrow", ["report", "some-run"], "research"),
        ("matplotlib", ["compare", "a", "b"], "research"),
        ("pyarrow", ["record", "--out", "x", "--bootstrap-servers", "127.0.0.1:1"], "research"),
        ("pyarrow", ["replay", "some-run"], "research"),
        ("pyarrow", ["export", "some-run", "--out", "x"], "research"),
        ("pyarrow", ["verify", "some-run"], "research"),
        ("pyarrow", ["demo", "--record", "some-run"], "research"),
        ("matplotlib", ["scenarios", "show", "steady", "--plot", "c.png"], "research"),
        ("locust", ["loadtest"], "loadtest"),
        ("psutil", ["soak"], "soak"),
        ("locust", ["bench", "--quick"], "bench"),
    ],
)
def test_a_command_without_its_extra_says_so_in_one_line(
    hidden: str, args: list[str], extra: str, tmp_path: pytest.TempPathFactory
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", HIDE, hidden, *args],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"flashsale: error: flashsale {args[0]}")
    assert f"needs {hidden}" in lines[0]
    assert f"pip install 'flashsale[{extra}]'" in lines[0]
