# cython: boundscheck=False, wraparound=False
# (Every index below is within its list; the comment is read only when Cython compiles.)
"""Whole-column primitives for packed messages (flashsale/events.py): the bounds of an integer
column, the lengths of a text column, and the expansion of a dictionary-coded column.

Cython compiles this module when the package is built (setup.py, with the C types of
flashsale/columns.pxd): each function is then one C loop over the column, about 3 ns a value.
As plain Python (no compiler at install) the same functions run on C-level builtins instead,
a few times slower; both give the same answers (tests/unit/test_columns.py).
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["COMPILED", "expand", "int_bounds", "text_bounds"]

#: True when this module runs compiled by Cython (setup.py), False as plain Python.
COMPILED: Final = not __file__.endswith(".py")

_LOW: Final = -(2**63)
_HIGH: Final = 2**63 - 1


def int_bounds(column: list[Any], bool_free: bool = False) -> tuple[int, int] | None:
    """The least and greatest value of a non-empty column whose values are all integers (a
    bool is not one) within 64 bits; None when it is empty or one value is not such.

    `bool_free`: the caller knows no value is a bool (the message's bytes hold no JSON `true`
    or `false`), which lets plain Python check the types with one `sum`.
    """
    n = len(column)
    if n == 0:
        return None
    if not COMPILED:
        if bool_free:
            try:  # a sum of integers is an integer; a float makes it a float; text fails
                if type(sum(column)) is not int:
                    return None
            except TypeError:
                return None
        elif set(map(type, column)) != {int}:
            return None
        low, high = min(column), max(column)
        return (low, high) if low >= _LOW and high <= _HIGH else None
    low = high = 0
    try:  # around the loop, not in it: a try costs Cython a save of the exception state
        for j in range(n):
            value = column[j]
            if type(value) is not int:
                return None
            x = value
            if j == 0:
                low = high = x
            elif x < low:
                low = x
            elif x > high:
                high = x
    except OverflowError:  # past 64 bits
        return None
    return low, high


def text_bounds(column: list[Any]) -> tuple[int, int] | None:
    """The shortest and longest length in a non-empty column whose values are all strings;
    None when it is empty or one value is not a string."""
    n = len(column)
    if n == 0:
        return None
    if not COMPILED:
        try:
            "".join(column)  # takes only strings: one C-level pass checks the types
        except TypeError:
            return None
        lengths = list(map(len, column))
        return min(lengths), max(lengths)
    low = high = 0
    for j in range(n):
        value = column[j]
        if type(value) is not str:
            return None
        size = len(value)
        if j == 0:
            low = high = size
        elif size < low:
            low = size
        elif size > high:
            high = size
    return low, high


def expand(values: list[Any], codes: list[Any], bool_free: bool = False) -> list[Any] | None:
    """`values[code]` for every code, when each is an integer index of `values` (0 to
    len - 1; a bool is not one); None when one is not. `bool_free`: as for `int_bounds`."""
    size = len(values)
    if not COMPILED:
        if not codes:
            return []
        if bool_free:
            # Indexing takes only integers below the size; negative ones are checked after.
            try:
                out = list(map(values.__getitem__, codes))
            except (TypeError, IndexError):
                return None
            return out if min(codes) >= 0 else None
        bounds = int_bounds(codes)
        if bounds is None or bounds[0] < 0 or bounds[1] >= size:
            return None
        return list(map(values.__getitem__, codes))
    n = len(codes)
    out = [None] * n
    try:
        for j in range(n):
            code = codes[j]
            if type(code) is not int:
                return None
            k = code
            if k < 0 or k >= size:
                return None
            out[j] = values[k]
    except OverflowError:  # past 64 bits
        return None
    return out
