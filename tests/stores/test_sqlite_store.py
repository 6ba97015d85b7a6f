"""SQLiteStore: same answers as maggma's MemoryStore (mongomock), upserts, persistence, readers, jobflow."""

import json
import math
import pickle
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from enum import Enum

import numpy as np
import pytest
from jobflow import Flow, JobStore, job, run_locally
from maggma.core import StoreError
from maggma.stores import MemoryStore
from pymongo.errors import DuplicateKeyError
from sqlite_damage import overwrite_index_page

from matris_flows.stores.sqlite.store import SQLiteStore

T0 = datetime(2024, 5, 1, 12, 0, 0, 250000)


class Color(Enum):
    RED = "red"


def _docs() -> list[dict]:
    """Documents with the awkward cases: null vs missing, arrays, nested paths, mixed types, dates, NaN."""
    return [
        {"task_id": 1, "chemsys": "Fe-O", "formula": "Fe2O3", "e": 0.1, "stable": False, "tags": ["a", "b"],
         "nested": {"x": 1, "y": "p"}, "lu": T0, "sites": [{"el": "Fe", "occ": 1.0}, {"el": "O", "occ": 0.5}],
         "mixed": 1},
        {"task_id": 2, "chemsys": "Li-O", "formula": "Li2O", "e": None, "stable": True, "tags": ["b"],
         "nested": {"x": 2}, "lu": T0 + timedelta(days=1), "sites": [{"el": "Li", "occ": 1.0}], "mixed": True},
        {"task_id": 3, "chemsys": "Fe-O", "formula": "FeO", "e": 0.0, "stable": True, "tags": [],
         "nested": None, "lu": T0 + timedelta(days=2), "mixed": "1"},
        {"task_id": 4, "chemsys": "Fe-Li-O", "formula": "LiFeO2", "stable": False, "nested": {"x": 1, "y": "q"},
         "mixed": None},
        {"task_id": 5, "chemsys": "Li-O", "formula": "Li2O2", "e": 0.3, "stable": False, "tags": "a",
         "lu": T0 - timedelta(days=3), "mixed": 1.5, "score": float("nan")},
        {"task_id": 6, "chemsys": "Fe-O", "formula": "Fe3O4", "e": 0.1, "stable": False, "tags": ["c"],
         "nested": {"x": 3, "y": "p"}, "lu": T0 + timedelta(hours=5), "mixed": T0},
        {"task_id": 7, "chemsys": "Li-P-O", "formula": "Li3PO4", "e": 0.05, "stable": True,
         "nested": {"x": 2, "y": None}, "lu": T0 + timedelta(days=1), "mixed": {"a": 1}},
        {"task_id": 8, "chemsys": "Li-P-O", "formula": "LiPO3", "e": 0.2, "stable": False, "tags": ["a"],
         "nested": {"x": None}, "mixed": -4, "arr_mixed": [1, 2]},
    ]


INDEXED = ["chemsys", "formula", "e", "stable", "lu", "nested.x", "nested.y", "mixed", "tags", "arr_mixed"]

