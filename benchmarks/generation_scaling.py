"""Generation + dedup scaling: time and peak memory for 1k, 10k and 50k candidates.

The candidate stream is the campaign pipeline on decorated prototypes (binary and
ternary types over ~50 elements, no charge-balance rule, so the stream is large and
about a third of it is symmetry-equivalent copies that dedup must catch). Each size runs
in a fresh subprocess so its peak RSS is its own. A quadratic all-pairs StructureMatcher
baseline is timed on a small prefix of the same stream and extrapolated as n².

Run: OMP_NUM_THREADS=1 python benchmarks/generation_scaling.py [--sizes 1000 10000 50000]
Last line: ``generation_s_per_1k_at_50k: <value>``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import time

ELEMENTS = (
    "Li Na K Rb Cs Be Mg Ca Sr Ba Sc Y Ti Zr Hf V Nb Ta Cr Mo W Mn Fe Co Ni Cu Ag Au Zn Cd "
    "Al Ga In Si Ge Sn Pb Bi Sb B C N P As O S Se Te F Cl Br I"
).split()


def candidate_events():
    """The benchmark's event stream (deterministic)."""
    from matris_flows.generation.jobs import PrototypeMaker
    from matris_flows.generation.pipeline import iter_unit_range

    binary = PrototypeMaker(
        element_lists=[ELEMENTS, ELEMENTS], charge_balanced=False,
        prototypes=["rocksalt", "cscl", "zincblende", "wurtzite", "fluorite", "rutile", "l12"],
    )
    ternary = PrototypeMaker(
        element_lists=[ELEMENTS[:20], ELEMENTS[20:40], ELEMENTS[40:]], charge_balanced=False,
        prototypes=["perovskite", "half_heusler", "layered_abo2"],
    )
    # interleave so every prefix mixes prototypes (and duplicates) like a real campaign
    streams = [iter_unit_range([binary]), iter_unit_range([ternary])]
    for pair in itertools.zip_longest(*streams):
        yield from (e for e in pair if e is not None)


def run_size(n: int) -> dict:
    """Generate, filter and dedup the first ``n`` proposed structures; stream, keep only ids."""
    from matris_flows.generation.pipeline import GenerationRun

    # warm-up: imports, the prototype library and matcher set-up are one-off costs, not per-candidate
    warm = GenerationRun(max_recorded_rejections=0)
    for event in itertools.islice(candidate_events(), 5):
        warm.process(event)
    run = GenerationRun(max_recorded_rejections=100)
    start = time.perf_counter()
    accepted_ids = []
    for event in itertools.islice(candidate_events(), n):
        candidate = run.process(event)
        if candidate is not None:
            accepted_ids.append(candidate.candidate_id)  # the structure goes to its chunk, not a list
    elapsed = time.perf_counter() - start
    return {
        "n": n, "seconds": elapsed, "accepted": len(accepted_ids),
        "duplicates": run.report.rejected_counts.get("duplicate", 0),
        "filtered": run.report.n_rejected - run.report.rejected_counts.get("duplicate", 0),
        "comparisons": run.index.n_comparisons, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_all_pairs(n: int) -> dict:
    """Quadratic baseline: every new structure against every accepted one, no buckets."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from matris_flows.generation.schemas import Candidate

    matcher = StructureMatcher(primitive_cell=True, scale=True, attempt_supercell=False)
    events = [e for e in itertools.islice(candidate_events(), n) if isinstance(e, Candidate)]
    start = time.perf_counter()
    accepted = []
    for cand in events:
        if not any(matcher.fit(cand.structure, other) for other in accepted):
            accepted.append(cand.structure)
    return {"n": len(events), "seconds": time.perf_counter() - start, "accepted": len(accepted)}


def _in_subprocess(kind: str, n: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(n)], check=True, capture_output=True, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--baseline-size", type=int, default=400)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, n = args.child[0], int(args.child[1])
        print(json.dumps(run_size(n) if kind == "size" else run_all_pairs(n)))
        return

    base = _in_subprocess("baseline", args.baseline_size)
    bucketed_small = _in_subprocess("size", args.baseline_size)
    rows = [_in_subprocess("size", n) for n in args.sizes]
    print(f"{'n':>7} {'time_s':>8} {'s_per_1k':>9} {'accepted':>9} {'dups':>7} {'filtered':>8} "
          f"{'sm_fits':>8} {'peak_MB':>8} {'allpairs_est_s':>15} {'speedup':>8}")
    for row in rows:
        # all-pairs cost grows as n²: extrapolate the measured baseline
        est = base["seconds"] * (row["n"] / base["n"]) ** 2
        print(f"{row['n']:>7} {row['seconds']:>8.1f} {1000 * row['seconds'] / row['n']:>9.3f} {row['accepted']:>9} "
              f"{row['duplicates']:>7} {row['filtered']:>8} {row['comparisons']:>8} {row['peak_rss_mb']:>8.0f} "
              f"{est:>15.0f} {est / row['seconds']:>8.1f}")
    print(f"baseline all-pairs StructureMatcher on n={base['n']}: {base['seconds']:.1f} s "
          f"(bucketed pipeline incl. generation on the same prefix: {bucketed_small['seconds']:.1f} s)")
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        exponent = (
            __import__("math").log(last["seconds"] / first["seconds"]) / __import__("math").log(last["n"] / first["n"])
        )
        print(f"empirical scaling exponent (time ~ n^k) from {first['n']} to {last['n']}: k = {exponent:.2f} "
              "(all-pairs: k = 2)")
    per_1k = 1000 * rows[-1]["seconds"] / rows[-1]["n"]
    print(f"generation_s_per_1k_at_{rows[-1]['n'] // 1000}k: {per_1k:.3f}")


if __name__ == "__main__":
    main()
