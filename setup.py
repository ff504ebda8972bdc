"""Build step for the one compiled module; everything else is in pyproject.toml.

Cython compiles `streams/packed.py`, the per-row rules of packed messages, with the C types of
`streams/packed.pxd`: the worker's hottest loop (docs/performance.md). The module stays plain
Python: where no C compiler is at hand the build goes on without it (`optional`), and the
worker runs the same rules uncompiled, slower.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("streams.packed", ["streams/packed.py"], optional=True)],
        # Types come from the .pxd only: the .py annotations are for mypy.
        compiler_directives={"language_level": 3, "annotation_typing": False},
    )
)
