"""The embedded, persistent, indexed maggma ``Store``: :class:`SQLiteStore`, one collection of a SQLite file.

The store owns the connections (one writer, pooled readers, each query in its own snapshot) and
the maggma API; how documents are stored, how criteria become SQL and which rows a query reads
are the other modules of :mod:`matris_flows.stores.sqlite`, whose docstring describes the storage
format, the query semantics and the one-writer-process rule.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from itertools import groupby as _itergroupby
from pathlib import Path
from typing import Any
from urllib.parse import quote

from maggma.core import Sort, Store, StoreError
from mongomock_ng.filtering import NOTHING, filter_applies, iter_key_candidates
from mongomock_ng.helpers import hashdict
from mongomock_ng.helpers import patch_datetime_awareness_in_document as _mongo_values
from pydash import get, has, set_

from matris_flows.stores.sqlite.catalog import (
    META_FIELDS,
    META_INDEXES,
    create_catalog_tables,
    create_index,
    duplicate_key_error,
    read_indexes,
    read_kinds,
    save_kinds,
)
from matris_flows.stores.sqlite.encoding import K_NULL, K_NUM, K_STR, dumps, path_kind
from matris_flows.stores.sqlite.errors import DatabaseFileError, check_collection, file_errors
from matris_flows.stores.sqlite.projection import project, projection, projection_tops
from matris_flows.stores.sqlite.rows import (
    CHUNK,
    build_document,
    candidate_rows,
    chunks,
    distinct_sql,
    find_rowid,
    order_sql,
    query_sorted_in_python,
    select_list,
)
from matris_flows.stores.sqlite.sorting import BsonTuple, normalize_sort
from matris_flows.stores.sqlite.sql_text import json_path, quote_id
from matris_flows.stores.sqlite.translate import Sql, Translator, criteria_tops

_MAX_POOLED_READERS = 4


@dataclass(frozen=True)
class SQLiteCollection:
    """What ``SQLiteStore._collection`` returns: the writer connection and the table of the collection."""

    connection: sqlite3.Connection
    table: str
    database_path: str



class SQLiteStore(Store):
    """A maggma Store holding one collection of a SQLite database file, with real indexes.

    Several stores (collections) may share one database file; each opens its own
    connections on :meth:`connect`.  See :mod:`matris_flows.stores.sqlite` for the storage
    format, the query semantics and the one-writer-process rule.
    """

    def __init__(
        self,
        collection_name: str,
        database_path: str,
        key: str = "task_id",
        last_updated_field: str = "last_updated",
        busy_timeout: float = 60.0,
        read_only: bool = False,
        **kwargs: Any,
    ):
        """
        Args:
            collection_name: Name of the collection (a table of the database file).
            database_path: Path of the SQLite file; missing parent directories are created on connect.
            key: Main key field; ``update`` upserts on it unless given another key.
            last_updated_field: Field with the date/time of each document's last update.
            busy_timeout: Seconds to wait for another process's write lock before failing.
            read_only: Open the file read-only (a viewer beside the writing driver): nothing is created,
                switched or indexed on connect, and ``update``, ``remove_docs`` and a missing index raise.
            **kwargs: Passed to maggma's ``Store`` (``last_updated_type``, ``validator``).
        """
        if str(database_path) == ":memory:" or str(database_path).startswith("file:"):
            raise ValueError("SQLiteStore needs a file path (use maggma's MemoryStore for an in-memory store)")
        if collection_name.startswith(("sqlite_", "_sqlitestore_")):
            raise ValueError(f"collection name {collection_name!r} is reserved by SQLite or SQLiteStore")
        self.collection_name = collection_name
        self.database_path = str(database_path)
        self.busy_timeout = busy_timeout
        self.read_only = read_only
        self.kwargs = kwargs
        self._table = quote_id(collection_name)
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
        if self.read_only:
            # mode=ro: a missing file is an error, not a new empty database; nothing can be written
            target, uri, read_only = f"file:{quote(os.path.abspath(self.database_path))}?mode=ro", True, True
        else:
            target, uri = self.database_path, False
            if not os.path.exists(self.database_path):
                # a new file is the owner's only; SQLite gives its -wal and -shm files the same mode
                with suppress(OSError):  # e.g. created meanwhile, or a folder without write permission (sqlite3 says)
                    os.close(os.open(self.database_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(
            target,
            uri=uri,
            timeout=self.busy_timeout,
            isolation_level=None,  # transactions are explicit
            check_same_thread=False,  # guarded by self._lock / the reader pool
            cached_statements=256,
        )
        try:
            conn.execute("PRAGMA cache_size=-4000")  # 4 MB a connection: page caches of every pooled connection add up
            if read_only:
                conn.execute("PRAGMA query_only=1")
            else:
                conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable against process crashes, consistent always
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
            if not self.read_only:
                Path(self.database_path).parent.mkdir(parents=True, exist_ok=True)
            with file_errors(self.database_path):
                conn = self._open(read_only=False)
                try:
                    if self.read_only:
                        self._check(conn)
                    else:
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
            check_collection(conn, self.database_path, self.collection_name)
        if not {self.collection_name, META_FIELDS, META_INDEXES} <= names:
            # checked with a read first, so that a reader process never waits for the writer's lock
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(f"CREATE TABLE IF NOT EXISTS {self._table} (rowid INTEGER PRIMARY KEY, doc TEXT NOT NULL)")
                create_catalog_tables(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # a failed COMMIT (disk full) may have rolled back already
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

    def _check(self, conn: sqlite3.Connection) -> None:
        """Check the collection's table of a read-only store; DatabaseFileError if the file has none."""
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {self.collection_name, META_FIELDS, META_INDEXES} <= names:
            raise DatabaseFileError(self.database_path, "unwritten", f"no collection {self.collection_name!r} in it yet")
        check_collection(conn, self.database_path, self.collection_name)

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
            with file_errors(self.database_path):
                conn = self._open(read_only=True)
        healthy = False
        try:
            with file_errors(self.database_path):
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
            if self.read_only:
                raise StoreError(f"{self.name} is open read-only")
            conn = self._writer
            with file_errors(self.database_path):
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
        return read_kinds(conn, self.collection_name)

    def _indexes(self, conn: sqlite3.Connection) -> dict[str, tuple[tuple[str, ...], bool]]:
        return read_indexes(conn, self.collection_name)

    # -- reading ---------------------------------------------------------------------

    def _plan(self, conn: sqlite3.Connection, criteria: dict) -> tuple[Sql | None, dict[str, int]]:
        kinds = self._kinds(conn)
        return Translator(kinds).where(criteria), kinds

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
            select, names = select_list(criteria_tops(criteria))
            cursor = candidate_rows(conn, self._table, where, select)
            try:
                return sum(1 for row in cursor if filter_applies(criteria, build_document(row, names)))
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
        """Query the Store for a set of documents (each with an ``_id``: its own, else the row id).

        Args:
            criteria: PyMongo filter for documents to search in.
            properties: Fields to return (list, or projection dict); dotted paths allowed.
            sort: Dictionary of sort order for fields: 1 (or Sort.Ascending) / -1 (Sort.Descending).
            skip: Number of documents to skip.
            limit: Maximum number of documents returned (0: no limit).
        """
        criteria = _mongo_values(criteria or {})  # as mongomock: query datetimes to naive UTC milliseconds
        sort_spec = normalize_sort(sort)
        fields, simple = projection(properties)
        skip, limit = max(int(skip or 0), 0), max(int(limit or 0), 0)
        ctops, ptops = criteria_tops(criteria), projection_tops(fields)
        tops = None if ctops is None or ptops is None else ctops | ptops
        with self._reading() as conn:
            where, kinds = self._plan(conn, criteria)
            exact = where is not None and where.exact
            order = order_sql(sort_spec, kinds) if sort_spec else "rowid"
            if order is None:
                stops = {f.split(".")[0] for f, _ in sort_spec}
                yield from query_sorted_in_python(
                    conn, self._table, criteria, where, fields, simple, sort_spec, skip, limit, None if tops is None else tops | stops
                )
                return
            select, names = select_list(tops)
            if exact and (skip or limit):
                cursor = candidate_rows(conn, self._table, where, select, order, " LIMIT ? OFFSET ?", (limit or -1, skip))
                skip = 0
            else:
                cursor = candidate_rows(conn, self._table, where, select, order)
            try:
                returned = 0
                for row in cursor:
                    doc = build_document(row, names)
                    if not filter_applies(criteria, doc):
                        continue
                    if skip:
                        skip -= 1
                        continue
                    yield project(doc, fields, simple)
                    returned += 1
                    if limit and returned >= limit:
                        return
            finally:
                cursor.close()

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
                return distinct_sql(conn, self._table, field, where, k)
            ctops = criteria_tops(criteria)
            select, names = select_list(None if ctops is None else ctops | {field.split(".")[0]})
            seen: dict[Any, Any] = {}
            unhashable: list = []
            cursor = candidate_rows(conn, self._table, where, select)
            try:
                for row in cursor:
                    doc = build_document(row, names)
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

        data.sort(key=lambda doc: BsonTuple(grouping_keys(doc)))
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
        if not isinstance(key, str) or json_path(key) is None:
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
                    create_index(conn, self.collection_name, self._table, fields, unique, self._kinds(conn))
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
            rows.append((d, tuple(d[k] for k in fields), dumps(d)))  # KeyError on a missing key, as MongoStore
        if not rows:
            return
        indexable = all(json_path(f) is not None for f in fields)
        with self._writing() as conn:
            kinds = self._kinds(conn)
            if indexable and fields not in self._key_indexes:
                if not any(f[: len(fields)] == fields for f, _ in self._indexes(conn).values()):
                    create_index(conn, self.collection_name, self._table, fields, False, kinds)
                self._key_indexes.add(fields)
            before = dict(kinds)
            tracked = [(path, path.split(".")) for path in kinds]
            insert = f"INSERT INTO {self._table} (doc) VALUES (?)"
            replace = f"UPDATE {self._table} SET doc = ? WHERE rowid = ?"
            for d, values, text in rows:
                for path, parts in tracked:
                    kinds[path] |= path_kind(d, parts)
                rowid = find_rowid(conn, self._table, fields, values, kinds)
                try:
                    if rowid is None:
                        conn.execute(insert, (text,))
                    else:
                        conn.execute(replace, (text, rowid))
                except sqlite3.IntegrityError as err:
                    raise duplicate_key_error(self._indexes(conn), self.name, err, d) from err
            if kinds != before:
                save_kinds(conn, self.collection_name, {p: k for p, k in kinds.items() if k != before.get(p)})

    def remove_docs(self, criteria: dict) -> None:
        """Remove the documents matching the criteria (all of them for ``{}``).

        Args:
            criteria: PyMongo filter of the documents to remove.
        """
        criteria = _mongo_values(criteria or {})
        with self._writing() as conn:
            kinds = self._kinds(conn)
            where = Translator(kinds).where(criteria)
            if where is not None and where.exact:
                conn.execute(f"DELETE FROM {self._table}" + (f" WHERE {where.text}" if where.text else ""), where.params)
            else:
                select, names = select_list(criteria_tops(criteria))
                doomed = [row[0] for row in candidate_rows(conn, self._table, where, select)
                          if filter_applies(criteria, build_document(row, names))]
                for chunk in chunks(doomed, CHUNK):
                    conn.execute(f"DELETE FROM {self._table} WHERE rowid IN ({', '.join('?' * len(chunk))})", chunk)
            if conn.execute(f"SELECT 1 FROM {self._table} LIMIT 1").fetchone() is None:
                # empty again: forget the kinds seen, so pushdown is back to full strength
                save_kinds(conn, self.collection_name, dict.fromkeys(kinds, 0))

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