QUERIES = [
    {},
    {"chemsys": "Fe-O"},
    {"chemsys": {"$in": ["Fe-O", "Li-O"]}},
    {"chemsys": {"$nin": ["Fe-O"]}},
    {"chemsys": {"$ne": "Fe-O"}},
    {"chemsys": {"$gt": "Fe-O"}},
    {"chemsys": {"$lte": "Li-O"}},
    {"e": None},
    {"e": {"$ne": None}},
    {"e": {"$gt": 0.05}},
    {"e": {"$gte": 0.1}},
    {"e": {"$lt": 0.2}},
    {"e": {"$lte": 0.1}},
    {"e": {"$gte": 0, "$lt": 0.2}},
    {"e": {"$exists": False}},
    {"e": {"$exists": True}},
    {"e": {"$in": [None, 0.3]}},
    {"e": {"$nin": [None, 0.1]}},
    {"e": {"$not": {"$gt": 0.05}}},
    {"e": {"$gte": None}},
    {"stable": True},
    {"stable": False},
    {"stable": {"$ne": True}},
    {"tags": "b"},
    {"tags": ["b"]},
    {"tags": {"$all": ["a", "b"]}},
    {"tags": {"$in": ["a"]}},
    {"tags": {"$nin": ["a"]}},
    {"tags": {"$size": 0}},
    {"sites": {"$elemMatch": {"el": "O", "occ": {"$lt": 1}}}},
    {"sites.el": "Fe"},
    {"sites.occ": {"$gte": 1}},
    {"nested.x": 1},
    {"nested.x": {"$gt": 1}},
    {"nested.x": None},
    {"nested.y": {"$exists": True}},
    {"nested.y": None},
    {"nested": None},
    {"formula": {"$regex": "^Li"}},
    {"formula": {"$regex": "o2$", "$options": "i"}},
    {"$or": [{"chemsys": "Li-O"}, {"e": {"$lt": 0.05}}]},
    {"$and": [{"chemsys": "Fe-O"}, {"stable": True}]},
    {"$nor": [{"chemsys": "Fe-O"}, {"e": None}]},
    {"$or": [{"formula": {"$regex": "P"}}, {"e": 0.0}]},
    {"$or": [{}, {"e": 0.0}]},
    {"$nor": [{"$comment": "all"}]},
    {"$and": [{"e": {"$gte": 0}}, {"$or": [{"stable": True}, {"chemsys": {"$in": ["Li-O"]}}]}], "nested.y": {"$ne": "p"}},
    {"lu": T0},
    {"lu": {"$gt": T0 + timedelta(days=1)}},
    {"lu": {"$lte": T0 + timedelta(hours=5)}},
    {"lu": {"$lt": T0 + timedelta(microseconds=1)}},
    {"mixed": 1},
    {"mixed": True},
    {"mixed": "1"},
    {"mixed": {"$gt": 0}},
    {"mixed": {"$gte": "0"}},
    {"mixed": None},
    {"mixed": {"$ne": 1}},
    {"mixed": {"$in": [1.5, "1"]}},
    {"mixed": {"$exists": True}},
    {"mixed": {"$lt": T0 + timedelta(days=9)}},
    {"mixed": 2},
    {"mixed": {"$lt": 1}},
    {"mixed": {"$nin": [1, None]}},
    {"arr_mixed": 2},
    {"score": {"$gt": 0}},
    {"task_id": {"$in": [2, 4, 6, 99]}},
]

SORTS = [
    None,
    {"e": 1},
    {"e": -1},
    {"chemsys": 1, "e": -1},
    {"stable": -1, "task_id": 1},
    {"lu": -1},
    {"nested.x": 1},
    {"tags": 1},
    {"mixed": 1},
    {"missing_field": -1},
]

PROJECTIONS = [None, ["chemsys"], ["nested.x", "e"], {"chemsys": 1, "e": 1}, {"tags": 0, "sites": 0}, ["sites.el"],
               {"_id": 0, "formula": 1}]


def _clean(doc: dict) -> dict:
    """Drop mongomock's _id and make NaN comparable."""
    return {k: ("NaN" if isinstance(v, float) and math.isnan(v) else v) for k, v in doc.items() if k != "_id"}


def _memory() -> MemoryStore:
    store = MemoryStore("conformance")
    store.connect()
    store.update(_docs())
    return store


def _sqlite(tmp_path, indexed: bool) -> SQLiteStore:
    store = SQLiteStore("conformance", str(tmp_path / "db" / "store.sqlite"))
    store.connect()
    if indexed:  # half the indexes before the data and half after: both ways of learning value kinds
        for field in INDEXED[::2]:
            assert store.ensure_index(field)
    store.update(_docs())
    if indexed:
        for field in INDEXED[1::2]:
            assert store.ensure_index(field)
    return store


@pytest.fixture(params=["indexed", "plain"])
def pair(request, tmp_path):
    """(MemoryStore, SQLiteStore) with the same documents; SQLite with or without indexes."""
    indexed = request.param == "indexed"
    mem, sql = _memory(), _sqlite(tmp_path, indexed)
    yield mem, sql
    sql.close()


def test_queries_match_memory_store(pair):
    mem, sql = pair
    for criteria in QUERIES:
        expected = [_clean(d) for d in mem.query(criteria)]
        assert [_clean(d) for d in sql.query(criteria)] == expected, criteria
        assert sql.count(criteria) == mem.count(criteria) == len(expected), criteria
    assert sql.count() == 8


