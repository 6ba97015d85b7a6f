"""Embedded store backends: SQLiteStore against maggma's MontyStore (montydb, sqlite storage).

For each backend and collection size N, with ~4 KB candidate-like documents
(candidate_id, chemsys, formula, e_above_hull float or None, is_stable, a
structure-like nested dict) and the candidate indexes of ``make_candidates_store``:

- upsert: ``Store.update`` in batches of 200 documents (half new ones, half
  replacing existing documents with a new evaluation: e_above_hull, is_stable,
  energy, last_updated) when the collection already holds N documents;
- query: ``{"chemsys": X, "e_above_hull": {"$lte": 0.05}}`` sorted by
  e_above_hull (about N/2000 documents returned: ~50 at 100k), median of 5;
- count: ``count`` of the same criteria, median of 5.

montydb has no indexes: each upsert scans the collection, so it only runs up to
``--monty-max`` documents (default 1000; a 200-document batch at 10k takes about a
minute).  The collections are filled with ``insert_many`` on montydb (its upserts
would take hours) and with ``update`` on SQLiteStore; only the timed part uses
``update``.

MontyStore needs montydb, which matris-flows no longer depends on: ``pip install -e ".[bench]"``
(``--monty-max 0`` runs SQLiteStore alone).

Run: ``python benchmarks/store_backends.py [--sizes 1000,10000,100000] [--monty-max 1000]``.
Last line: ``store_upsert_ms_per_doc_at_100k: <value>`` (SQLiteStore, batches of 200, 100k documents).
"""

import argparse
import importlib.util
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # shared CPU

import orjson
from maggma.stores import MontyStore

from matris_flows.stores.backends import CANDIDATE_INDEXES
from matris_flows.stores.sqlite.store import SQLiteStore

BATCH = 200
N_CHEMSYS = 200
ELEMENTS = ["Li", "Na", "Mg", "Al", "Si", "P", "S", "K", "Ca", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "O", "N"]
T0 = datetime(2025, 1, 1)


def _chemsys_pool() -> list[str]:
    rng = random.Random(1)
    pool: set[str] = set()
    while len(pool) < N_CHEMSYS:
        pool.add("-".join(sorted(rng.sample(ELEMENTS, rng.choice([2, 3, 4])))))
    return sorted(pool)


CHEMSYS = _chemsys_pool()
QUERY_CHEMSYS = CHEMSYS[7]


def candidate(i: int, version: int = 0) -> dict:
    """A deterministic ~4 KB candidate document; ``version`` changes its evaluation, not its identity."""
    rng = random.Random(i * 7919)
    evaluation = random.Random(f"evaluation-{i}-{version}")
    chemsys = CHEMSYS[rng.randrange(N_CHEMSYS)]
    elements = chemsys.split("-")
    e_above_hull = None if evaluation.random() < 0.05 else round(evaluation.uniform(0.0, 0.5), 6)
    sites = [
        {
            "species": [{"element": rng.choice(elements), "occu": 1}],
            "abc": [rng.random() for _ in range(3)],
            "xyz": [rng.random() * 6 for _ in range(3)],
            "label": rng.choice(elements),
            "properties": {"magmom": round(rng.uniform(-3, 3), 4)},
        }
        for _ in range(16)
    ]
    return {
        "candidate_id": f"cand-{i:08d}",
        "campaign": "bench",
        "chemsys": chemsys,
        "formula": "".join(f"{el}{rng.randint(1, 4)}" for el in elements),
        "e_above_hull": e_above_hull,
        "is_stable": e_above_hull is not None and e_above_hull <= 1e-3,
        "energy_per_atom": evaluation.uniform(-9, -2),
        "last_updated": T0 + timedelta(seconds=i, days=version),
        "structure": {
            "@module": "pymatgen.core.structure",
            "@class": "Structure",
            "charge": 0,
            "lattice": {"matrix": [[rng.uniform(3, 8) if r == c else rng.random() for c in range(3)] for r in range(3)],
                        "pbc": [True, True, True]},
            "sites": sites,
        },
        "relaxation": {"status": "converged", "steps": evaluation.randint(10, 300), "version": version},
    }


def _make_store(backend: str, directory: Path):
    if backend == "SQLiteStore":
        store = SQLiteStore("candidates", str(directory / "store.sqlite"), key="candidate_id")
    else:
        store = MontyStore("candidates", database_path=str(directory / "monty"), storage="sqlite", key="candidate_id")
        (directory / "monty").mkdir(exist_ok=True)
    store.connect()
    for field in CANDIDATE_INDEXES:
        try:
            store.ensure_index(field, unique=field == "candidate_id")
        except NotImplementedError:  # montydb has no indexes
            break
    return store


def _fill(store, backend: str, start: int, stop: int) -> None:
    for lo in range(start, stop, 1000):
        docs = [candidate(i) for i in range(lo, min(stop, lo + 1000))]
        if backend == "SQLiteStore":
            store.update(docs)
        else:
            store._collection.insert_many(docs)


def _median_ms(fn, repeat: int = 5) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), result


