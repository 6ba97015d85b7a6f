"""An embedded, persistent, indexed maggma ``Store`` in one SQLite file.

:class:`SQLiteStore` replaces montydb's MontyStore as the no-server store: montydb
has no indexes, so each upsert and each query scans the whole collection.  Here
every collection is a table ``(rowid, doc)`` holding one JSON document per row,
indexes are SQLite expression indexes on ``json_extract(doc, '$."a"."b"')``, and
``update`` upserts a whole batch in one transaction with an indexed key lookup
(O(log N) per document).

Query semantics are those of maggma's ``MemoryStore`` (mongomock): the criteria
are translated to SQL only where the translation is exact or a superset of the
matches, and mongomock's own matcher (``filter_applies``) is then applied to
every candidate row, so results never depend on the translation.  LIMIT/SKIP go
to SQL only when the whole criteria translated exactly, ORDER BY only when the
sort fields' values sort the same way in SQL as in mongomock.

To know when a translation is exact the store tracks, for every indexed field,
which kinds of values the collection has held there (null/missing, bool,
number, string, datetime, NaN, other object, array, or a non-object parent).
Fields that ever held an array (anywhere along the dotted path) are never
pushed down; the tracked kinds only grow until the collection is emptied.

Storage format (so that other tools can read the file):

- documents are compact JSON text (orjson), stored in a table named after the
  collection; ``rowid`` is the natural (insertion) order;
- ``datetime`` values are stored as MongoDB stores them (and MemoryStore returns
  them): in UTC, to the millisecond, read back as naive datetimes; in the file
  they are ``{"$date": "YYYY-MM-DDTHH:MM:SS.mmm"}`` (fixed width, so text order is
  time order).  NaN/±inf are stored as ``{"$numberDouble": "NaN"|"Infinity"|
  "-Infinity"}`` (MongoDB extended JSON) and read back as floats.  A document
  holding a literal one-key ``{"$date": str}`` or ``{"$numberDouble": str}`` dict
  therefore reads back as a datetime / float;
- tables ``_sqlitestore_indexes`` and ``_sqlitestore_fields`` hold the indexes
  and the tracked value kinds of each collection.

Differences from MongoDB / MongoStore that remain:

- query semantics are mongomock's (MemoryStore's), where these differ from a
  server (e.g. ``{"f": 1}`` also matches ``true``; ``{"a.b": None}`` does not
  match a document whose ``a`` is null);
- unique indexes do not constrain documents where the field is missing or null
  (SQLite NULLs are distinct), and ``true`` collides with ``1``;
- a batch that breaks a unique index is rolled back as a whole and raises
  ``DuplicateKeyError`` (MongoStore's unordered bulk write keeps the other
  documents and raises ``BulkWriteError``);
- no ``_id`` is added; ``ObjectId`` values in documents are stored as strings;
- ``groupby`` ignores skip/limit (as MemoryStore and MongoStore do), applies
  ``sort`` within groups and orders groups by key in BSON order (MemoryStore
  raises on mixed types); ``distinct`` returns values in first-seen order;
- field names containing ``"``, ``\\`` or control characters cannot be indexed
  (``ensure_index`` returns False; queries on them scan).

Concurrency: the database runs in WAL mode with a busy timeout, so readers in
other processes (e.g. a CLI ``query`` during a campaign) see a consistent
snapshot while one process writes.  Use **one writer process at a time**;
further writers are serialised by SQLite's lock and wait up to
``busy_timeout`` seconds.  Within a process, writes are serialised by a lock and
each running query reads from its own pooled connection (a snapshot taken when
it starts), so updating the store while iterating over a query is safe.

Errors of the file rather than of a statement (disk full, I/O error, a damaged file, no
permission, a lock held past ``busy_timeout``) are raised as :class:`DatabaseFileError`, which
names the file; ``connect`` checks the collection's table and indexes (``PRAGMA quick_check``)
so that a damaged file is reported when it is opened, not as wrong results. New files are
created mode 0600 (SQLite gives the ``-wal`` and ``-shm`` files the same mode).
"""

from __future__ import annotations

import heapq
import numbers
import operator
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby as _itergroupby
from pathlib import Path
from typing import Any

import mongomock_ng
import orjson
from bson import ObjectId
from maggma.core import Sort, Store, StoreError
from mongomock_ng.filtering import NOTHING, bson_compare, filter_applies, iter_key_candidates, resolve_sort_key
from mongomock_ng.helpers import hashdict
from mongomock_ng.helpers import patch_datetime_awareness_in_document as _mongo_values
from monty.json import jsanitize
from pydash import get, has, set_
from pymongo.errors import DuplicateKeyError

__all__ = ["DatabaseFileError", "SQLiteCollection", "SQLiteStore", "database_file_error"]

# Kinds of value seen at an indexed path (bit flags, OR-ed over the collection).
K_NULL = 1  # null or missing
K_BOOL = 2
K_NUM = 4
K_STR = 8
K_DATE = 16
K_OBJ = 32  # any other object
K_ARR = 64  # an array at the path or on the way to it
K_ODD = 128  # a parent that is neither object nor array: mongomock treats it unlike "missing"
K_NAN = 256  # NaN or +-inf
_NO_PUSHDOWN = K_ARR | K_ODD
_SORTABLE = (K_BOOL, K_NUM, K_STR, K_DATE)  # kinds that sort alike in SQL and mongomock, one at a time

_META_FIELDS = "_sqlitestore_fields"
_META_INDEXES = "_sqlitestore_indexes"
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_PASSTHROUGH_DATETIME
_CHUNK = 500  # rowids per "rowid IN (...)" statement
_MAX_POOLED_READERS = 4
_INT64 = 2**63


@dataclass(frozen=True)
class SQLiteCollection:
    """What ``SQLiteStore._collection`` returns: the writer connection and the table of the collection."""

    connection: sqlite3.Connection
    table: str
    database_path: str


# -- errors of the file rather than of the code ---------------------------------------

# primary SQLite result code -> (kind, what the user is told); SQLITE_ERROR (a bad statement) is not among them
_FILE_ERRORS = {
    sqlite3.SQLITE_FULL: ("full", "no space left (database or disk is full)"),
    sqlite3.SQLITE_IOERR: ("io", "disk I/O error (a full, failing or vanished file system?)"),
    sqlite3.SQLITE_CORRUPT: ("corrupt", "the file is damaged (database disk image is malformed)"),
    sqlite3.SQLITE_NOTADB: ("corrupt", "the file is damaged (not an SQLite database)"),
    sqlite3.SQLITE_CANTOPEN: ("cantopen", "cannot open the file (missing folder or no permission?)"),
    sqlite3.SQLITE_READONLY: ("readonly", "the file or its folder is read-only"),
    sqlite3.SQLITE_PERM: ("readonly", "no permission to write the file"),
    sqlite3.SQLITE_BUSY: ("busy", "another process holds its write lock (database is locked)"),
}


