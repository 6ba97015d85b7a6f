"""Damage an SQLite database file for real: random bytes over one index's root page (a page no query reads)."""

import os
import sqlite3
from pathlib import Path


def overwrite_index_page(path: Path, index_name: str) -> None:
    """Write a page of random bytes over the root page of the index ``index_name`` in ``path``."""
    conn = sqlite3.connect(path)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        (page,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (index_name,)).fetchone()
    finally:
        conn.close()
    with open(path, "r+b") as handle:
        handle.seek((page - 1) * page_size)
        handle.write(os.urandom(page_size))
