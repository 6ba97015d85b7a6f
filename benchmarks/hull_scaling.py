"""Hull-stage scaling: e_above_hull for 1k, 10k and 100k synthetic candidates.

Candidates are spread over many ternary and quaternary chemical systems (50 per
system, so 100k candidates span 2000 systems drawn from 40 elements), each with 15
synthetic reference compounds on top of the shared elemental references. The timed call is the hull stage's core,
``assess_entries``: group by maximal chemical system, fetch references, build the
reference and the campaign phase diagram once per system, evaluate every candidate
(energy above both hulls, formation energy, decomposition). The per-candidate cost
must stay flat as the number of candidates grows.

Run: ``python benchmarks/hull_scaling.py [--sizes 1000 10000 100000]``.
Last line: ``hull_ms_per_candidate_100k: <value>``.
"""

import argparse
import os
import resource
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # shared CPU: keep BLAS to one thread

import numpy as np
from pymatgen.core import Composition, Element
from pymatgen.entries.computed_entries import ComputedEntry

from matris_flows.thermo.assess import assess_entries
from matris_flows.thermo.references import CampaignInternalReferences

CANDIDATES_PER_SYSTEM = 50
REFERENCES_PER_SYSTEM = 15
ELEMENT_POOL = [Element.from_Z(z).symbol for z in range(3, 84) if not Element.from_Z(z).is_noble_gas][:40]


def _random_composition(rng: np.random.Generator, elements: list[str]) -> Composition:
    # Every element of the system in every compound: systems then share only their
    # elemental corners, so hull sizes do not grow as more systems crowd the element
    # pool, and the timing measures the algorithm, not a denser chemical space.
    counts = rng.integers(1, 5, size=len(elements))
    return Composition({el: int(c) for el, c in zip(elements, counts, strict=True)})


def synthetic_campaign(n_candidates: int, seed: int = 0) -> tuple[list[ComputedEntry], list[ComputedEntry]]:
    """(candidates, references) over ``n_candidates / 50`` random chemical systems."""
    rng = np.random.default_rng(seed)
    mu = {el: float(rng.uniform(-9, -1)) for el in ELEMENT_POOL}
    references = [ComputedEntry(Composition(el), mu[el], entry_id=f"ref-{el}") for el in ELEMENT_POOL]
    candidates = []
    n_systems = max(1, n_candidates // CANDIDATES_PER_SYSTEM)
    for s in range(n_systems):
        elements = sorted(rng.choice(ELEMENT_POOL, size=int(rng.integers(3, 5)), replace=False).tolist())
        for r in range(REFERENCES_PER_SYSTEM):
            comp = _random_composition(rng, elements)
            e_ref = sum(mu[el.symbol] * amt for el, amt in comp.items())
            energy = e_ref + comp.num_atoms * float(rng.uniform(-1.0, 0.2))
            references.append(ComputedEntry(comp, energy, entry_id=f"ref-{s}-{r}"))
        for c in range(min(CANDIDATES_PER_SYSTEM, n_candidates - len(candidates))):
            comp = _random_composition(rng, elements)
            e_ref = sum(mu[el.symbol] * amt for el, amt in comp.items())
            energy = e_ref + comp.num_atoms * float(rng.uniform(-0.8, 0.5))
            candidates.append(ComputedEntry(comp, energy, entry_id=f"cand-{s}-{c}"))
    return candidates, references


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(n_candidates: int) -> float:
    """Time the hull stage on ``n_candidates`` synthetic candidates; return ms per candidate."""
    candidates, references = synthetic_campaign(n_candidates)
    provider = CampaignInternalReferences(references, potential="synthetic")
    start = time.perf_counter()
    results = assess_entries(candidates, provider)
    elapsed = time.perf_counter() - start
    assert len(results) == len(candidates) and all(r.error is None for r in results)
    e_hull = np.array([r.reference.e_above_hull for r in results])
    n_systems = len({frozenset(el.symbol for el in c.elements) for c in candidates})
    ms = 1000 * elapsed / len(candidates)
    print(
        f"{len(candidates):>7} candidates  {n_systems:>5} chemsys  {len(references):>6} refs  "
        f"{elapsed:8.2f} s  {ms:.4f} ms/candidate  peak RSS {peak_rss_mib():7.1f} MiB  "
        f"stable {np.mean(e_hull <= 0):.1%}",
        flush=True,
    )
    return ms


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    args = parser.parse_args(argv)
    per_candidate = {n: run(n) for n in args.sizes}
    sizes = sorted(per_candidate)
    if len(sizes) > 1:
        print(f"per-candidate cost ratio {sizes[-1]}/{sizes[0]}: {per_candidate[sizes[-1]] / per_candidate[sizes[0]]:.2f}")
    label = f"{sizes[-1] // 1000}k" if sizes[-1] >= 1000 else str(sizes[-1])
    print(f"hull_ms_per_candidate_{label}: {per_candidate[sizes[-1]]:.4f}")


if __name__ == "__main__":
    sys.exit(main())
