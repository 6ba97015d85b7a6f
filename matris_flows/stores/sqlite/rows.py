"""The SELECTs of a collection's table: the rows a query may match, in which order, and the documents built from them.

Functions of a connection and a table (the quoted name of the collection's table) that the
store's reads and writes share. A WHERE from :mod:`matris_flows.stores.sqlite.translate` may let
through more rows than match, so the rows go through mongomock's matcher (``filter_applies``);
only where the translation was exact may a caller skip it.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Iterator
from datetime import datetime

from mongomock_ng.filtering import filter_applies
from mongomock_ng.helpers import patch_datetime_awareness_in_document as _mongo_values

from matris_flows.stores.sqlite.encoding import K_NAN, K_NULL, K_OBJ, NO_PUSHDOWN, SORTABLE, loads
from matris_flows.stores.sqlite.projection import project, projection_tops
from matris_flows.stores.sqlite.sorting import SortKey
from matris_flows.stores.sqlite.sql_text import field_expr, json_path, sql_str
from matris_flows.stores.sqlite.translate import Sql, Translator, criteria_tops, eq_exact, sql_param

CHUNK = 500  # rowids per "rowid IN (...)" statement


def select_list(tops: set[str] | None) -> tuple[str, list[str] | None]:
    """SELECT list: the whole document, or only the top-level fields needed (and ``_id``; parsed by SQLite, not Python)."""
    if tops is None or any(json_path(t) is None for t in tops):
        return "rowid, doc", None
    names = sorted(tops | {"_id"})
    return "rowid, " + ", ".join(f"doc -> {sql_str(json_path(t))}" for t in names), names  # type: ignore[arg-type]


def build_document(row: tuple, names: list[str] | None) -> dict:
    """The document (or its top-level fields ``names``) of a row selected with :func:`select_list`.

    Every document has an ``_id``, as in MongoDB: its own when it was written with one, else the
    row's id (unique in the collection, and kept when the document is replaced by an upsert).
    """
    if names is None:
        doc = loads(row[1])
    else:
        doc = {name: loads(value) for name, value in zip(names, row[1:], strict=True) if value is not None}
    if "_id" not in doc:
        doc["_id"] = row[0]
    return doc


def order_sql(sort: list[tuple[str, int]], kinds: dict[str, int]) -> str | None:
    """ORDER BY text when SQL orders the sort fields exactly as mongomock does, else None."""
    terms = []
    for field, direction in sort:
        k = kinds.get(field)
        if k is None or k & (NO_PUSHDOWN | K_OBJ | K_NAN) or sum(bool(k & s) for s in SORTABLE) > 1:
            return None
        terms.append(f"{field_expr(field)} {'ASC' if direction > 0 else 'DESC'}")
    return ", ".join([*terms, "rowid ASC"])  # ties keep natural order, as mongomock's stable sort


def candidate_rows(
    conn: sqlite3.Connection, table: str, where: Sql | None, names_sql: str, order: str = "rowid", tail: str = "",
    tail_params: tuple = (),
) -> sqlite3.Cursor:
    """The rows of ``table`` that ``where`` lets through (all of them for None), in ``order``."""
    sql = f"SELECT {names_sql} FROM {table}"
    params: list = []
    if where is not None and where.text:
        sql += f" WHERE {where.text}"
        params = list(where.params)
    return conn.execute(f"{sql} ORDER BY {order}{tail}", [*params, *tail_params])


def query_sorted_in_python(
    conn: sqlite3.Connection,
    table: str,
    criteria: dict,
    where: Sql | None,
    fields: dict | None,
    simple: list[str] | None,
    sort: list[tuple[str, int]],
    skip: int,
    limit: int,
    tops: set[str] | None,
) -> Iterator[dict]:
    """Sort in Python with mongomock's order; keeps ``skip + limit`` documents, or only keys without a limit."""
    select, names = select_list(tops)
    cursor = candidate_rows(conn, table, where, select)
    try:
        matches = (
            (row[0], doc) for row in cursor if filter_applies(criteria, doc := build_document(row, names))
        )
        if limit:
            best = heapq.nsmallest(
                skip + limit, ((SortKey(doc, rowid, sort), project(doc, fields, simple)) for rowid, doc in matches)
            )
            for _, doc in best[skip:]:
                yield doc
            return
        keys = sorted(SortKey(doc, rowid, sort) for rowid, doc in matches)
    finally:
        cursor.close()
    rowids = [k.rowid for k in keys[skip:]]
    # fetch the documents again in sorted order, within the same snapshot
    select, names = select_list(None if fields is None else projection_tops(fields))
    for chunk in chunks(rowids, CHUNK):
        rows = conn.execute(
            f"SELECT {select} FROM {table} WHERE rowid IN ({', '.join('?' * len(chunk))})", chunk
        ).fetchall()
        by_id = {row[0]: row for row in rows}
        for rowid in chunk:
            yield project(build_document(by_id[rowid], names), fields, simple)


def distinct_sql(conn: sqlite3.Connection, table: str, field: str, where: Sql, kinds: int) -> list:
    """distinct from the index alone (numbers and strings only), in first-seen order."""
    expr = field_expr(field)
    cond = f" AND {where.text}" if where.text else ""
    rows = conn.execute(
        f"SELECT {expr}, min(rowid) FROM {table} WHERE {expr} IS NOT NULL{cond} GROUP BY {expr}", where.params
    ).fetchall()
    if kinds & K_NULL:
        null_row = conn.execute(
            f"SELECT min(rowid) FROM {table} WHERE json_type(doc, {sql_str(json_path(field))}) = 'null'{cond}",
            where.params,
        ).fetchone()
        if null_row[0] is not None:
            rows.append((None, null_row[0]))
    return [value for value, _ in sorted(rows, key=lambda r: r[1])]


def find_rowid(
    conn: sqlite3.Connection, table: str, fields: tuple[str, ...], values: tuple, kinds: dict[str, int]
) -> int | None:
    """rowid of the first document (natural order) matching ``{field: value, ...}``, as replace_one finds it."""
    clauses, params = [], []
    for field, value in zip(fields, values, strict=True):
        k, p = kinds.get(field), sql_param(_mongo_values(value) if isinstance(value, datetime) else value)
        if k is None or k & NO_PUSHDOWN or p is None or not eq_exact(p[0], p[1], k):
            break
        if p[0] == "null":
            clauses.append(f"{field_expr(field)} IS NULL")
        else:
            clauses.append(f"{field_expr(field)} = ?")
            params.append(p[1])
    else:  # every key value has an exact indexed lookup
        row = conn.execute(
            f"SELECT rowid FROM {table} WHERE {' AND '.join(clauses)} ORDER BY rowid LIMIT 1", params
        ).fetchone()
        return None if row is None else row[0]
    criteria = _mongo_values(dict(zip(fields, values, strict=True)))
    where = Translator(kinds).where(criteria)
    select, names = select_list(criteria_tops(criteria))
    cursor = candidate_rows(conn, table, where, select)
    try:
        for row in cursor:
            if filter_applies(criteria, build_document(row, names)):
                return row[0]
    finally:
        cursor.close()
    return None


def chunks(items: list, size: int) -> Iterator[list]:
    """``items`` in consecutive lists of at most ``size`` (SQLite limits the parameters of a statement)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