def measure(backend: str, store, n_existing: int, next_id: int, batches: int) -> tuple[dict, int]:
    """Time upserts at ``n_existing`` documents, then the query and the count. Returns (results, next new id)."""
    rng = random.Random(n_existing)
    elapsed, upserted = 0.0, 0
    for _ in range(batches):
        replaced = [candidate(rng.randrange(n_existing), version=1) for _ in range(BATCH // 2)]
        new = [candidate(i) for i in range(next_id, next_id + BATCH - len(replaced))]
        next_id += len(new)
        docs = replaced + new
        t = time.perf_counter()
        store.update(docs)
        elapsed += time.perf_counter() - t
        upserted += len(docs)
    criteria = {"chemsys": QUERY_CHEMSYS, "e_above_hull": {"$lte": 0.05}}
    query_ms, docs = _median_ms(lambda: list(store.query(criteria, sort={"e_above_hull": 1})))
    count_ms, count = _median_ms(lambda: store.count(criteria))
    assert count == len(docs), (count, len(docs))
    return {
        "upsert_ms_per_doc": elapsed / upserted * 1e3,
        "query_ms": query_ms,
        "query_n": len(docs),
        "ids": [d["candidate_id"] for d in docs],
        "count_ms": count_ms,
        "n": store.count(),
    }, next_id


def fingerprint(store) -> tuple:
    """Answers that must be the same on both backends holding the same documents."""
    return (
        [d["candidate_id"] for d in store.query({"chemsys": QUERY_CHEMSYS}, properties=["candidate_id"])],
        [d["candidate_id"] for d in store.query({"e_above_hull": {"$lte": 0.01}}, sort={"e_above_hull": -1}, limit=20)],
        store.count({"is_stable": True}),
        sorted(store.distinct("chemsys")),
    )


def run_backend(backend: str, sizes: list[int], batches: int) -> dict[int, dict]:
    results: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        store = _make_store(backend, Path(tmp))
        filled, next_id = 0, 10**7  # new documents of the timed upserts get ids above the filled ones
        for size in sizes:
            t = time.perf_counter()
            _fill(store, backend, filled, size)
            fill_s = time.perf_counter() - t
            filled = size
            check = fingerprint(store) if size == sizes[0] else None  # both backends hold the same documents here
            res, next_id = measure(backend, store, size, next_id, batches)
            res["fingerprint"] = check
            res["fill_s"] = fill_s
            results[size] = res
            disk = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file()) / 2**20
            print(
                f"{backend:<11} N={size:>7}: upsert {res['upsert_ms_per_doc']:8.3f} ms/doc ({batches} x {BATCH}-doc batches)"
                f" | query {res['query_ms']:8.2f} ms ({res['query_n']} docs) | count {res['count_ms']:8.2f} ms"
                f" | fill {fill_s:6.1f} s | {disk:6.0f} MiB",
                flush=True,
            )
        store.close()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated collection sizes")
    parser.add_argument("--monty-max", type=int, default=1000, help="largest size run on montydb")
    parser.add_argument("--batches", type=int, default=5, help="200-document batches timed per size (SQLiteStore)")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    monty_sizes = [s for s in sizes if s <= args.monty_max]
    skipped = [s for s in sizes if s > args.monty_max]
    if monty_sizes and importlib.util.find_spec("montydb") is None:
        raise SystemExit('error: the MontyStore baseline needs montydb: pip install -e ".[bench]" (or run with --monty-max 0)')
    doc_kb = len(orjson.dumps(candidate(0), default=str)) / 1024
    print(f"documents: {doc_kb:.1f} KB JSON; query chemsys {QUERY_CHEMSYS} of {N_CHEMSYS}; python {sys.version.split()[0]}")

    sqlite = run_backend("SQLiteStore", sizes, args.batches)
    monty = run_backend("MontyStore", monty_sizes, 1) if monty_sizes else {}
    if skipped:
        print(
            f"MontyStore  N={','.join(map(str, skipped))}: not run (capped at {args.monty_max} documents: montydb has no"
            " indexes, each upsert scans the collection, so a 200-doc batch at 10k takes ~1 min)"
        )
    if monty:
        n = max(monty)
        s, m = sqlite[n], monty[n]
        first = min(monty)
        assert sqlite[first]["fingerprint"] == monty[first]["fingerprint"], "backends disagree on query results"
        print(
            f"ratio montydb/SQLiteStore at N={n} (largest size both ran; same query results at N={first}): "
            f"upsert {m['upsert_ms_per_doc'] / s['upsert_ms_per_doc']:.0f}x, query {m['query_ms'] / s['query_ms']:.0f}x,"
            f" count {m['count_ms'] / s['count_ms']:.0f}x"
        )
    at_100k = sqlite.get(100_000, {}).get("upsert_ms_per_doc")
    print(f"store_upsert_ms_per_doc_at_100k: {at_100k:.4f}" if at_100k is not None else "store_upsert_ms_per_doc_at_100k: n/a")


if __name__ == "__main__":
    main()
