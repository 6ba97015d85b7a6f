"""Errors of the database file rather than of the code, and the integrity check of a collection at connect.

Disk full, I/O errors, a damaged file, no permission or a lock held past ``busy_timeout`` are
raised as :class:`DatabaseFileError`, which names the file, so that the CLI can say what to do
about it (free space, restore a backup) instead of showing a traceback.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from matris_flows.stores.sqlite.sql_text import sql_str

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

    ``kind`` is ``full``, ``io``, ``corrupt``, ``cantopen``, ``readonly``, ``busy`` or ``unwritten`` (a read-only
    store whose collection the campaign has not created yet); the
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
def file_errors(path: str) -> Iterator[None]:
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


def check_collection(conn: sqlite3.Connection, path: str, collection: str) -> None:
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
    problems = [row[0] for row in conn.execute(f"PRAGMA quick_check({sql_str(collection)})").fetchall()[:3]]
    if problems != ["ok"]:
        detail = "; ".join(" ".join(str(p).split()) for p in problems)
        raise DatabaseFileError(path, "corrupt", f"the file is damaged (quick_check of {collection}: {detail})")
    with _CHECKED_LOCK:
        _CHECKED.add(key)
