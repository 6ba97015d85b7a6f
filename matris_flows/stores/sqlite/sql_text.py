"""SQL text of the store's statements: quoted names and strings, JSON paths of dotted fields, indexed expressions.

Statements that compare or sort by a field use :func:`field_expr`, the very text of the expression
indexes, so that SQLite uses the indexes.
"""

from __future__ import annotations

from matris_flows.stores.sqlite.encoding import K_ARR, K_BOOL, K_DATE, K_NAN, K_NULL, K_NUM, K_OBJ, K_ODD, K_STR


def quote_id(name: str) -> str:
    """A table or index name as an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def sql_str(text: str) -> str:
    """A string as an SQL literal (for statements that cannot take parameters, e.g. PRAGMAs and index expressions)."""
    return "'" + text.replace("'", "''") + "'"


def json_path(field: str) -> str | None:
    """SQLite JSON path of a dotted field, or None when a part cannot be quoted in one."""
    parts = field.split(".")
    if any(not p or '"' in p or "\\" in p or any(ord(c) < 32 for c in p) for p in parts):
        return None
    return "$" + "".join(f'."{p}"' for p in parts)


def field_expr(field: str) -> str:
    """The indexed expression of a field; queries must use this exact text for SQLite to use the index."""
    return f"json_extract(doc, {sql_str(json_path(field))})"  # type: ignore[arg-type]


def kinds_case(field: str) -> str:
    """SQL expression giving the kind bit of ``field`` in a row (for fields indexed after data exists)."""
    parts = field.split(".")
    whens = []
    for i in range(1, len(parts)):
        parent = sql_str(json_path(".".join(parts[:i])))  # type: ignore[arg-type]
        whens.append(f"WHEN json_type(doc, {parent}) = 'array' THEN {K_ARR}")
        whens.append(f"WHEN json_type(doc, {parent}) NOT IN ('object') THEN {K_ODD}")
    path = json_path(field)
    p = sql_str(path)  # type: ignore[arg-type]
    date_key, nan_key = sql_str(path + '."$date"'), sql_str(path + '."$numberDouble"')  # type: ignore[operator]
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
