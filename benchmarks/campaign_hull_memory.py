"""The campaign-wide step's peak memory and time against the campaign's size, on the embedded store.

For each size N (default 1k, 10k, 100k) a SQLiteStore is filled with N assessed candidate
documents (the fields a hull job writes, a 4-8 site structure each; the campaign's indexes) spread over N/50
chemical systems of 2-4 elements drawn from 16 elements, with a campaign-internal (elements
only) reference hull. Then ``CampaignHullBuilder.build()`` runs in a fresh process, which
reports how far its peak RSS grew over the RSS it had before the build (imports and the
store connection done) and the build's wall time. Printed per size; the baseline is the
smallest size of the same run. The step reads one chemical system at a time, so its peak
should not grow with N (the number of distinct systems is listed too: a ``distinct`` over
``chemsys`` is the one thing that does). Last line:

    campaign_hull_peak_growth_ratio_100k: <peak growth at the largest size / at the smallest>

    python benchmarks/campaign_hull_memory.py                      # 1k, 10k, 100k: a few minutes on 2 cores
    python benchmarks/campaign_hull_memory.py --sizes 1000 10000
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ELEMENTS = ["Li", "Na", "K", "Mg", "Ca", "Fe", "Mn", "Co", "Ni", "Cu", "Zn", "Al", "Si", "P", "S", "O"]
CANDIDATES_PER_SYSTEM = 50


def fill(path: Path, n: int, seed: int = 0) -> int:
    """Write ``n`` candidate documents to a SQLiteStore at ``path``; returns the number of systems."""
    from pymatgen.core import Composition, Lattice, Structure

    from matris_flows.stores.backends import CANDIDATE_INDEXES
    from matris_flows.stores.sqlite.store import SQLiteStore

    rng = random.Random(seed)
    n_systems = max(1, n // CANDIDATES_PER_SYSTEM)
    systems: set[tuple[str, ...]] = set()
    while len(systems) < n_systems:
        systems.add(tuple(sorted(rng.sample(ELEMENTS, rng.choice((2, 3, 4))))))
    ordered = sorted(systems)
    store = SQLiteStore("candidates", str(path), key="candidate_id")
    store.connect()
    for field in CANDIDATE_INDEXES:  # the campaign's candidates store is indexed so
        store.ensure_index(field)
    batch = []
    for i in range(n):
        system = ordered[i % len(ordered)]
        counts = {el: rng.randint(1, 2) for el in system}
        species = [el for el, k in counts.items() for _ in range(k)]
        structure = Structure(Lattice.cubic(4.0 + len(species) * 0.3), species, [[rng.random() for _ in range(3)] for _ in species])
        formation = rng.uniform(-1.5, 0.5)
        batch.append({
            "candidate_id": f"cand-{i:07d}", "campaign": "bench", "formula": Composition(counts).reduced_formula,
            "chemsys": "-".join(system), "thermo_status": "ok", "formation_energy_per_atom": formation,
            "corrected_energy_per_atom": formation - 5.0, "e_above_hull": max(formation, -0.05),
            "spacegroup": rng.randint(1, 230), "hull_kind": "campaign_internal",
            "relaxation": {"status": "converged", "converged": True}, "structure": structure.as_dict(),
        })
        if len(batch) == 1000:
            store.update(batch, key="candidate_id")
            batch = []
    if batch:
        store.update(batch, key="candidate_id")
    store.close()
    return len(ordered)


def build(path: Path) -> dict:
    """Run the builder on the store at ``path`` (in this process); its peak RSS growth and wall time."""
    from matris_flows.stores.sqlite.store import SQLiteStore
    from matris_flows.thermo.campaign_hull import CampaignHullBuilder
    from matris_flows.thermo.references import LocalFileReferences

    store = SQLiteStore("candidates", str(path), key="candidate_id")
    store.connect()
    store.count()  # warm the connection
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    summary = CampaignHullBuilder(store, LocalFileReferences(paths=[]), campaign="bench").build()
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    store.close()
    return {"growth_mb": peak - before, "wall_s": wall, "systems": summary.n_systems, "updated": summary.n_systems_updated,
            "duplicates": summary.n_duplicates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)  # the child process: build one store
    args = parser.parse_args()
    if args.build is not None:
        print(json.dumps(build(args.build)))
        return
    sizes = sorted(args.sizes)
    rows = []
    with tempfile.TemporaryDirectory(prefix="campaign_hull_memory_") as tmp:
        for n in sizes:
            path = Path(tmp) / f"c{n}.sqlite"
            start = time.perf_counter()
            n_systems = fill(path, n)
            filled = time.perf_counter() - start
            child = subprocess.run([sys.executable, __file__, "--build", str(path)], capture_output=True, text=True, check=False)
            if child.returncode != 0:
                raise SystemExit(f"error: the build of {n} candidates failed:\n{child.stderr[-2000:]}")
            result = json.loads(child.stdout.strip().splitlines()[-1])
            rows.append((n, result))
            print(
                f"size={n} systems={n_systems} fill_s={filled:.1f} build_s={result['wall_s']:.1f} "
                f"ms_per_candidate={1000 * result['wall_s'] / n:.2f} peak_growth_mb={result['growth_mb']:.1f} "
                f"systems_updated={result['updated']} duplicates={result['duplicates']}",
                flush=True,
            )
    base, last = rows[0][1]["growth_mb"], rows[-1][1]["growth_mb"]
    print(f"baseline: peak growth {base:.1f} MB at {rows[0][0]} candidates")
    print(f"campaign_hull_peak_growth_ratio_{rows[-1][0] // 1000}k: {last / max(base, 1.0):.2f}")


if __name__ == "__main__":
    main()