class DatabaseFileError(sqlite3.DatabaseError):
    """The database file, not the code, failed: no space, damaged, unreadable, read-only or locked.

    ``kind`` is ``full``, ``io``, ``corrupt``, ``cantopen``, ``readonly`` or ``busy``; the
    message names the file. A subclass of ``sqlite3.DatabaseError``, so handlers of SQLite
    errors still catch it.
    """

    def __init__(self, path: str, kind: str, reason: str) -> None:
        super().__init__(f"SQLite database {path}: {reason}" if path else f"SQLite database: {reason}")
        self.path, self.kind, self.reason = path, kind, reason

    def __reduce__(self):
        return type(self), (self.path, self.kind, self.reason)


def database_file_error(err: sqlite3.Error, path: str | None = None) -> DatabaseFileError | None:
    """``err`` as a :class:`DatabaseFileError` when it is one of the file's (disk full, damage, ...), else None."""
    if isinstance(err, DatabaseFileError):
        return err
    code = getattr(err, "sqlite_errorcode", None)
    if code is None or (code & 0xFF) not in _FILE_ERRORS:
        return None
    kind, reason = _FILE_ERRORS[code & 0xFF]
    return DatabaseFileError(path or "", kind, reason)


@contextmanager
def _file_errors(path: str) -> Iterator[None]:
    """Re-raise SQLite errors of the file (not of a statement) as :class:`DatabaseFileError` naming ``path``."""
    try:
        yield
    except sqlite3.DatabaseError as err:
        wrapped = database_file_error(err, path)
        if wrapped is None or wrapped is err:
            raise
        raise wrapped from err


_CHECKED: set[tuple] = set()
"""(path, inode, size, mtime, collection) of the collections this process found sound, so each is checked once."""
_CHECKED_LOCK = threading.Lock()


def _check_collection(conn: sqlite3.Connection, path: str, collection: str) -> None:
    """``PRAGMA quick_check`` of one collection's table and its indexes; DatabaseFileError if it is damaged.

    Only the collection a store opens is checked, so the cost follows what the store reads
    (``query`` reads the candidates, not the relaxation records of the data collection): a
    whole-file quick_check takes ~0.05-0.1 s per 100 MB from the page cache and ~1 s per 100 MB
    from disk. Once per process and version of the file.
    """
    try:
        info = os.stat(path)
    except OSError:
        return
    key = (os.path.realpath(path), info.st_ino, info.st_size, info.st_mtime_ns, collection)
    with _CHECKED_LOCK:
        if key in _CHECKED:
            return
    problems = [row[0] for row in conn.execute(f"PRAGMA quick_check({_sql_str(collection)})").fetchall()[:3]]
    if problems != ["ok"]:
        detail = "; ".join(" ".join(str(p).split()) for p in problems)
        raise DatabaseFileError(path, "corrupt", f"the file is damaged (quick_check of {collection}: {detail})")
    with _CHECKED_LOCK:
        _CHECKED.add(key)


# -- values: encoding, decoding, kinds -----------------------------------------------


def _date_text(value: datetime) -> str:
    """Fixed-width ISO text of the naive UTC millisecond, as MongoDB stores a datetime."""
    if value.tzinfo is not None and value.utcoffset() is not None:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="milliseconds")


def _nonfinite(value: float) -> dict[str, str]:
    return {"$numberDouble": "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")}


def _encode(obj: Any) -> Any:
    """``obj`` with non-finite floats (and objects orjson cannot write) replaced; copies only what changes."""
    t = type(obj)
    if t is dict:
        new = None
        for k, v in obj.items():
            tv = type(v)
            if tv is str or tv is int or tv is bool or v is None:  # leaves inline: most values, no call
                continue
            if tv is float:
                if v - v == 0:
                    continue
                e = _nonfinite(v)
            else:
                e = _encode(v)
                if e is v:
                    continue
            if new is None:
                new = dict(obj)
            new[k] = e
        return obj if new is None else new
    if t is list or t is tuple:
        new_list = None
        for i, v in enumerate(obj):
            tv = type(v)
            if tv is str or tv is int or tv is bool or v is None:
                continue
            if tv is float:
                if v - v == 0:
                    continue
                e = _nonfinite(v)
            else:
                e = _encode(v)
                if e is v:
                    continue
            if new_list is None:
                new_list = list(obj)
            new_list[i] = e
        return obj if new_list is None else new_list
    if t is float:
        return obj if obj - obj == 0 else _nonfinite(obj)
    if t is str or t is int or t is bool or obj is None or isinstance(obj, datetime):
        return obj  # datetimes: written by _default
    if isinstance(obj, float):  # e.g. numpy.float64
        return obj if obj - obj == 0 else _nonfinite(obj)
    if isinstance(obj, dict):
        return _encode(dict(obj))
    if isinstance(obj, list | tuple):
        return _encode(list(obj))
    if isinstance(obj, numbers.Real) and not isinstance(obj, numbers.Integral) and not obj - obj == 0:
        return _nonfinite(float(obj))  # numpy.float32 NaN: orjson would write null
    return obj  # str/int subclasses, enums, numpy: orjson; anything else: _default


def _default(obj: Any) -> Any:
    """orjson fallback: datetimes as ``{"$date": ...}``; other objects sanitised as MongoStore does."""
    if isinstance(obj, datetime):
        return {"$date": _date_text(obj)}
    if isinstance(obj, ObjectId):  # e.g. the _id of a document copied from MongoDB
        return str(obj)
    sanitized = jsanitize(obj, strict=False, allow_bson=True, recursive_msonable=True)
    return str(obj) if sanitized is obj else _encode(sanitized)


def _dumps(doc: Any) -> str:
    out = orjson.dumps(doc, default=_default, option=_DUMPS_OPTIONS)
    # orjson writes NaN/inf as null: only a document with a null in its JSON can hold one, so only those are walked
    if b"null" in out:
        encoded = _encode(doc)
        if encoded is not doc:
            out = orjson.dumps(encoded, default=_default, option=_DUMPS_OPTIONS)
    return out.decode()


def _revive(obj: Any) -> Any:
    """Turn stored ``{"$date": ...}`` / ``{"$numberDouble": ...}`` back into Python values, in place."""
    if isinstance(obj, dict):
        if len(obj) == 1:
            if isinstance(value := obj.get("$date"), str):
                try:
                    return datetime.fromisoformat(value)
                except ValueError:
                    return obj
            if isinstance(value := obj.get("$numberDouble"), str):
                try:
                    return float(value)
                except ValueError:
                    return obj
        for k, v in obj.items():
            if isinstance(v, dict | list):
                obj[k] = _revive(v)
        return obj
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            if isinstance(v, dict | list):
                obj[i] = _revive(v)
    return obj


