"""The modules Cython compiles (setup.py): each one compiled and equal to its plain-Python self
(flashsale/columns.py here; streams/packed.py in test_packed.py), and a stale build giving way
to its source."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flashsale import columns
from flashsale.compiled import COMPILED_MODULES, prefer_fresh_source
from tests.conftest import skip_or_fail
from tests.paths import ROOT


def source_module(name: str) -> ModuleType:
    """Module `name` run from its .py as plain Python, whether or not the package compiled it."""
    path = ROOT.joinpath(*name.split(".")).with_suffix(".py")
    spec = importlib.util.spec_from_file_location(name.replace(".", "._source_"), path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", COMPILED_MODULES)
def test_every_listed_module_is_built_by_setup_and_runs_compiled(name: str) -> None:
    assert f'"{name}"' in (ROOT / "setup.py").read_text()
    assert (ROOT.joinpath(*name.split(".")).with_suffix(".pxd")).exists()
    module = importlib.import_module(name)
    if not module.COMPILED:
        skip_or_fail(f"{name} is not compiled (no C compiler at install?)")
    assert module.__file__ is not None
    assert module.__file__.endswith(importlib.machinery.EXTENSION_SUFFIXES[0])
    assert source_module(name).COMPILED is False


_SOURCE = source_module("flashsale.columns")
# JSON's values, and integers past 64 bits both ways (orjson reads up to 2**64 - 1).
_VALUE = st.one_of(
    st.integers(-(2**64), 2**64),
    st.integers(-3, 12),
    st.booleans(),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=400, deadline=None)
@given(column=st.lists(_VALUE, max_size=12))
def test_column_bounds_are_the_same_compiled_and_as_python(column: list[Any]) -> None:
    # As decode_packed calls them: told there is no bool when the message has none.
    bool_free = not any(type(v) is bool for v in column)
    expected = columns.int_bounds(column)
    assert _SOURCE.int_bounds(column) == expected
    assert _SOURCE.int_bounds(column, bool_free) == expected
    assert columns.text_bounds(column) == _SOURCE.text_bounds(column)


@settings(max_examples=400, deadline=None)
@given(values=st.lists(st.text(max_size=3), max_size=8), codes=st.lists(_VALUE, max_size=12))
def test_expansion_is_the_same_compiled_and_as_python(values: list[str], codes: list[Any]) -> None:
    bool_free = not any(type(v) is bool for v in codes)
    expected = columns.expand(values, codes)
    assert _SOURCE.expand(values, codes) == expected
    assert _SOURCE.expand(values, codes, bool_free) == expected


@pytest.mark.parametrize("module", [columns, _SOURCE], ids=["as built", "source"])
def test_the_column_primitives_say_what_they_promise(module: ModuleType) -> None:
    assert module.int_bounds([3, -2, 2**63 - 1]) == (-2, 2**63 - 1)
    assert module.int_bounds([1, 2**63]) is None  # past 64 bits
    assert module.int_bounds([1, True]) is None  # a bool is not an integer
    assert module.int_bounds([1, 2**63], bool_free=True) is None
    assert module.int_bounds([1, 2.0], bool_free=True) is None
    assert module.int_bounds([1, "2"], bool_free=True) is None
    assert module.int_bounds([1, 2.0]) is None
    assert module.int_bounds([]) is None
    assert module.text_bounds(["ab", "", "abcd"]) == (0, 4)
    assert module.text_bounds(["ab", 1]) is None
    assert module.expand(["a", "b"], [1, 0, 1]) == ["b", "a", "b"]
    assert module.expand(["a", "b"], [2]) is None
    assert module.expand(["a", "b"], [-1]) is None  # Python would index from the end
    assert module.expand(["a", "b"], [True]) is None
    assert module.expand(["a", "b"], [1.0]) is None
    assert module.expand(["a", "b"], [1, -1], bool_free=True) is None
    assert module.expand(["a", "b"], [1, 2**64], bool_free=True) is None
    assert module.expand(["a", "b"], [1, 0], bool_free=True) == ["b", "a"]


def test_a_build_older_than_its_source_gives_way_to_the_source(tmp_path: Path) -> None:
    """An edited module whose build is stale runs from the edited source, with a warning."""
    package = f"pkg_{time.time_ns()}"
    folder = tmp_path / package
    folder.mkdir()
    (folder / "rules.py").write_text("WHERE = 'source'\n")
    built = folder / f"rules{importlib.machinery.EXTENSION_SUFFIXES[0]}"
    built.write_bytes(b"not a shared object")
    now = time.time()
    os.utime(built, (now, now))
    os.utime(folder / "rules.py", (now - 60, now - 60))
    assert prefer_fresh_source(package, folder, ("rules",)) == []  # the build is current
    os.utime(folder / "rules.py", (now + 60, now + 60))
    with pytest.warns(UserWarning, match="older than its source"):
        loaded = prefer_fresh_source(package, folder, ("rules",))
    assert loaded == [f"{package}.rules"]
    assert sys.modules[f"{package}.rules"].WHERE == "source"
    del sys.modules[f"{package}.rules"]