def test_sql_translation_is_exact_or_a_superset(tmp_path):
    """The SQL WHERE alone (no Python matcher) gives exactly mongomock's matches when marked exact, else more."""
    from mongomock_ng.helpers import patch_datetime_awareness_in_document

    from matris_flows.stores.sqlite.translate import Translator

    mem, sql = _memory(), _sqlite(tmp_path, indexed=True)
    conn = sql._collection.connection
    kinds = sql._kinds(conn)
    exact = 0
    for criteria in QUERIES:
        where = Translator(kinds).where(patch_datetime_awareness_in_document(criteria))
        if where is None:
            continue
        rows = conn.execute(
            f"SELECT json_extract(doc, '$.task_id') FROM {sql._table}" + (f" WHERE {where.text}" if where.text else ""),
            where.params,
        )
        got, expected = {r[0] for r in rows}, {d["task_id"] for d in mem.query(criteria)}
        if where.exact:
            exact += 1
            assert got == expected, criteria
        else:
            assert got >= expected, criteria
    assert exact >= 38  # most of the table runs in SQL alone
    sql.close()


def test_indexed_query_uses_index_and_sql_limit(tmp_path, monkeypatch):
    statements = []
    original = SQLiteStore._open

    def traced(self, read_only):
        conn = original(self, read_only)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(SQLiteStore, "_open", traced)
    store = SQLiteStore("plan", str(tmp_path / "plan.sqlite"), key="candidate_id")
    store.connect()
    for field in ("chemsys", "e_above_hull"):
        store.ensure_index(field)
    store.update([{"candidate_id": f"c{i}", "chemsys": ["Fe-O", "Li-O"][i % 2], "e_above_hull": i / 100} for i in range(40)])
    statements.clear()
    docs = list(store.query({"chemsys": "Fe-O", "e_above_hull": {"$lte": 0.2}}, sort={"e_above_hull": 1}, limit=3))
    assert [d["candidate_id"] for d in docs] == ["c0", "c2", "c4"]
    select = next(s for s in statements if s.startswith("SELECT rowid"))
    assert "LIMIT 3" in select and "ORDER BY json_extract" in select
    plan = " ".join(str(row) for row in store._collection.connection.execute("EXPLAIN QUERY PLAN " + select))
    assert "USING INDEX" in plan and "SCAN" not in plan.replace("SCAN CONSTANT", ""), plan
    # the upsert looks its key up through the key's index
    statements.clear()
    store.update({"candidate_id": "c7", "chemsys": "Li-O", "e_above_hull": None})
    lookup = next(s for s in statements if s.startswith("SELECT rowid"))
    plan = " ".join(str(row) for row in store._collection.connection.execute("EXPLAIN QUERY PLAN " + lookup))
    assert "USING INDEX" in plan, plan
    assert store.count({"e_above_hull": None}) == 1


def test_sort_skip_limit_projection_match_memory_store(pair):
    mem, sql = pair
    criteria_set = [{}, {"chemsys": {"$in": ["Fe-O", "Li-P-O"]}}, {"e": {"$lte": 0.2}}, {"formula": {"$regex": "O"}}]
    for criteria in criteria_set:
        for sort in SORTS:
            for skip, limit in [(0, 0), (0, 2), (1, 3), (3, 0), (7, 5)]:
                kwargs = {"criteria": criteria, "sort": sort, "skip": skip, "limit": limit}
                expected = [_clean(d) for d in mem.query(**kwargs)]
                assert [_clean(d) for d in sql.query(**kwargs)] == expected, kwargs
    for properties in PROJECTIONS:
        for criteria in criteria_set:
            expected = [_clean(d) for d in mem.query(criteria, properties=properties, sort={"e": 1})]
            got = [_clean(d) for d in sql.query(criteria, properties=properties, sort={"e": 1})]
            assert got == expected, (criteria, properties)
    assert _clean(sql.query_one({"chemsys": "Fe-O"}, sort={"e": -1})) == _clean(
        mem.query_one({"chemsys": "Fe-O"}, sort={"e": -1})
    )
    assert sql.query_one({"chemsys": "nope"}) is None


def test_ties_keep_insertion_order(pair):
    _, sql = pair
    # e = 0.1 for task 1 and task 6; chemsys Fe-O for 1, 3, 6: ties in either direction stay in insertion order
    assert [d["task_id"] for d in sql.query({"e": 0.1}, sort={"e": -1})] == [1, 6]
    assert [d["task_id"] for d in sql.query({"chemsys": "Fe-O"}, sort={"chemsys": -1})] == [1, 3, 6]
    assert [d["task_id"] for d in sql.query(sort={"e": 1}, limit=3)] == [2, 4, 3]  # null and missing first