def _loads(text: str) -> Any:
    obj = orjson.loads(text)
    if '{"$' in text and ('{"$date":' in text or '{"$numberDouble":' in text):
        obj = _revive(obj)
    return obj


def _kind(value: Any) -> int:
    """The kind bit of one value as it will be stored."""
    t = type(value)
    if value is None:
        return K_NULL
    if t is bool:
        return K_BOOL
    if t is str:
        return K_STR
    if t is int:
        return K_NUM
    if t is float:
        return K_NUM if value - value == 0 else K_NAN
    if t is dict:
        if len(value) == 1 and ("$date" in value or "$numberDouble" in value):
            return K_DATE if "$date" in value else K_NAN
        return K_OBJ
    if t is list or t is tuple:
        return K_ARR
    if isinstance(value, datetime):
        return K_DATE
    if isinstance(value, str):
        return K_STR
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        try:
            return K_NUM if value - value == 0 else K_NAN
        except TypeError:
            return K_ODD
    if isinstance(value, dict):
        return K_OBJ
    if isinstance(value, list | tuple):
        return K_ARR
    return K_ODD  # numpy bools, enums, objects: never pushed down


def _path_kind(doc: dict, parts: list[str]) -> int:
    cur: Any = doc
    for part in parts:
        if isinstance(cur, dict):
            if part not in cur:
                return K_NULL
            cur = cur[part]
        elif isinstance(cur, list | tuple):
            return K_ARR
        else:
            return K_ODD
    return _kind(cur)


# -- SQL text -------------------------------------------------------------------------


