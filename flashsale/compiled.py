"""The modules Cython compiles when the package is built (setup.py), and the guard that keeps
a stale build from running.

Each compiled module is plain Python too. In a working tree an edited module would otherwise
keep running as its old build until the next `pip install -e .`; instead, a build older than
its source (.py or .pxd) gives way to the source, with a warning.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

__all__ = ["COMPILED_MODULES", "prefer_fresh_source", "stems_of"]

#: Every module setup.py compiles.
COMPILED_MODULES = ("flashsale.columns", "streams.packed")


def prefer_fresh_source(package: str, folder: Path, stems: tuple[str, ...]) -> list[str]:
    """Load each module of `package` (in `folder`) named in `stems` whose build is older than
    its source from the source, with a warning; return the names loaded so.

    Called by the package's `__init__`, before anything imports those modules.
    """
    loaded = []
    for stem in stems:
        built = folder / f"{stem}{EXTENSION_SUFFIXES[0]}"
        sources = [p for p in (folder / f"{stem}.py", folder / f"{stem}.pxd") if p.exists()]
        if not built.exists() or not sources:
            continue
        if built.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
            continue
        warnings.warn(
            f"{built.name} is older than its source: {stem}.py runs uncompiled (slower) "
            "until `pip install -e .` or `make` rebuilds it",
            stacklevel=2,
        )
        spec = importlib.util.spec_from_file_location(f"{package}.{stem}", sources[0])
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        loaded.append(spec.name)
    return loaded


def stems_of(package: str) -> tuple[str, ...]:
    """The compiled modules of `package`, by their names within it."""
    return tuple(
        name.rpartition(".")[2] for name in COMPILED_MODULES if name.rpartition(".")[0] == package
    )
