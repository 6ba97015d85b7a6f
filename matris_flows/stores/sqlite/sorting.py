"""mongomock's sort order in Python: for sorts SQL cannot reproduce, and for the order of ``groupby``'s groups."""

from __future__ import annotations

import numbers
import operator

from maggma.core import Sort
from mongomock_ng.filtering import bson_compare, resolve_sort_key


class SortKey:
    """mongomock's order: each sort field by its resolved sort key, then natural (rowid) order.

    Except for NaN, which MongoDB orders below every other number: compared as it is, NaN is
    neither less nor greater than anything, and one NaN scrambles the order of a whole sort
    (mongomock's own sort included).
    """

    __slots__ = ("dirs", "rowid", "vals")

    def __init__(self, doc: dict, rowid: int, sort: list[tuple[str, int]]):
        self.vals = []
        for field, _ in sort:
            flag, comparable = resolve_sort_key(field, doc)
            value = comparable.obj
            self.vals.append((flag, value, isinstance(value, float) and value != value))
        self.dirs = [d for _, d in sort]
        self.rowid = rowid

    def __lt__(self, other: SortKey) -> bool:
        for (fa, a, nan_a), (fb, b, nan_b), d in zip(self.vals, other.vals, self.dirs, strict=True):
            if fa != fb:
                return (fa < fb) == (d > 0)
            if nan_a or nan_b:
                if nan_a and nan_b:
                    continue
                number = b if nan_a else a
                if isinstance(number, numbers.Real) and not isinstance(number, bool):
                    return nan_a == (d > 0)  # NaN is the lowest number
                a, b = (0.0 if nan_a else a), (0.0 if nan_b else b)  # against other types, NaN is any number
            if bson_compare(operator.lt, a, b):
                return d > 0
            if bson_compare(operator.lt, b, a):
                return d < 0
        return self.rowid < other.rowid


class BsonTuple:
    """Tuple of values ordered by BSON comparison (mixed types sort instead of raising)."""

    __slots__ = ("vals",)

    def __init__(self, vals: tuple):
        self.vals = vals

    def __lt__(self, other: BsonTuple) -> bool:
        for a, b in zip(self.vals, other.vals, strict=True):
            if bson_compare(operator.lt, a, b):
                return True
            if bson_compare(operator.lt, b, a):
                return False
        return False


def normalize_sort(sort: dict | None) -> list[tuple[str, int]]:
    """A maggma ``sort`` dict as ``[(field, 1 or -1), ...]``."""
    if not sort:
        return []
    return [(k, v.value if isinstance(v, Sort) else (1 if int(v) >= 0 else -1)) for k, v in sort.items()]