def test_distinct_groupby_remove_match_memory_store(pair):
    mem, sql = pair
    for field, criteria in [("chemsys", None), ("chemsys", {"stable": True}), ("e", None), ("tags", None),
                            ("nested.x", None), ("sites.el", {"e": {"$gte": 0}}), ("mixed", None), ("lu", None)]:
        expected = sorted(map(repr, mem.distinct(field, criteria)))
        assert sorted(map(repr, sql.distinct(field, criteria))) == expected, field
    assert sorted(sql.distinct("chemsys")) == ["Fe-Li-O", "Fe-O", "Li-O", "Li-P-O"]

    for keys, criteria, properties in [("chemsys", None, None), (["chemsys", "stable"], None, ["task_id"]),
                                       ("nested.x", {"nested.x": {"$ne": None}}, ["formula"]), ("stable", None, {"e": 1})]:
        expected = [(g, [_clean(d) for d in docs]) for g, docs in mem.groupby(keys, criteria, properties)]
        got = [(g, [_clean(d) for d in docs]) for g, docs in sql.groupby(keys, criteria, properties)]
        assert got == expected, keys
    groups = {g["chemsys"]: [d["task_id"] for d in docs] for g, docs in sql.groupby("chemsys", properties=["task_id"])}
    assert groups == {"Fe-Li-O": [4], "Fe-O": [1, 3, 6], "Li-O": [2, 5], "Li-P-O": [7, 8]}
    # MemoryStore's groupby raises on mixed None/int keys; SQLiteStore orders them as MongoDB does (null first)
    mixed = [(g, [d["task_id"] for d in docs]) for g, docs in sql.groupby("nested.x", properties=["task_id"])]
    assert mixed == [({"nested": {"x": None}}, [8]), ({"nested": {"x": 1}}, [1, 4]), ({"nested": {"x": 2}}, [2, 7]),
                     ({"nested": {"x": 3}}, [6])]

    for criteria in [{"chemsys": "Li-P-O"}, {"tags": "a"}, {"e": None}]:
        mem.remove_docs(criteria)
        sql.remove_docs(criteria)
        assert [_clean(d) for d in sql.query()] == [_clean(d) for d in mem.query()], criteria
    assert [d["task_id"] for d in sql.query()] == [3, 6]
    sql.remove_docs({})
    assert sql.count() == 0


def test_values_round_trip(tmp_path):
    store = SQLiteStore("values", str(tmp_path / "v.sqlite"))
    store.connect()
    aware = datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    doc = {"task_id": "x", "when": aware, "naive": datetime(2020, 2, 29), "nan": float("nan"), "inf": -math.inf,
           "deep": [{"t": T0}], "tuple": (1, 2), "unicode": "Fe₂O₃ ü", "big": 2**62, "none": None}
    store.update(doc)
    got = store.query_one({"task_id": "x"})
    # MongoDB (and MemoryStore) keep datetimes as naive UTC milliseconds
    assert got["when"] == datetime(2024, 1, 1, 10, 0, 0, 123000)
    assert got["naive"] == datetime(2020, 2, 29)
    assert got["deep"] == [{"t": datetime(2024, 5, 1, 12, 0, 0, 250000)}]
    assert math.isnan(got["nan"]) and got["inf"] == -math.inf
    assert got["tuple"] == [1, 2] and got["unicode"] == "Fe₂O₃ ü" and got["big"] == 2**62 and got["none"] is None
    assert store.count({"when": {"$gt": datetime(2024, 1, 1, 9, 59)}}) == 1
    assert store.count({"when": datetime(2024, 1, 1, 10, 0, 0, 123000)}) == 1
    mem = MemoryStore("values")
    mem.connect()
    mem.update(doc)
    assert _clean(mem.query_one()) == _clean(got)

    # documents copied from a MongoDB-like store keep their ObjectId _id, and can be found by it
    copied = list(mem.query())
    store.update(copied, key="task_id")
    assert store.count() == 1 and store.query_one()["_id"] == copied[0]["_id"]
    assert store.query_one({"_id": copied[0]["_id"]})["task_id"] == "x"
    # numpy scalars; Enums, bytes and ObjectIds as MongoStore stores them (jsanitize(allow_bson=True))
    odd = {"task_id": "np", "f": np.float64(0.5), "i": np.int64(3), "nan32": np.float32("nan"), "c": Color.RED,
           "arr": np.arange(3), "raw": b"\x00\xff", "ref": copied[0]["_id"]}
    store.update(dict(odd))
    mem.update(dict(odd))
    got = store.query_one({"task_id": "np"}, properties={"_id": 0, "task_id": 0})
    assert got["f"] == 0.5 and got["i"] == 3 and math.isnan(got["nan32"]) and got["arr"] == [0, 1, 2]
    expected = mem.query_one({"task_id": "np"}, properties={"_id": 0, "task_id": 0})
    assert got["c"] == expected["c"] and got["c"]["value"] == "red"
    assert got["raw"] == expected["raw"] == b"\x00\xff" and got["ref"] == expected["ref"] == copied[0]["_id"]
    assert store.count({"i": {"$gte": 3}}) == 1 and store.count({"ref": copied[0]["_id"]}) == 1
    store.close()


