"""Build step for the compiled modules; everything else is in pyproject.toml.

Cython compiles the worker's two hottest loops (docs/performance.md), each with the C types of
the .pxd beside it: `streams/packed.py`, the per-row rules of packed messages, and
`flashsale/columns.py`, the whole-column checks of their decoding. Both stay plain Python:
where no C compiler is at hand the build goes on without them (`optional`), and the worker runs
the same code uncompiled, slower.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            Extension(name, [name.replace(".", "/") + ".py"], optional=True)
            for name in ("flashsale.columns", "streams.packed")
        ],
        # Types come from the .pxd only: the .py annotations are for mypy.
        compiler_directives={"language_level": 3, "annotation_typing": False},
    )
)
