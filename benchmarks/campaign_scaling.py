"""Campaign scaling: the whole data path per candidate, from 10^3 to 10^5 candidates.

For each size, a fresh driver process runs a synthetic campaign (``matris_flows.testing.
synthetic``: one structure per composition of EMT's metals, every reduced formula distinct)
through the real path: planning job → parallel generation shards → per chunk (EMT
relaxation for ``--max-steps`` FIRE steps, reference hull, candidate documents published to
the store) → campaign-wide hull and dedup, on a local Dask cluster of ``--workers`` workers
with the embedded default store (the campaign's ``StoreConfig()``).

Per size it prints

    size=N overhead_ms_per_candidate=… driver_peak_rss_mb=… max_doc_kb=… store_bytes_per_candidate=… query_ms=…

- overhead: (wall − model time / workers) / N, where model time is the sum of the
  relaxations' own ``wall_time_s`` (EMT + optimizer), i.e. everything that is not the
  model: generation, scheduling, serialisation, hull, store writes, the campaign-wide step;
- driver peak RSS: ``ru_maxrss`` of the driver process (workers excluded);
- max document: the largest JSON document in the queryable collections (job outputs,
  journal, candidates; blobs in the ``data`` store are excluded, as GridFS holds them on
  MongoDB);
- store bytes per candidate: size of the campaign's database folder / N;
- query: ``query_candidates`` with a chemsys + ``max_e_above_hull`` filter on the finished
  store, median of 5.

Then ``scaling_ratio: <overhead at the largest size / at the smallest>`` and, last,
``campaign_overhead_ms_per_candidate: <overhead at the largest size>``.

    python benchmarks/campaign_scaling.py                       # 1000,10000,100000 (~25 min on 2 cores)
    python benchmarks/campaign_scaling.py --sizes 1000,10000    # quicker
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_one(n: int, directory: Path, workers: int, chunk_size: int, max_steps: int) -> dict:
    """One campaign of ``n`` candidates in this process (the driver); returns its figures."""
    from matris_flows.execution import ExecutionProfile, open_client, run_on_dask
    from matris_flows.results import CandidateQuery, query_candidates
    from matris_flows.stores.backends import connect_job_store, make_candidates_store
    from matris_flows.stores.config import StoreConfig
    from matris_flows.testing.synthetic import synthetic_screening

    config = StoreConfig()
    maker = synthetic_screening(n, chunk_size=chunk_size, parallelism=workers, max_steps=max_steps, relax_cell=False,
                                name="scaling")
    with open_client(ExecutionProfile(n_workers=workers, threads_per_worker=1)) as client:
        store = connect_job_store(config, directory)
        failed = []
        start = time.perf_counter()
        run_on_dask(maker.make(), store, client, keep_responses=False,
                    progress=lambda e: failed.append(e.name) if e.status == "failed" else None)
        wall = time.perf_counter() - start
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the read-back below
    if failed:
        raise RuntimeError(f"{len(failed)} jobs failed, e.g. {failed[:3]}")

    candidates = make_candidates_store(config, directory)
    model_s, chemsys = 0.0, Counter()
    count = 0
    for doc in candidates.query({}, properties=["relaxation.wall_time_s", "chemsys"]):
        model_s += doc["relaxation"]["wall_time_s"]
        chemsys[doc["chemsys"]] += 1
        count += 1
    if count != n:
        raise RuntimeError(f"{count} candidate documents for {n} candidates")
    query = CandidateQuery(chemsys=chemsys.most_common(1)[0][0], max_e_above_hull=0.05)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        query_candidates(candidates, query)
        times.append(time.perf_counter() - t0)

    largest = 0
    with store:
        for collection in (store.docs_store, store.additional_stores["journal"], candidates):
            for doc in collection.query({}):
                doc.pop("_id", None)
                largest = max(largest, len(json.dumps(doc, default=str)))
    candidates.close()
    return {
        "size": n,
        "overhead_ms_per_candidate": (wall - model_s / workers) / n * 1000,
        "driver_peak_rss_mb": peak_rss_mb,
        "max_doc_kb": largest / 1024,
        "store_bytes_per_candidate": _folder_bytes(directory) / n,
        "query_ms": statistics.median(times) * 1000,
        "wall_s": wall,
        "model_s": model_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=200, help="the spec default")
    parser.add_argument("--max-steps", type=int, default=2)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:  # child: one size in a fresh driver process
        import logging

        logging.basicConfig(level=logging.WARNING)
        logging.getLogger("matris_flows.execution.dask_manager").setLevel(logging.INFO)  # failed jobs' tracebacks
        result = run_one(args.one, Path(args.dir), args.workers, args.chunk_size, args.max_steps)
        print("RESULT " + json.dumps(result), flush=True)
        return

    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(prefix=f"campaign-{n}-") as tmp:
            cmd = [sys.executable, __file__, "--one", str(n), "--dir", tmp, "--workers", str(args.workers),
                   "--chunk-size", str(args.chunk_size), "--max-steps", str(args.max_steps)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"size {n} failed:\n{out.stderr[-3000:]}")
            r = json.loads(line.removeprefix("RESULT "))
        results.append(r)
        print(
            f"size={r['size']} overhead_ms_per_candidate={r['overhead_ms_per_candidate']:.2f} "
            f"driver_peak_rss_mb={r['driver_peak_rss_mb']:.0f} max_doc_kb={r['max_doc_kb']:.1f} "
            f"store_bytes_per_candidate={r['store_bytes_per_candidate']:.0f} query_ms={r['query_ms']:.1f} "
            f"(wall {r['wall_s']:.0f} s, model {r['model_s']:.0f} s)",
            flush=True,
        )
    print(f"scaling_ratio: {results[-1]['overhead_ms_per_candidate'] / results[0]['overhead_ms_per_candidate']:.2f}")
    print(f"campaign_overhead_ms_per_candidate: {results[-1]['overhead_ms_per_candidate']:.2f}")


if __name__ == "__main__":
    main()