def test_every_document_has_an_id_as_in_mongodb(tmp_path):
    """A document written without _id gets the row's id: stable across upserts, and projections keep it."""
    store = SQLiteStore("ids", str(tmp_path / "ids.sqlite"), last_updated_field="last_updated")
    store.connect()
    store.update([{"task_id": "a", "x": 1}, {"task_id": "b", "x": 2}])
    first = {d["task_id"]: d["_id"] for d in store.query()}
    assert len(set(first.values())) == 2
    store.update({"task_id": "a", "x": 10})  # replaced, as replace_one keeps the _id
    assert store.query_one({"task_id": "a"})["_id"] == first["a"]
    # a projection to fields a document lacks is {"_id": ...}, not a falsy {} (MongoStore, MemoryStore)
    assert store.query_one({"task_id": "a"}, properties=["missing"]) == {"_id": first["a"]}
    assert store.query_one({"task_id": "a"}, properties={"_id": 0, "x": 1}) == {"x": 10}
    assert store.query_one({"_id": first["b"]})["task_id"] == "b" and store.count({"_id": first["b"]}) == 1
    # and so maggma's last_updated refuses a store whose documents lack the field, as it does for MongoStore
    with pytest.raises(StoreError, match="last_updated"):
        store.last_updated  # noqa: B018
    store.close()


@pytest.mark.parametrize("direction", [1, -1])
def test_a_nan_sorts_below_every_number_as_in_mongodb(tmp_path, direction):
    """``query --sort e_above_hull``: one NaN used to scramble the whole order."""
    store = SQLiteStore("nan_sort", str(tmp_path / "n.sqlite"))
    store.connect()
    values = [0.3, float("nan"), -0.1, 0.2, None, float("inf"), 0.0, float("nan"), -math.inf, 0.1]
    store.update([{"task_id": i, "e": v} for i, v in enumerate(values)])
    for limit in (0, 4):  # a full sort and the bounded heap of a limited one
        got = [d["task_id"] for d in store.query(sort={"e": direction}, limit=limit)]
        # MongoDB's order: null, then NaN, then the numbers (-inf ... inf); ties in natural order
        ascending = [4, 1, 7, 8, 2, 6, 9, 3, 0, 5]
        expected = ascending if direction > 0 else ascending[3:][::-1] + [1, 7, 4]
        assert got == (expected[:limit] if limit else expected)
    store.close()


def test_an_id_exclusion_alone_keeps_every_other_field(tmp_path):
    """``properties={"_id": 0}`` is every field but _id (it used to return the key field only)."""
    store = SQLiteStore("ids", str(tmp_path / "i.sqlite"))
    store.connect()
    store.update({"task_id": "a", "x": 1, "y": {"z": 2}})
    assert store.query_one(properties={"_id": 0}) == {"task_id": "a", "x": 1, "y": {"z": 2}}
    assert store.query_one(properties={"_id": 0, "x": 1}) == {"x": 1}
    store.close()


def test_non_string_keys_are_written_as_mongostore_writes_them(tmp_path):
    """A dict with integer keys (site indices, say) is stored with string keys, not refused with its whole batch."""
    docs = [{"task_id": "a", "sites": {0: "Li", 3: "Fe"}, "nested": [{1.5: True}]}, {"task_id": "b", "x": 1}]
    store = SQLiteStore("keys", str(tmp_path / "k.sqlite"))
    store.connect()
    store.update(docs)
    mem = MemoryStore("keys")  # maggma's MongoStore.update sanitises documents (jsanitize: keys become strings)
    mem.connect()
    mem.update(docs)
    assert store.count() == 2
    got = store.query_one({"task_id": "a"}, properties={"_id": 0})
    assert got == {"task_id": "a", "sites": {"0": "Li", "3": "Fe"}, "nested": [{"1.5": True}]}
    assert got == _clean(mem.query_one({"task_id": "a"}))
    store.close()


