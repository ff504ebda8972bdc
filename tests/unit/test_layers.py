"""The rooms of the code keep their shape: imports point one way (the contracts in
pyproject.toml), no module imports itself through others, and the worker's and the CLI's
modules stay small enough to read."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import grimp
import pytest

from tests.paths import ROOT

#: Every top-level package of the project (pyproject.toml's import-linter root packages).
ROOTS = tuple(
    tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]
)
#: The rooms whose modules must stay under `MAX_LINES`: the worker and the command line.
SMALL = ("streams", "orchestration")
MAX_LINES = 500


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in sorted(graph.find_modules_directly_imported_by(module)):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_the_import_contracts_hold() -> None:
    # `lint-imports` reads the contracts from pyproject.toml and exits 1 on a broken one.
    done = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    """The import graph of every module of the project."""
    return grimp.build_graph(*ROOTS, cache_dir=None)


def test_no_module_imports_itself_through_others(graph: grimp.ImportGraph) -> None:
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("a", "a.x", "a.y", "a.z"):
        graph.add_module(module)
    graph.add_import(importer="a.x", imported="a.y")
    graph.add_import(importer="a.y", imported="a.x")
    graph.add_import(importer="a.z", imported="a.x")
    assert _cycles(graph) == [["a.x", "a.y"]]


def test_the_core_imports_none_of_the_parts(graph: grimp.ImportGraph) -> None:
    reached = [
        part
        for part in ROOTS
        if part != "flashsale"
        and graph.chain_exists(importer="flashsale", imported=part, as_packages=True)
    ]
    assert reached == []
    # And the top room is imported by nothing else.
    importers = {
        module.split(".")[0]
        for module in graph.find_modules_that_directly_import("orchestration", as_package=True)
    }
    assert importers <= {"orchestration"}


def test_worker_and_cli_modules_stay_under_500_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for room in SMALL
        for path in (ROOT / room).rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
