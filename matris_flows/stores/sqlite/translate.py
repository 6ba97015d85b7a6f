"""Mongo criteria to an SQL WHERE clause: exact where SQL matches as mongomock does, else a superset of the matches.

The translation is made per query from the kinds of value each indexed field has held
(``kinds``: field -> the bits of :mod:`matris_flows.stores.sqlite.encoding`). Where it is not
exact the store applies mongomock's matcher to every row the WHERE lets through, so results
never depend on the translation; an exact one lets COUNT, LIMIT/SKIP and DELETE run in SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from matris_flows.stores.sqlite.encoding import K_BOOL, K_DATE, K_NAN, K_NUM, K_OBJ, K_STR, NO_PUSHDOWN, date_text
from matris_flows.stores.sqlite.sql_text import field_expr, json_path, sql_str

_INT64 = 2**63  # SQLite integers are 64-bit: larger ones are left to the matcher


@dataclass
class Sql:
    """A WHERE fragment that matches a superset of the mongomock matches (exactly them when ``exact``)."""

    text: str
    params: list
    exact: bool


_DATE_LOW = '{"$date":"'  # every stored datetime's JSON text starts with this ...
_DATE_HIGH = '{"$date":#'  # ... and sorts below this ('#' follows '"')


def sql_param(value: Any) -> tuple[str, Any] | None:
    """(kind, SQL value) of a query value that SQL can compare like mongomock, else None."""
    if value is None:
        return "null", None
    if isinstance(value, bool):
        return "bool", int(value)
    if isinstance(value, int):
        return ("num", int(value)) if -_INT64 <= value < _INT64 else None
    if isinstance(value, float):
        return ("num", float(value)) if value - value == 0 else None
    if isinstance(value, str):
        return "str", str(value)
    if isinstance(value, datetime):  # criteria went through patch_datetime_awareness_in_document: naive UTC milliseconds
        return "date", orjson.dumps({"$date": date_text(value)}).decode()
    return None


def eq_exact(kind: str, value: Any, kinds: int) -> bool:
    """Whether SQL equality with ``value`` (of ``kind``, see :func:`sql_param`) matches exactly where a field has held ``kinds``."""
    if kind == "str":
        # an object's JSON text can only equal a string that starts with "{"
        return not (kinds & (K_DATE | K_OBJ | K_NAN) and value.startswith("{"))
    if kind == "date":
        return not kinds & (K_STR | K_OBJ)
    return True  # null, bool, numbers: SQL equality is Python's (True == 1 == 1.0, as in mongomock)


_RANGE_OPS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_RANGE_INEXACT = {
    "bool": K_NUM,
    "num": K_BOOL,
    "str": K_DATE | K_OBJ | K_NAN,
    "date": K_STR | K_OBJ | K_NAN,
}


class Translator:
    """Translates mongomock criteria to SQL on the tracked fields (``kinds``: field -> kind bits)."""

    def __init__(self, kinds: dict[str, int]):
        self.kinds = kinds

    def where(self, criteria: dict) -> Sql | None:
        """The whole criteria; None means no constraint (and not exact)."""
        if not isinstance(criteria, dict):
            return None
        parts: list[Sql | None] = []
        for key, spec in criteria.items():
            if key == "$comment":
                continue
            if key in ("$and", "$or", "$nor"):
                parts.append(self._logical(key, spec))
            elif key.startswith("$"):
                parts.append(None)
            else:
                parts.append(self._field(key, spec))
        return _and(parts)

    def _logical(self, op: str, subs: Any) -> Sql | None:
        if not isinstance(subs, list | tuple) or not subs:
            return None  # mongomock raises; let its matcher do so
        translated = [self.where(s) for s in subs]
        if op == "$and":
            return _and(translated)
        if any(t is None for t in translated):
            return None
        joined = Sql(
            "(" + " OR ".join(t.text or "1" for t in translated) + ")",  # type: ignore[union-attr]
            [p for t in translated for p in t.params],  # type: ignore[union-attr]
            all(t.exact for t in translated),  # type: ignore[union-attr]
        )
        if op == "$or":
            return joined
        return _negate(joined)  # $nor

    def _field(self, field: str, spec: Any) -> Sql | None:
        kinds = self.kinds.get(field)
        if kinds is None or kinds & NO_PUSHDOWN or field.split(".")[0] == "_id":
            return None  # _id: a document without its own has the row's id, which is not in its JSON
        expr = field_expr(field)
        if isinstance(spec, dict) and spec and all(isinstance(k, str) and k.startswith("$") for k in spec):
            return _and([self._op(field, expr, kinds, op, value) for op, value in spec.items()])
        return self._eq(expr, kinds, spec)

    def _eq(self, expr: str, kinds: int, value: Any) -> Sql | None:
        p = sql_param(value)
        if p is None:
            return None
        kind, v = p
        if kind == "null":
            return Sql(f"{expr} IS NULL", [], True)
        return Sql(f"{expr} = ?", [v], eq_exact(kind, v, kinds))

    def _op(self, field: str, expr: str, kinds: int, op: str, value: Any) -> Sql | None:
        if op == "$eq":
            return self._eq(expr, kinds, value)
        if op == "$ne":
            return _negate(self._eq(expr, kinds, value))
        if op in ("$in", "$nin"):
            inside = self._in(expr, kinds, value)
            return inside if op == "$in" else _negate(inside)
        if op in _RANGE_OPS:
            return self._range(field, expr, kinds, _RANGE_OPS[op], value)
        if op == "$exists":
            test = "IS NOT NULL" if value else "IS NULL"
            return Sql(f"json_type(doc, {sql_str(json_path(field))}) {test}", [], True)  # type: ignore[arg-type]
        if op == "$not" and isinstance(value, dict):
            return _negate(self._field(field, value))
        return None  # $regex, $all, $elemMatch, $size, $type, ...: the matcher decides

    def _in(self, expr: str, kinds: int, values: Any) -> Sql | None:
        if not isinstance(values, list | tuple):
            return None
        params, exact, has_null = [], True, False
        for value in values:
            p = sql_param(value)
            if p is None:
                return None
            if p[0] == "null":
                has_null = True
            else:
                params.append(p[1])
                exact = exact and eq_exact(p[0], p[1], kinds)
        clauses = []
        if params:
            clauses.append(f"{expr} IN ({', '.join('?' * len(params))})")
        if has_null:
            clauses.append(f"{expr} IS NULL")
        return Sql("(" + " OR ".join(clauses) + ")" if clauses else "0", params, exact)

    def _range(self, field: str, expr: str, kinds: int, sql_op: str, value: Any) -> Sql | None:
        p = sql_param(value)
        if p is None:
            return None
        kind, v = p
        upward = sql_op in (">", ">=")
        if kind == "null":  # only an explicit null compares with null, and only with equality
            if not sql_op.endswith("="):
                return Sql("0", [], True)
            return Sql(f"json_type(doc, {sql_str(json_path(field))}) = 'null'", [], True)  # type: ignore[arg-type]
        # SQLite orders NULL < numbers < text: bound the other side to stay within the value's type
        if kind in ("bool", "num"):
            bound, bound_params = (f" AND {expr} < ''", []) if upward else ("", [])
        elif kind == "str":
            bound, bound_params = ("", []) if upward else (f" AND {expr} >= ''", [])
        else:
            bound, bound_params = (f" AND {expr} < ?", [_DATE_HIGH]) if upward else (f" AND {expr} > ?", [_DATE_LOW])
        return Sql(f"({expr} {sql_op} ?{bound})", [v, *bound_params], not kinds & _RANGE_INEXACT[kind])


def _and(parts: Iterable[Sql | None]) -> Sql | None:
    parts = list(parts)
    known = [p for p in parts if p is not None]
    exact = len(known) == len(parts) and all(p.exact for p in known)
    if not known:
        return Sql("", [], exact) if exact else None
    texts = [p.text for p in known if p.text]
    return Sql("(" + " AND ".join(texts) + ")" if texts else "", [v for p in known for v in p.params], exact)


def _negate(sql: Sql | None) -> Sql | None:
    """NOT of an exact translation (a superset's complement would be a subset); NULL counts as false."""
    if sql is None or not sql.exact:
        return None
    return Sql(f"NOT coalesce({sql.text or '1'}, 0)", sql.params, True)


def criteria_tops(criteria: Any) -> set[str] | None:
    """Top-level fields the criteria reads (None: it may read anything, e.g. ``$where``)."""
    tops: set[str] = set()
    if not isinstance(criteria, dict):
        return None
    for key, spec in criteria.items():
        if key == "$comment":
            continue
        if key in ("$and", "$or", "$nor"):
            if not isinstance(spec, list | tuple):
                return None
            for sub in spec:
                sub_tops = criteria_tops(sub)
                if sub_tops is None:
                    return None
                tops |= sub_tops
        elif key.startswith("$"):
            return None
        else:
            tops.add(key.split(".")[0])
    return tops