def test_threads_share_a_store(tmp_path):
    store = SQLiteStore("threads", str(tmp_path / "t.sqlite"))
    store.connect()
    store.ensure_index("worker")

    def work(worker: int) -> int:
        for b in range(10):
            store.update([{"task_id": f"{worker}-{b}-{i}", "worker": worker} for i in range(20)])
            assert store.count({"worker": worker}) == (b + 1) * 20
        return len(list(store.query({"worker": worker}, properties=["task_id"])))

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(work, range(4))) == [200] * 4
    assert store.count() == 800


def test_last_updated_and_newer_in(tmp_path):
    source = SQLiteStore("source", str(tmp_path / "lu.sqlite"))
    target = SQLiteStore("target", str(tmp_path / "lu.sqlite"))
    source.connect()
    target.connect()
    assert source.last_updated == datetime.min
    source.update([{"task_id": i, "last_updated": T0 + timedelta(minutes=i)} for i in range(5)])
    assert source.last_updated == datetime(2024, 5, 1, 12, 4, 0, 250000)
    target.update([{"task_id": i, "last_updated": T0 + timedelta(minutes=2 * i)} for i in range(5)])
    assert sorted(source.newer_in(target)) == [3, 4]  # newer than source.last_updated (minute 4)
    assert sorted(source.newer_in(target, exhaustive=True)) == [1, 2, 3, 4]


def test_upsert_semantics(tmp_path):
    store = SQLiteStore("upsert", str(tmp_path / "u.sqlite"), key="task_id")
    store.connect()
    store.update([{"task_id": 1, "a": 1}, {"task_id": 2, "a": 2}, {"task_id": 3, "a": 3}])
    store.update({"task_id": 2, "b": 20})  # replaces the whole document, keeps its place
    assert [_clean(d) for d in store.query()] == [{"task_id": 1, "a": 1}, {"task_id": 2, "b": 20}, {"task_id": 3, "a": 3}]
    store.update([{"task_id": 4, "v": 1}, {"task_id": 4, "v": 2}])  # within one batch: the last one wins
    assert _clean(store.query_one({"task_id": 4})) == {"task_id": 4, "v": 2} and store.count() == 4

    # compound key, as jobflow's JobStore uses
    store.update([{"uuid": "u", "index": 1, "out": 1}, {"uuid": "u", "index": 2, "out": 2}], key=["uuid", "index"])
    store.update({"uuid": "u", "index": 2, "out": 22}, key=["uuid", "index"])
    assert [d["out"] for d in store.query({"uuid": "u"}, sort={"index": 1})] == [1, 22]

    # a key other than the store's key
    store.update([{"blob_uuid": "b1", "data": [1]}, {"blob_uuid": "b1", "data": [2]}], key="blob_uuid")
    assert [_clean(d) for d in store.query({"blob_uuid": "b1"})] == [{"blob_uuid": "b1", "data": [2]}]
    assert store.count() == 7
    with pytest.raises(KeyError):
        store.update({"no_key": 1})

    # a key whose stored value is an array: matched as MongoDB matches it (array contains value)
    store.update({"task_id": [10, 11], "a": "array"})
    store.update({"task_id": 11, "a": "replaced"})
    assert store.count({"a": "replaced"}) == 1 and store.count({"a": "array"}) == 0
    assert store.query_one({"a": "replaced"})["task_id"] == 11


def test_unique_index(tmp_path):
    store = SQLiteStore("unique", str(tmp_path / "u.sqlite"), key="task_id")
    store.connect()
    assert store.ensure_index("candidate_id", unique=True)
    assert store.ensure_index("candidate_id", unique=True)  # already there
    store.update([{"task_id": 1, "candidate_id": "c1"}, {"task_id": 2, "candidate_id": "c2"}])
    with pytest.raises(DuplicateKeyError, match="candidate_id"):
        store.update([{"task_id": 3, "candidate_id": "c3"}, {"task_id": 4, "candidate_id": "c1"}])
    assert store.distinct("task_id") == [1, 2]  # the failed batch left nothing behind
    store.update({"task_id": 1, "candidate_id": "c1", "v": 2})  # replacing the holder of c1 is fine

    dup = SQLiteStore("dups", str(tmp_path / "u.sqlite"))
    dup.connect()
    dup.update([{"task_id": 1, "f": "x"}, {"task_id": 2, "f": "x"}])
    assert dup.ensure_index("f", unique=True) is False
    assert dup.ensure_index("f") is True


