"""The Faust stream processors: order rules, per-partition state, worker app and metrics."""

import importlib.util
import sys
import warnings
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

#: Modules that Cython compiles when the package is built (setup.py); each is plain Python too.
COMPILED_MODULES = ("packed",)


def prefer_fresh_source(package: str, folder: Path, stems: tuple[str, ...]) -> list[str]:
    """Load each module of `stems` that was edited since it was compiled from its source,
    with a warning, rather than run the old build; return the names loaded so.

    In a working tree `pip install -e .` (or any make target) rebuilds the module.
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


prefer_fresh_source(__name__, Path(__file__).parent, COMPILED_MODULES)

from streams.app import create_app, run_worker  # noqa: E402
from streams.state import PartitionState, apply_event  # noqa: E402

__all__ = [
    "COMPILED_MODULES",
    "PartitionState",
    "apply_event",
    "create_app",
    "prefer_fresh_source",
    "run_worker",
]
