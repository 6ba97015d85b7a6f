"""The store's own tables: the indexes of each collection and the kinds of value its indexed fields have held.

``_sqlitestore_indexes`` lists the expression indexes of each collection (so that ``update``
knows whether its key is indexed, and a broken unique index can be named);
``_sqlitestore_fields`` the tracked kinds (bits of :mod:`matris_flows.stores.sqlite.encoding`),
which decide whether a query translates to SQL exactly. The functions run their statements
on the caller's connection, inside its transaction.
"""

from __future__ import annotations

import sqlite3

import orjson
from pydash import get
from pymongo.errors import DuplicateKeyError

from matris_flows.stores.sqlite.sql_text import field_expr, kinds_case, quote_id

META_FIELDS = "_sqlitestore_fields"
META_INDEXES = "_sqlitestore_indexes"


def create_catalog_tables(conn: sqlite3.Connection) -> None:
    """Create the two tables of the catalog, unless they exist."""
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {META_FIELDS} (collection TEXT NOT NULL, path TEXT NOT NULL,"
        " kinds INTEGER NOT NULL, PRIMARY KEY (collection, path)) WITHOUT ROWID"
    )
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {META_INDEXES} (collection TEXT NOT NULL, name TEXT NOT NULL,"
        " fields TEXT NOT NULL, is_unique INTEGER NOT NULL, PRIMARY KEY (collection, name)) WITHOUT ROWID"
    )


def read_kinds(conn: sqlite3.Connection, collection: str) -> dict[str, int]:
    """The tracked fields of a collection and the kinds of value each has held."""
    rows = conn.execute(f"SELECT path, kinds FROM {META_FIELDS} WHERE collection = ?", (collection,))
    return dict(rows.fetchall())


def read_indexes(conn: sqlite3.Connection, collection: str) -> dict[str, tuple[tuple[str, ...], bool]]:
    """The indexes of a collection: name -> (fields, unique)."""
    rows = conn.execute(
        f"SELECT name, fields, is_unique FROM {META_INDEXES} WHERE collection = ?", (collection,)
    )
    return {name: (tuple(orjson.loads(fields)), bool(unique)) for name, fields, unique in rows}


def create_index(
    conn: sqlite3.Connection, collection: str, table: str, fields: tuple[str, ...], unique: bool, kinds: dict[str, int]
) -> None:
    """Create an index inside the caller's write transaction and start tracking its fields' kinds (added to ``kinds``)."""
    name = f"{collection}::{'+'.join(fields)}" + ("::unique" if unique else "")
    columns = ", ".join(field_expr(f) for f in fields)
    conn.execute(f"CREATE {'UNIQUE ' if unique else ''}INDEX IF NOT EXISTS {quote_id(name)} ON {table} ({columns})")
    for field in fields:
        if field not in kinds:
            found = 0
            for (kind,) in conn.execute(f"SELECT DISTINCT {kinds_case(field)} FROM {table}"):
                found |= kind
            kinds[field] = found
            conn.execute(
                f"INSERT OR REPLACE INTO {META_FIELDS} (collection, path, kinds) VALUES (?, ?, ?)",
                (collection, field, found),
            )
    conn.execute(
        f"INSERT OR REPLACE INTO {META_INDEXES} (collection, name, fields, is_unique) VALUES (?, ?, ?, ?)",
        (collection, name, orjson.dumps(list(fields)).decode(), int(unique)),
    )


def save_kinds(conn: sqlite3.Connection, collection: str, kinds: dict[str, int]) -> None:
    """Record the kinds of the tracked fields in ``kinds`` (fields already tracked only)."""
    conn.executemany(
        f"UPDATE {META_FIELDS} SET kinds = ? WHERE collection = ? AND path = ?",
        [(k, collection, path) for path, k in kinds.items()],
    )


def duplicate_key_error(
    indexes: dict[str, tuple[tuple[str, ...], bool]], store_name: str, err: sqlite3.IntegrityError, doc: dict
) -> Exception:
    """pymongo's ``DuplicateKeyError`` for a document that broke a unique index, naming the index when SQLite did."""
    message = str(err)
    for name, (fields, _) in indexes.items():
        if name in message:
            dup = {f: get(doc, f) for f in fields}
            return DuplicateKeyError(
                f"E11000 duplicate key error collection: {store_name} index: {'+'.join(fields)} dup key: {dup}", 11000
            )
    return DuplicateKeyError(f"E11000 duplicate key error collection: {store_name}: {message}", 11000)