def test_persistence_and_shared_file(tmp_path):
    path = str(tmp_path / "nested" / "dir" / "p.sqlite")
    first = SQLiteStore("one", path)
    first.connect()
    first.ensure_index("chemsys")
    first.update(_docs())
    other = SQLiteStore("two", path, key="k")
    other.connect()
    other.update({"k": 1})
    first.close()
    other.close()

    reopened = SQLiteStore("one", path)
    reopened.connect()
    assert reopened.count() == 8 and reopened.count({"chemsys": "Fe-O"}) == 3
    second = SQLiteStore("one", path)  # another store on the same collection and file
    second.connect()
    second.update({"task_id": 9, "chemsys": "Fe-O"})
    assert reopened.count({"chemsys": "Fe-O"}) == 4
    assert [d["k"] for d in SQLiteStore("two", path).__enter__().query()] == [1]
    reopened.connect(force_reset=True)
    assert reopened.count() == 9
    with pytest.raises(Exception, match="connect"):
        SQLiteStore("one", path).count()


def test_msonable_round_trip(tmp_path):
    store = SQLiteStore("coll", str(tmp_path / "m.sqlite"), key="candidate_id", last_updated_field="lu", busy_timeout=5)
    store.connect()
    store.update({"candidate_id": "c", "v": 1})
    d = store.as_dict()
    assert json.loads(json.dumps(d)) == d  # plain data, no connection
    assert {k: d[k] for k in ("collection_name", "database_path", "key", "last_updated_field", "busy_timeout")} == {
        "collection_name": "coll", "database_path": str(tmp_path / "m.sqlite"), "key": "candidate_id",
        "last_updated_field": "lu", "busy_timeout": 5,
    }
    clone = SQLiteStore.from_dict(d)
    assert clone == store and hash(clone) == hash(store) and clone.key == "candidate_id"
    clone.connect()
    assert _clean(clone.query_one({"candidate_id": "c"})) == {"candidate_id": "c", "v": 1}
    unpickled = pickle.loads(pickle.dumps(store))
    unpickled.connect()
    assert unpickled.count() == 1
    assert store != SQLiteStore("other", str(tmp_path / "m.sqlite"))


def test_iterating_while_updating(tmp_path):
    store = SQLiteStore("iter", str(tmp_path / "i.sqlite"))
    store.connect()
    store.ensure_index("v")
    store.update([{"task_id": i, "v": i} for i in range(50)])
    seen = []
    for doc in store.query(sort={"v": 1}):  # the query reads a snapshot taken when it started
        seen.append(doc["task_id"])
        store.update({"task_id": doc["task_id"], "v": doc["v"] + 1000})
        store.update({"task_id": 1000 + doc["task_id"], "v": -1})
    assert seen == list(range(50))
    assert store.count() == 100 and store.count({"v": {"$gte": 1000}}) == 50


READER = textwrap.dedent(
    """
    import sys, time
    from matris_flows.stores.sqlite.store import SQLiteStore
    path, total, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = SQLiteStore("stream", path)
    store.connect()
    print("ready", flush=True)
    last, deadline = -1, time.monotonic() + 120
    while last != total and time.monotonic() < deadline:
        n = store.count()
        docs = list(store.query({"batch": {"$gte": 0}}, properties=["batch"]))
        if n != last:
            print(n, len(docs), flush=True)
            last = n
    """
)


def test_reader_in_another_process_sees_whole_batches(tmp_path):
    path, batches, batch = str(tmp_path / "r.sqlite"), 8, 150
    writer = SQLiteStore("stream", path)
    writer.connect()
    writer.ensure_index("batch")
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, path, str(batches * batch), str(batch)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert reader.stdout.readline().strip() == "ready"
        seen = []
        for b in range(batches):
            writer.update([{"task_id": b * batch + i, "batch": b, "pad": "x" * 500} for i in range(batch)])
            # wait until the reader has seen this batch; every count it reports must be whole batches
            while not seen or seen[-1][0] < (b + 1) * batch:
                line = reader.stdout.readline()
                assert line, reader.stderr.read()
                seen.append(tuple(int(x) for x in line.split()))
        assert reader.wait(timeout=60) == 0
    finally:
        reader.kill()
    counts = [n for n, _ in seen]
    assert all(n % batch == 0 and n == m for n, m in seen), seen
    assert counts == sorted(counts) and counts[-1] == batches * batch
    assert writer.count() == batches * batch


