"""An embedded, persistent, indexed maggma ``Store`` in one SQLite file.

:class:`~matris_flows.stores.sqlite.store.SQLiteStore` replaces montydb's MontyStore as the no-server
store: montydb has no indexes, so each upsert and each query scans the whole collection.  Here
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
  "-Infinity"}`` (MongoDB extended JSON) and read back as floats; ``ObjectId``
  and ``bytes`` values as ``{"$oid": hex}`` and ``{"$binary": {"base64": ...,
  "subType": "00"}}``, read back as such; an ``Enum`` as its MSON dict (as
  MongoStore's ``jsanitize(allow_bson=True)`` stores it).  A document holding a
  literal one-key ``{"$date": str}``, ``{"$numberDouble": str}``, ``{"$oid": hex}``
  or ``{"$binary": {...}}`` dict therefore reads back as the value it encodes;
- every document read has an ``_id``: its own when it was written with one,
  else the row's ``rowid`` (an integer, unique in the collection and kept when an
  upsert replaces the document, as MongoDB keeps ``_id`` on ``replace_one``), which
  is not written into the JSON text;
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
- an ``_id`` the store gives is the row's integer id, not an ``ObjectId``; a
  document copied into another collection with it keeps it (MongoDB would refuse a
  duplicate ``_id``): drop ``_id`` before copying;
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
permission, a lock held past ``busy_timeout``) are raised as
:class:`~matris_flows.stores.sqlite.errors.DatabaseFileError`, which names the file; ``connect``
checks the collection's table and indexes (``PRAGMA quick_check``) so that a damaged file is
reported when it is opened, not as wrong results. New files are created mode 0600 (SQLite gives
the ``-wal`` and ``-shm`` files the same mode).

Layout (import each name from the module that defines it):

- :mod:`~matris_flows.stores.sqlite.store`: :class:`~matris_flows.stores.sqlite.store.SQLiteStore`
  (the maggma API, connections, transactions) and ``SQLiteCollection``;
- :mod:`~matris_flows.stores.sqlite.encoding`: documents to JSON text and back (``dumps``,
  ``loads``), the value kinds ``K_*`` tracked per indexed field;
- :mod:`~matris_flows.stores.sqlite.translate`: criteria to an SQL WHERE (exact or a superset);
- :mod:`~matris_flows.stores.sqlite.rows`: the SELECTs of a collection's table and the documents
  built from their rows;
- :mod:`~matris_flows.stores.sqlite.projection`, :mod:`~matris_flows.stores.sqlite.sorting`:
  ``properties`` and ``sort`` as mongomock applies them;
- :mod:`~matris_flows.stores.sqlite.catalog`: the tables of indexes and tracked kinds;
- :mod:`~matris_flows.stores.sqlite.sql_text`: quoting, JSON paths, indexed expressions;
- :mod:`~matris_flows.stores.sqlite.errors`: ``DatabaseFileError`` and the integrity check.
"""