def _quote_id(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _json_path(field: str) -> str | None:
    """SQLite JSON path of a dotted field, or None when a part cannot be quoted in one."""
    parts = field.split(".")
    if any(not p or '"' in p or "\\" in p or any(ord(c) < 32 for c in p) for p in parts):
        return None
    return "$" + "".join(f'."{p}"' for p in parts)


def _expr(field: str) -> str:
    """The indexed expression of a field; queries must use this exact text for SQLite to use the index."""
    return f"json_extract(doc, {_sql_str(_json_path(field))})"  # type: ignore[arg-type]


def _kinds_case(field: str) -> str:
    """SQL expression giving the kind bit of ``field`` in a row (for fields indexed after data exists)."""
    parts = field.split(".")
    whens = []
    for i in range(1, len(parts)):
        parent = _sql_str(_json_path(".".join(parts[:i])))  # type: ignore[arg-type]
        whens.append(f"WHEN json_type(doc, {parent}) = 'array' THEN {K_ARR}")
        whens.append(f"WHEN json_type(doc, {parent}) NOT IN ('object') THEN {K_ODD}")
    path = _json_path(field)
    p = _sql_str(path)  # type: ignore[arg-type]
    date_key, nan_key = _sql_str(path + '."$date"'), _sql_str(path + '."$numberDouble"')  # type: ignore[operator]
    one_key = f"(SELECT count(*) FROM json_each(doc, {p})) = 1"
    whens += [
        f"WHEN json_type(doc, {p}) IS NULL OR json_type(doc, {p}) = 'null' THEN {K_NULL}",
        f"WHEN json_type(doc, {p}) IN ('true', 'false') THEN {K_BOOL}",
        f"WHEN json_type(doc, {p}) IN ('integer', 'real') THEN {K_NUM}",
        f"WHEN json_type(doc, {p}) = 'text' THEN {K_STR}",
        f"WHEN json_type(doc, {p}) = 'array' THEN {K_ARR}",
        f"WHEN json_type(doc, {date_key}) = 'text' AND {one_key} THEN {K_DATE}",
        f"WHEN json_type(doc, {nan_key}) = 'text' AND {one_key} THEN {K_NAN}",
    ]
    return "CASE " + " ".join(whens) + f" ELSE {K_OBJ} END"


# -- criteria -> SQL ------------------------------------------------------------------


@dataclass
class _Sql:
    """A WHERE fragment that matches a superset of the mongomock matches (exactly them when ``exact``)."""

    text: str
    params: list
    exact: bool


_DATE_LOW = '{"$date":"'  # every stored datetime's JSON text starts with this ...
_DATE_HIGH = '{"$date":#'  # ... and sorts below this ('#' follows '"')


def _param(value: Any) -> tuple[str, Any] | None:
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
    if isinstance(value, datetime):  # criteria went through _mongo_values: naive UTC milliseconds
        return "date", orjson.dumps({"$date": _date_text(value)}).decode()
    return None


def _eq_exact(kind: str, value: Any, kinds: int) -> bool:
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


class _Translator:
    """Translates mongomock criteria to SQL on the tracked fields (``kinds``: field -> kind bits)."""

    def __init__(self, kinds: dict[str, int]):
        self.kinds = kinds

    def where(self, criteria: dict) -> _Sql | None:
        """The whole criteria; None means no constraint (and not exact)."""
        if not isinstance(criteria, dict):
            return None
        parts: list[_Sql | None] = []
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

    def _logical(self, op: str, subs: Any) -> _Sql | None:
        if not isinstance(subs, list | tuple) or not subs:
            return None  # mongomock raises; let its matcher do so
        translated = [self.where(s) for s in subs]
        if op == "$and":
            return _and(translated)
        if any(t is None for t in translated):
            return None
        joined = _Sql(
            "(" + " OR ".join(t.text or "1" for t in translated) + ")",  # type: ignore[union-attr]
            [p for t in translated for p in t.params],  # type: ignore[union-attr]
            all(t.exact for t in translated),  # type: ignore[union-attr]
        )
        if op == "$or":
            return joined
        return _negate(joined)  # $nor

    def _field(self, field: str, spec: Any) -> _Sql | None:
        kinds = self.kinds.get(field)
        if kinds is None or kinds & _NO_PUSHDOWN:
            return None
        expr = _expr(field)
        if isinstance(spec, dict) and spec and all(isinstance(k, str) and k.startswith("$") for k in spec):
            return _and([self._op(field, expr, kinds, op, value) for op, value in spec.items()])
        return self._eq(expr, kinds, spec)

    def _eq(self, expr: str, kinds: int, value: Any) -> _Sql | None:
        p = _param(value)
        if p is None:
            return None
        kind, v = p
        if kind == "null":
            return _Sql(f"{expr} IS NULL", [], True)
        return _Sql(f"{expr} = ?", [v], _eq_exact(kind, v, kinds))

    def _op(self, field: str, expr: str, kinds: int, op: str, value: Any) -> _Sql | None:
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
            return _Sql(f"json_type(doc, {_sql_str(_json_path(field))}) {test}", [], True)  # type: ignore[arg-type]
        if op == "$not" and isinstance(value, dict):
            return _negate(self._field(field, value))
        return None  # $regex, $all, $elemMatch, $size, $type, ...: the matcher decides

    def _in(self, expr: str, kinds: int, values: Any) -> _Sql | None:
        if not isinstance(values, list | tuple):
            return None
        params, exact, has_null = [], True, False
        for value in values:
            p = _param(value)
            if p is None:
                return None
            if p[0] == "null":
                has_null = True
            else:
                params.append(p[1])
                exact = exact and _eq_exact(p[0], p[1], kinds)
        clauses = []
        if params:
            clauses.append(f"{expr} IN ({', '.join('?' * len(params))})")
        if has_null:
            clauses.append(f"{expr} IS NULL")
        return _Sql("(" + " OR ".join(clauses) + ")" if clauses else "0", params, exact)

    def _range(self, field: str, expr: str, kinds: int, sql_op: str, value: Any) -> _Sql | None:
        p = _param(value)
        if p is None:
            return None
        kind, v = p
        upward = sql_op in (">", ">=")
        if kind == "null":  # only an explicit null compares with null, and only with equality
            if not sql_op.endswith("="):
                return _Sql("0", [], True)
            return _Sql(f"json_type(doc, {_sql_str(_json_path(field))}) = 'null'", [], True)  # type: ignore[arg-type]
        # SQLite orders NULL < numbers < text: bound the other side to stay within the value's type
        if kind in ("bool", "num"):
            bound, bound_params = (f" AND {expr} < ''", []) if upward else ("", [])
        elif kind == "str":
            bound, bound_params = ("", []) if upward else (f" AND {expr} >= ''", [])
        else:
            bound, bound_params = (f" AND {expr} < ?", [_DATE_HIGH]) if upward else (f" AND {expr} > ?", [_DATE_LOW])
        return _Sql(f"({expr} {sql_op} ?{bound})", [v, *bound_params], not kinds & _RANGE_INEXACT[kind])


def _and(parts: Iterable[_Sql | None]) -> _Sql | None:
    parts = list(parts)
    known = [p for p in parts if p is not None]
    exact = len(known) == len(parts) and all(p.exact for p in known)
    if not known:
        return _Sql("", [], exact) if exact else None
    texts = [p.text for p in known if p.text]
    return _Sql("(" + " AND ".join(texts) + ")" if texts else "", [v for p in known for v in p.params], exact)


def _negate(sql: _Sql | None) -> _Sql | None:
    """NOT of an exact translation (a superset's complement would be a subset); NULL counts as false."""
    if sql is None or not sql.exact:
        return None
    return _Sql(f"NOT coalesce({sql.text or '1'}, 0)", sql.params, True)


def _criteria_tops(criteria: Any) -> set[str] | None:
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
                sub_tops = _criteria_tops(sub)
                if sub_tops is None:
                    return None
                tops |= sub_tops
        elif key.startswith("$"):
            return None
        else:
            tops.add(key.split(".")[0])
    return tops


# -- projection and sorting -----------------------------------------------------------

_projector = None


def _mongomock_projection(doc: dict, fields: dict) -> dict:
    """mongomock's own projection, so that ``properties`` behave exactly as in MemoryStore."""
    global _projector
    if _projector is None:
        _projector = mongomock_ng.MongoClient().db.projection
    return _projector._copy_only_fields(doc, dict(fields), dict)


def _projection(properties: dict | list | None) -> tuple[dict | None, list[str] | None]:
    """(mongomock projection dict or None, plain top-level field names for the fast path or None)."""
    if properties is None:
        return None, None
    fields = {p: 1 for p in properties} if isinstance(properties, list | tuple) else dict(properties)
    if not fields:
        return None, None
    simple = all(
        isinstance(k, str) and "." not in k and not k.startswith("$") and k != "_id" and v in (1, True)
        for k, v in fields.items()
    )
    return fields, (list(fields) if simple else None)


def _project(doc: dict, fields: dict | None, simple: list[str] | None) -> dict:
    if fields is None:
        return doc
    if simple is not None:
        out = {k: doc[k] for k in simple if k in doc}
        if "_id" in doc:
            out["_id"] = doc["_id"]
        return out
    return _mongomock_projection(doc, fields)


def _projection_tops(fields: dict | None) -> set[str] | None:
    """Top-level fields a projection needs (None: the whole document)."""
    if fields is None:
        return None
    tops = set()
    for key, value in fields.items():
        if key == "_id":
            tops.add("_id")
            continue
        if isinstance(value, dict) or isinstance(value, str) or not value:
            return None  # exclusions, $slice/$elemMatch, computed fields
        tops.add(key.split(".")[0])
    return tops


class _SortKey:
    """mongomock's order: each sort field by its resolved sort key, then natural (rowid) order."""

    __slots__ = ("dirs", "rowid", "vals")

    def __init__(self, doc: dict, rowid: int, sort: list[tuple[str, int]]):
        self.vals = []
        for field, _ in sort:
            flag, comparable = resolve_sort_key(field, doc)
            self.vals.append((flag, comparable.obj))
        self.dirs = [d for _, d in sort]
        self.rowid = rowid

    def __lt__(self, other: _SortKey) -> bool:
        for (fa, a), (fb, b), d in zip(self.vals, other.vals, self.dirs, strict=True):
            if fa != fb:
                return (fa < fb) == (d > 0)
            if bson_compare(operator.lt, a, b):
                return d > 0
            if bson_compare(operator.lt, b, a):
                return d < 0
        return self.rowid < other.rowid


class _BsonTuple:
    """Tuple of values ordered by BSON comparison (mixed types sort instead of raising)."""

    __slots__ = ("vals",)

    def __init__(self, vals: tuple):
        self.vals = vals

    def __lt__(self, other: _BsonTuple) -> bool:
        for a, b in zip(self.vals, other.vals, strict=True):
            if bson_compare(operator.lt, a, b):
                return True
            if bson_compare(operator.lt, b, a):
                return False
        return False


def _normalize_sort(sort: dict | None) -> list[tuple[str, int]]:
    if not sort:
        return []
    return [(k, v.value if isinstance(v, Sort) else (1 if int(v) >= 0 else -1)) for k, v in sort.items()]


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# -- the store ------------------------------------------------------------------------


class SQLiteStore(Store):
    """A maggma Store holding one collection of a SQLite database file, with real indexes.

    Several stores (collections) may share one database file; each opens its own
    connections on :meth:`connect`.  See the module docstring for the storage
    format, the query semantics and the one-writer-process rule.
    """

    def __init__(
        self,
        collection_name: str,
        database_path: str,
        key: str = "task_id",
        last_updated_field: str = "last_updated",
        busy_timeout: float = 60.0,
        **kwargs: Any,
    ):
        """
        Args:
            collection_name: Name of the collection (a table of the database file).
            database_path: Path of the SQLite file; missing parent directories are created on connect.
            key: Main key field; ``update`` upserts on it unless given another key.
            last_updated_field: Field with the date/time of each document's last update.
            busy_timeout: Seconds to wait for another process's write lock before failing.
            **kwargs: Passed to maggma's ``Store`` (``last_updated_type``, ``validator``).
        """
        if str(database_path) == ":memory:" or str(database_path).startswith("file:"):
            raise ValueError("SQLiteStore needs a file path (use maggma's MemoryStore for an in-memory store)")
        if collection_name.startswith(("sqlite_", "_sqlitestore_")):
            raise ValueError(f"collection name {collection_name!r} is reserved by SQLite or SQLiteStore")
        self.collection_name = collection_name
        self.database_path = str(database_path)
        self.busy_timeout = busy_timeout
        self.kwargs = kwargs
        self._table = _quote_id(collection_name)
        self._lock = threading.RLock()
        self._writer: sqlite3.Connection | None = None
        self._readers: list[sqlite3.Connection] = []
        self._generation = 0
        self._pid = 0
        self._key_indexes: set[tuple[str, ...]] = set()
        super().__init__(key=key, last_updated_field=last_updated_field, **kwargs)

    # -- connection handling ---------------------------------------------------------

    @property
    def name(self) -> str:
        """Return a string representing this data source."""
        return f"sqlite://{self.database_path}/{self.collection_name}"

    @property
    def _collection(self) -> SQLiteCollection:
        """The writer connection and table of this collection."""
        if self._writer is None:
            raise StoreError("Must connect SQLiteStore before attempting to use it")
        return SQLiteCollection(self._writer, self._table, self.database_path)

    def _open(self, read_only: bool) -> sqlite3.Connection:
        if not read_only and not os.path.exists(self.database_path):
            # a new file is the owner's only; SQLite gives its -wal and -shm files the same mode
            with suppress(OSError):  # e.g. created meanwhile, or a folder without write permission (sqlite3 says)
                os.close(os.open(self.database_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(
            self.database_path,
            timeout=self.busy_timeout,
            isolation_level=None,  # transactions are explicit
            check_same_thread=False,  # guarded by self._lock / the reader pool
            cached_statements=256,
        )
        try:
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable against process crashes, consistent always
            conn.execute("PRAGMA cache_size=-4000")  # 4 MB a connection: page caches of every pooled connection add up
            if read_only:
                conn.execute("PRAGMA query_only=1")
            else:
                # Checkpoint every ~40 MB of WAL instead of 4 MB: index pages rewritten by successive batches are
                # copied (and fsynced) once, which keeps upserts into 10^5-document collections at ~0.1 ms/doc.
                conn.execute("PRAGMA wal_autocheckpoint=10000")
        except BaseException:
            conn.close()
            raise
        return conn

    def connect(self, force_reset: bool = False) -> None:
        """Open the database file (creating it, its folder and the collection's table if needed).

        A new file is created readable by its owner only (mode 0600). The collection's table
        and indexes in an existing file are checked (``PRAGMA quick_check``, once per process)
        so that damage is reported at once, not as wrong or missing results.

        Args:
            force_reset: Reopen the connections even if already connected (data is kept).

        Raises:
            DatabaseFileError: The file is damaged, cannot be opened, or its disk is full.
        """
        with self._lock:
            if self._writer is not None and not force_reset and self._pid == os.getpid():
                return
            self._drop_connections(close=self._pid == os.getpid())
            Path(self.database_path).parent.mkdir(parents=True, exist_ok=True)
            with _file_errors(self.database_path):
                conn = self._open(read_only=False)
                try:
                    self._prepare(conn)
                except BaseException:
                    conn.close()
                    raise
            self._writer = conn
            self._pid = os.getpid()

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL, check the collection's table (if it exists) or create it."""
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            self.logger.warning(f"{self.database_path}: journal mode {mode}, not WAL")
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if self.collection_name in names:
            _check_collection(conn, self.database_path, self.collection_name)
        if not {self.collection_name, _META_FIELDS, _META_INDEXES} <= names:
            # checked with a read first, so that a reader process never waits for the writer's lock
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(f"CREATE TABLE IF NOT EXISTS {self._table} (rowid INTEGER PRIMARY KEY, doc TEXT NOT NULL)")
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {_META_FIELDS} (collection TEXT NOT NULL, path TEXT NOT NULL,"
                    " kinds INTEGER NOT NULL, PRIMARY KEY (collection, path)) WITHOUT ROWID"
                )
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {_META_INDEXES} (collection TEXT NOT NULL, name TEXT NOT NULL,"
                    " fields TEXT NOT NULL, is_unique INTEGER NOT NULL, PRIMARY KEY (collection, name)) WITHOUT ROWID"
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # a failed COMMIT (disk full) may have rolled back already
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close every connection of this store."""
        with self._lock:
            self._drop_connections(close=self._pid == os.getpid())

    def _drop_connections(self, close: bool) -> None:
        # after a fork the inherited connections belong to the parent: forget them without closing
        conns = ([self._writer] if self._writer is not None else []) + self._readers
        self._writer, self._readers = None, []
        self._generation += 1
        self._key_indexes = set()
        if close:
            for conn in conns:
                conn.close()

    def _ensure_connected(self) -> None:
        if self._writer is None:
            raise StoreError("Must connect SQLiteStore before attempting to use it")
        if self._pid != os.getpid():
            self.connect(force_reset=True)

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A pooled read-only connection inside one read transaction (a consistent snapshot)."""
        with self._lock:
            self._ensure_connected()
            conn = self._readers.pop() if self._readers else None
            generation = self._generation
        if conn is None:
            with _file_errors(self.database_path):
                conn = self._open(read_only=True)
        healthy = False
        try:
            with _file_errors(self.database_path):
                conn.execute("BEGIN")
                yield conn
        finally:
            try:
                conn.execute("COMMIT")
                healthy = True
            except sqlite3.Error:
                pass  # not in a transaction or a statement still open: do not reuse this connection
            with self._lock:
                if healthy and generation == self._generation and len(self._readers) < _MAX_POOLED_READERS:
                    self._readers.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """The writer connection inside one write transaction (committed at the end, rolled back on error)."""
        with self._lock:
            self._ensure_connected()
            conn = self._writer
            with _file_errors(self.database_path):
                conn.execute("BEGIN IMMEDIATE")  # take the write lock now: no deadlock on upgrade
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    # SQLite may have rolled back already (e.g. a COMMIT that found the disk full); a failing
                    # ROLLBACK must not hide the error that made it necessary
                    if conn.in_transaction:
                        with suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise

    # -- metadata --------------------------------------------------------------------

    def _kinds(self, conn: sqlite3.Connection) -> dict[str, int]:
        rows = conn.execute(f"SELECT path, kinds FROM {_META_FIELDS} WHERE collection = ?", (self.collection_name,))
        return dict(rows.fetchall())

    def _indexes(self, conn: sqlite3.Connection) -> dict[str, tuple[tuple[str, ...], bool]]:
        rows = conn.execute(
            f"SELECT name, fields, is_unique FROM {_META_INDEXES} WHERE collection = ?", (self.collection_name,)
        )
        return {name: (tuple(orjson.loads(fields)), bool(unique)) for name, fields, unique in rows}

    def _create_index(self, conn: sqlite3.Connection, fields: tuple[str, ...], unique: bool, kinds: dict[str, int]) -> None:
        """Create an index inside the caller's write transaction and start tracking its fields' kinds."""
        name = f"{self.collection_name}::{'+'.join(fields)}" + ("::unique" if unique else "")
        columns = ", ".join(_expr(f) for f in fields)
        conn.execute(f"CREATE {'UNIQUE ' if unique else ''}INDEX IF NOT EXISTS {_quote_id(name)} ON {self._table} ({columns})")
        for field in fields:
            if field not in kinds:
                found = 0
                for (kind,) in conn.execute(f"SELECT DISTINCT {_kinds_case(field)} FROM {self._table}"):
                    found |= kind
                kinds[field] = found
                conn.execute(
                    f"INSERT OR REPLACE INTO {_META_FIELDS} (collection, path, kinds) VALUES (?, ?, ?)",
                    (self.collection_name, field, found),
                )
        conn.execute(
            f"INSERT OR REPLACE INTO {_META_INDEXES} (collection, name, fields, is_unique) VALUES (?, ?, ?, ?)",
            (self.collection_name, name, orjson.dumps(list(fields)).decode(), int(unique)),
        )

    def _save_kinds(self, conn: sqlite3.Connection, kinds: dict[str, int]) -> None:
        conn.executemany(
            f"UPDATE {_META_FIELDS} SET kinds = ? WHERE collection = ? AND path = ?",
            [(k, self.collection_name, path) for path, k in kinds.items()],
        )

    # -- reading ---------------------------------------------------------------------

    def _select(self, tops: set[str] | None) -> tuple[str, list[str] | None]:
        """SELECT list: the whole document, or only the top-level fields needed (parsed by SQLite, not Python)."""
        if tops is None or any(_json_path(t) is None for t in tops):
            return "rowid, doc", None
        names = sorted(tops)
        return "rowid, " + ", ".join(f"doc -> {_sql_str(_json_path(t))}" for t in names), names  # type: ignore[arg-type]

    @staticmethod
    def _build(row: tuple, names: list[str] | None) -> dict:
        if names is None:
            return _loads(row[1])
        return {name: _loads(value) for name, value in zip(names, row[1:], strict=True) if value is not None}

    def _plan(self, conn: sqlite3.Connection, criteria: dict) -> tuple[_Sql | None, dict[str, int]]:
        kinds = self._kinds(conn)
        return _Translator(kinds).where(criteria), kinds

    def _order_sql(self, sort: list[tuple[str, int]], kinds: dict[str, int]) -> str | None:
        """ORDER BY text when SQL orders the sort fields exactly as mongomock does, else None."""
        terms = []
        for field, direction in sort:
            k = kinds.get(field)
            if k is None or k & (_NO_PUSHDOWN | K_OBJ | K_NAN) or sum(bool(k & s) for s in _SORTABLE) > 1:
                return None
            terms.append(f"{_expr(field)} {'ASC' if direction > 0 else 'DESC'}")
        return ", ".join([*terms, "rowid ASC"])  # ties keep natural order, as mongomock's stable sort

    def _candidates(
        self, conn: sqlite3.Connection, where: _Sql | None, names_sql: str, order: str = "rowid", tail: str = "",
        tail_params: tuple = (),
    ) -> sqlite3.Cursor:
        sql = f"SELECT {names_sql} FROM {self._table}"
        params: list = []
        if where is not None and where.text:
            sql += f" WHERE {where.text}"
            params = list(where.params)
        return conn.execute(f"{sql} ORDER BY {order}{tail}", [*params, *tail_params])

    def count(self, criteria: dict | None = None) -> int:
        """Number of documents matching the criteria.

        Args:
            criteria: PyMongo filter for documents to count.
        """
        criteria = _mongo_values(criteria or {})
        with self._reading() as conn:
            where, _ = self._plan(conn, criteria)
            if where is not None and where.exact:
                sql = f"SELECT count(*) FROM {self._table}" + (f" WHERE {where.text}" if where.text else "")
                return conn.execute(sql, where.params).fetchone()[0]
            select, names = self._select(_criteria_tops(criteria))
            cursor = self._candidates(conn, where, select)
            try:
                return sum(1 for row in cursor if filter_applies(criteria, self._build(row, names)))
            finally:
                cursor.close()

    def query(
        self,
        criteria: dict | None = None,
        properties: dict | list | None = None,
        sort: dict[str, Sort | int] | None = None,
        skip: int = 0,
        limit: int = 0,
    ) -> Iterator[dict]:
        """Query the Store for a set of documents (without ``_id`` unless the documents have one).

        Args:
            criteria: PyMongo filter for documents to search in.
            properties: Fields to return (list, or projection dict); dotted paths allowed.
            sort: Dictionary of sort order for fields: 1 (or Sort.Ascending) / -1 (Sort.Descending).
            skip: Number of documents to skip.
            limit: Maximum number of documents returned (0: no limit).
        """
        criteria = _mongo_values(criteria or {})  # as mongomock: query datetimes to naive UTC milliseconds
        sort_spec = _normalize_sort(sort)
        fields, simple = _projection(properties)
        skip, limit = max(int(skip or 0), 0), max(int(limit or 0), 0)
        ctops, ptops = _criteria_tops(criteria), _projection_tops(fields)
        tops = None if ctops is None or ptops is None else ctops | ptops
        with self._reading() as conn:
            where, kinds = self._plan(conn, criteria)
            exact = where is not None and where.exact
            order = self._order_sql(sort_spec, kinds) if sort_spec else "rowid"
            if order is None:
                stops = {f.split(".")[0] for f, _ in sort_spec}
                yield from self._query_sorted_in_python(
                    conn, criteria, where, fields, simple, sort_spec, skip, limit, None if tops is None else tops | stops
                )
                return
            select, names = self._select(tops)
            if exact and (skip or limit):
                cursor = self._candidates(conn, where, select, order, " LIMIT ? OFFSET ?", (limit or -1, skip))
                skip = 0
            else:
                cursor = self._candidates(conn, where, select, order)
            try:
                returned = 0
                for row in cursor:
                    doc = self._build(row, names)
                    if not filter_applies(criteria, doc):
                        continue
                    if skip:
                        skip -= 1
                        continue
                    yield _project(doc, fields, simple)
                    returned += 1
                    if limit and returned >= limit:
                        return
            finally:
                cursor.close()

    def _query_sorted_in_python(
        self,
        conn: sqlite3.Connection,
        criteria: dict,
        where: _Sql | None,
        fields: dict | None,
        simple: list[str] | None,
        sort: list[tuple[str, int]],
        skip: int,
        limit: int,
        tops: set[str] | None,
    ) -> Iterator[dict]:
        """Sort in Python with mongomock's order; keeps ``skip + limit`` documents, or only keys without a limit."""
        select, names = self._select(tops)
        cursor = self._candidates(conn, where, select)
        try:
            matches = (
                (row[0], doc) for row in cursor if filter_applies(criteria, doc := self._build(row, names))
            )
            if limit:
                best = heapq.nsmallest(
                    skip + limit, ((_SortKey(doc, rowid, sort), _project(doc, fields, simple)) for rowid, doc in matches)
                )
                for _, doc in best[skip:]:
                    yield doc
                return
            keys = sorted(_SortKey(doc, rowid, sort) for rowid, doc in matches)
        finally:
            cursor.close()
        rowids = [k.rowid for k in keys[skip:]]
        # fetch the documents again in sorted order, within the same snapshot
        select, names = self._select(None if fields is None else _projection_tops(fields))
        for chunk in _chunks(rowids, _CHUNK):
            rows = conn.execute(
                f"SELECT {select} FROM {self._table} WHERE rowid IN ({', '.join('?' * len(chunk))})", chunk
            ).fetchall()
            by_id = {row[0]: row for row in rows}
            for rowid in chunk:
                yield _project(self._build(by_id[rowid], names), fields, simple)

    def query_one(
        self,
        criteria: dict | None = None,
        properties: dict | list | None = None,
        sort: dict[str, Sort | int] | None = None,
    ) -> dict | None:
        """The first document matching the criteria in the given order, or None.

        Args:
            criteria: PyMongo filter for documents to search.
            properties: Fields to return.
            sort: Dictionary of sort order for fields.
        """
        return next(self.query(criteria=criteria, properties=properties, sort=sort, limit=1), None)

    def distinct(self, field: str, criteria: dict | None = None, all_exist: bool = False) -> list:
        """Distinct values of a field (array values are unwound, missing values skipped), in first-seen order.

        Args:
            field: Field (dotted path allowed) to get distinct values for.
            criteria: PyMongo filter for documents to search in.
            all_exist: Ignored (kept for the maggma signature).
        """
        criteria = _mongo_values(criteria or {})
        with self._reading() as conn:
            where, kinds = self._plan(conn, criteria)
            k = kinds.get(field)
            if where is not None and where.exact and k is not None and not k & ~(K_NULL | K_NUM | K_STR):
                return self._distinct_sql(conn, field, where, k)
            ctops = _criteria_tops(criteria)
            select, names = self._select(None if ctops is None else ctops | {field.split(".")[0]})
            seen: dict[Any, Any] = {}
            unhashable: list = []
            cursor = self._candidates(conn, where, select)
            try:
                for row in cursor:
                    doc = self._build(row, names)
                    if not filter_applies(criteria, doc):
                        continue
                    for values in iter_key_candidates(field, doc):
                        if values is NOTHING:
                            continue
                        for value in values if isinstance(values, list | tuple) else [values]:
                            try:
                                seen.setdefault(hashdict(value) if isinstance(value, dict) else value, value)
                            except TypeError:
                                if value not in unhashable:
                                    unhashable.append(value)
            finally:
                cursor.close()
            return list(seen.values()) + unhashable

    def _distinct_sql(self, conn: sqlite3.Connection, field: str, where: _Sql, kinds: int) -> list:
        """distinct from the index alone (numbers and strings only), in first-seen order."""
        expr = _expr(field)
        cond = f" AND {where.text}" if where.text else ""
        rows = conn.execute(
            f"SELECT {expr}, min(rowid) FROM {self._table} WHERE {expr} IS NOT NULL{cond} GROUP BY {expr}", where.params
        ).fetchall()
        if kinds & K_NULL:
            null_row = conn.execute(
                f"SELECT min(rowid) FROM {self._table} WHERE json_type(doc, {_sql_str(_json_path(field))}) = 'null'{cond}",
                where.params,
            ).fetchone()
            if null_row[0] is not None:
                rows.append((None, null_row[0]))
        return [value for value, _ in sorted(rows, key=lambda r: r[1])]

    def groupby(
        self,
        keys: list[str] | str,
        criteria: dict | None = None,
        properties: dict | list | None = None,
        sort: dict[str, Sort | int] | None = None,
        skip: int = 0,
        limit: int = 0,
    ) -> Iterator[tuple[dict, list[dict]]]:
        """Group documents by the values of ``keys``, as maggma's MemoryStore does.

        Documents missing a key are left out; groups come in ascending order of their
        key values (BSON order); each document holds the keys and ``properties`` only.
        ``sort`` orders the documents within a group; ``skip``/``limit`` are ignored,
        as in MemoryStore and MongoStore.

        Args:
            keys: Field(s) to group documents by.
            criteria: PyMongo filter for documents to search in.
            properties: Fields to return in the grouped documents.
            sort: Order of the documents within each group.
            skip: Ignored.
            limit: Ignored.

        Returns:
            Iterator of (dict of the key values, list of documents).
        """
        keys = keys if isinstance(keys, list) else [keys]
        if properties is None:
            properties = []
        if isinstance(properties, dict):
            properties = list(properties.keys())
        data = [doc for doc in self.query(criteria=criteria, properties=keys + list(properties), sort=sort)
                if all(has(doc, k) for k in keys)]

        def grouping_keys(doc: dict) -> tuple:
            return tuple(get(doc, k) for k in keys)

        data.sort(key=lambda doc: _BsonTuple(grouping_keys(doc)))
        for vals, group in _itergroupby(data, key=grouping_keys):
            doc: dict = {}
            for k, v in zip(keys, vals, strict=True):
                set_(doc, k, v)
            yield doc, list(group)

    # -- writing ---------------------------------------------------------------------

    def ensure_index(self, key: str, unique: bool = False) -> bool:
        """Create an index on a field (a SQLite expression index) unless one exists.

        Args:
            key: Single field (dotted path allowed) to index.
            unique: Whether the index forbids two documents with the same value (missing values excepted).

        Returns:
            True if the index exists or was created; False if it cannot be (a field name
            SQLite paths cannot quote, or existing duplicates for a unique index).
        """
        if not isinstance(key, str) or _json_path(key) is None:
            return False
        fields = (key,)

        def present(conn: sqlite3.Connection) -> bool:
            return any(f == fields and (u or not unique) for f, u in self._indexes(conn).values())

        with self._reading() as conn:
            if present(conn):
                return True
        try:
            with self._writing() as conn:
                if not present(conn):
                    self._create_index(conn, fields, unique, self._kinds(conn))
        except sqlite3.IntegrityError as err:
            self.logger.error(f"cannot create unique index on {key} in {self.name}: {err}")
            return False
        return True

    def update(self, docs: list[dict] | dict, key: list | str | None = None) -> None:
        """Upsert documents (replace the document with the same key, else insert), in one transaction.

        The key fields get an index on first use, so each upsert is an index lookup.
        The whole batch is rolled back when one document breaks a unique index.

        Args:
            docs: The document or list of documents to upsert.
            key: Field name(s) that identify a document (default: the store's key).

        Raises:
            pymongo.errors.DuplicateKeyError: A document duplicates another's value of a unique index.
        """
        if not isinstance(docs, list):
            docs = [docs]
        key = key or self.key
        fields = tuple(key) if isinstance(key, list | tuple) else (key,)
        rows = []
        for d in docs:
            if self.validator and not self.validator.is_valid(d):
                if self.validator.strict:
                    raise ValueError(self.validator.validation_errors(d))
                self.logger.error(self.validator.validation_errors(d))
                continue
            rows.append((d, tuple(d[k] for k in fields), _dumps(d)))  # KeyError on a missing key, as MongoStore
        if not rows:
            return
        indexable = all(_json_path(f) is not None for f in fields)
        with self._writing() as conn:
            kinds = self._kinds(conn)
            if indexable and fields not in self._key_indexes:
                if not any(f[: len(fields)] == fields for f, _ in self._indexes(conn).values()):
                    self._create_index(conn, fields, False, kinds)
                self._key_indexes.add(fields)
            before = dict(kinds)
            tracked = [(path, path.split(".")) for path in kinds]
            insert = f"INSERT INTO {self._table} (doc) VALUES (?)"
            replace = f"UPDATE {self._table} SET doc = ? WHERE rowid = ?"
            for d, values, text in rows:
                for path, parts in tracked:
                    kinds[path] |= _path_kind(d, parts)
                rowid = self._find(conn, fields, values, kinds)
                try:
                    if rowid is None:
                        conn.execute(insert, (text,))
                    else:
                        conn.execute(replace, (text, rowid))
                except sqlite3.IntegrityError as err:
                    raise self._duplicate_error(conn, err, d) from err
            if kinds != before:
                self._save_kinds(conn, {p: k for p, k in kinds.items() if k != before.get(p)})

    def _find(self, conn: sqlite3.Connection, fields: tuple[str, ...], values: tuple, kinds: dict[str, int]) -> int | None:
        """rowid of the first document (natural order) matching ``{field: value, ...}``, as replace_one finds it."""
        clauses, params = [], []
        for field, value in zip(fields, values, strict=True):
            k, p = kinds.get(field), _param(_mongo_values(value) if isinstance(value, datetime) else value)
            if k is None or k & _NO_PUSHDOWN or p is None or not _eq_exact(p[0], p[1], k):
                break
            if p[0] == "null":
                clauses.append(f"{_expr(field)} IS NULL")
            else:
                clauses.append(f"{_expr(field)} = ?")
                params.append(p[1])
        else:  # every key value has an exact indexed lookup
            row = conn.execute(
                f"SELECT rowid FROM {self._table} WHERE {' AND '.join(clauses)} ORDER BY rowid LIMIT 1", params
            ).fetchone()
            return None if row is None else row[0]
        criteria = _mongo_values(dict(zip(fields, values, strict=True)))
        where = _Translator(kinds).where(criteria)
        select, names = self._select(_criteria_tops(criteria))
        cursor = self._candidates(conn, where, select)
        try:
            for row in cursor:
                if filter_applies(criteria, self._build(row, names)):
                    return row[0]
        finally:
            cursor.close()
        return None

    def _duplicate_error(self, conn: sqlite3.Connection, err: sqlite3.IntegrityError, doc: dict) -> Exception:
        message = str(err)
        for name, (fields, _) in self._indexes(conn).items():
            if name in message:
                dup = {f: get(doc, f) for f in fields}
                return DuplicateKeyError(
                    f"E11000 duplicate key error collection: {self.name} index: {'+'.join(fields)} dup key: {dup}", 11000
                )
        return DuplicateKeyError(f"E11000 duplicate key error collection: {self.name}: {message}", 11000)

    def remove_docs(self, criteria: dict) -> None:
        """Remove the documents matching the criteria (all of them for ``{}``).

        Args:
            criteria: PyMongo filter of the documents to remove.
        """
        criteria = _mongo_values(criteria or {})
        with self._writing() as conn:
            kinds = self._kinds(conn)
            where = _Translator(kinds).where(criteria)
            if where is not None and where.exact:
                conn.execute(f"DELETE FROM {self._table}" + (f" WHERE {where.text}" if where.text else ""), where.params)
            else:
                select, names = self._select(_criteria_tops(criteria))
                doomed = [row[0] for row in self._candidates(conn, where, select)
                          if filter_applies(criteria, self._build(row, names))]
                for chunk in _chunks(doomed, _CHUNK):
                    conn.execute(f"DELETE FROM {self._table} WHERE rowid IN ({', '.join('?' * len(chunk))})", chunk)
            if conn.execute(f"SELECT 1 FROM {self._table} LIMIT 1").fetchone() is None:
                # empty again: forget the kinds seen, so pushdown is back to full strength
                self._save_kinds(conn, dict.fromkeys(kinds, 0))

    # -- identity --------------------------------------------------------------------

    def __hash__(self) -> int:
        return hash((os.path.abspath(self.database_path), self.collection_name, self.last_updated_field))

    def __eq__(self, other: object) -> bool:
        """Two SQLiteStores are equal when they hold the same collection of the same file."""
        if not isinstance(other, SQLiteStore):
            return False
        return (
            os.path.abspath(self.database_path) == os.path.abspath(other.database_path)
            and self.collection_name == other.collection_name
            and self.last_updated_field == other.last_updated_field
        )