@job(data="trajectory")
def _relax(x: float) -> dict:
    return {"energy": -x, "trajectory": {"frames": [x, x / 2, x / 4], "when": T0}}


@job
def _total(a: float, b: float) -> float:
    return a + b


def test_jobflow_job_store(tmp_path):
    path = str(tmp_path / "jobs.sqlite")
    store = JobStore(SQLiteStore("outputs", path), additional_stores={"data": SQLiteStore("outputs_data", path)})
    first, second = _relax(2.0), _relax(4.0)
    total = _total(first.output["energy"], second.output["energy"])
    responses = run_locally(Flow([first, second, total]), store=store, create_folders=False, log=False)
    assert responses[total.uuid][1].output == -6.0

    store.connect()
    assert store.get_output(total.uuid) == -6.0
    output = store.get_output(first.uuid, load=True)
    assert output == {"energy": -2.0, "trajectory": {"frames": [2.0, 1.0, 0.5], "when": T0}}
    raw = store.query_one({"uuid": first.uuid}, load=False)
    assert set(raw["output"]["trajectory"]) >= {"blob_uuid", "store"}  # the blob lives in the data store
    data = store.additional_stores["data"]
    assert data.count() == 2 and data.count({"job_uuid": first.uuid}) == 1

    # a second output of the same job (index 2): query_one sorted on the index returns the newest
    doc = dict(store.query_one({"uuid": first.uuid, "index": 1}, load=False))
    doc.update(index=2, output={"energy": -2.5, "trajectory": {"frames": [0.0]}})
    store.update(doc, save={"data": "trajectory"})
    assert store.query_one({"uuid": first.uuid}, properties=["index"], sort={"index": -1})["index"] == 2
    assert store.get_output(first.uuid, which="last", load=True)["trajectory"] == {"frames": [0.0]}
    assert store.get_output(first.uuid, which="first", load=True)["energy"] == -2.0
    assert store.count() == 4 and data.count() == 3
    completed = store.query_one({"uuid": total.uuid}, properties=["completed_at"])["completed_at"]
    assert datetime.fromisoformat(completed).year >= 2024
    store.close()


def test_a_full_database_is_a_database_file_error_and_the_store_stays_usable(tmp_path):
    """SQLITE_FULL for real (the file may not grow): the batch is rolled back, the error names the file,
    and the next transaction works once there is room again."""
    import sqlite3

    from matris_flows.stores.sqlite.errors import DatabaseFileError

    path = tmp_path / "full.sqlite"
    store = SQLiteStore("docs", str(path))
    store.connect()
    store.update({"task_id": 0, "x": "a"})
    writer = store._collection.connection
    writer.execute(f"PRAGMA max_page_count={writer.execute('PRAGMA page_count').fetchone()[0] + 1}")
    with pytest.raises(DatabaseFileError) as raised:
        store.update([{"task_id": i, "x": "y" * 10_000} for i in range(1, 20)])
    assert raised.value.kind == "full" and str(path) in str(raised.value)
    assert isinstance(raised.value, sqlite3.DatabaseError), "handlers of SQLite errors still catch it"
    assert pickle.loads(pickle.dumps(raised.value)).path == str(path)
    assert store.count() == 1, "the batch was rolled back as a whole"
    writer.execute("PRAGMA max_page_count=1073741823")
    store.update({"task_id": 1, "x": "room again"})
    assert store.count() == 2
    store.close()


def test_a_damaged_collection_is_found_when_a_store_opens_it(tmp_path):
    """quick_check of the collection's table and indexes at connect: an index page no query reads is damaged."""

    from matris_flows.stores.sqlite.errors import DatabaseFileError

    path = tmp_path / "damaged.sqlite"
    store = SQLiteStore("docs", str(path))
    store.connect()
    store.ensure_index("chemsys")
    store.update([{"task_id": i, "chemsys": "Fe-O"} for i in range(50)])
    other = SQLiteStore("other", str(path))
    other.connect()
    other.update({"task_id": 1})
    store.close()
    other.close()
    overwrite_index_page(path, "docs::chemsys")

    with pytest.raises(DatabaseFileError, match="quick_check of docs") as raised:
        SQLiteStore("docs", str(path)).connect()
    assert raised.value.kind == "corrupt" and str(path) in str(raised.value)
    intact = SQLiteStore("other", str(path))  # only the collection a store opens is checked
    intact.connect()
    assert intact.count() == 1
    intact.close()
