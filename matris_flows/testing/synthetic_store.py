"""A campaign directory whose store holds synthetic screened candidates, written without running anything.

For the web app's tests and its benchmark (``benchmarks/serve_pages.py``): ``n`` candidate
documents shaped as the hull stage writes them (structure, provenance, relaxation summary,
energies on a real hull), spread over chemical systems of ``per_system`` candidates each, with
each system's reference phases in the ``references`` collection and one generation-shard output
in the job outputs, so that ``status``, ``query``, ``plot`` and ``serve`` read it as a finished
campaign. Energies are random but consistent: every e_above_hull (and, signed, e_above_hull_campaign) is measured on the system's
pymatgen PhaseDiagram, and a few candidates in every system lie on or below it.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Lattice, Structure

from matris_flows.campaign.directory import write_spec
from matris_flows.campaign.spec import CampaignSpec
from matris_flows.core.chemsys import chemsys_of
from matris_flows.core.publishing import CANDIDATES_STORE_NAME, REFERENCES_STORE_NAME
from matris_flows.stores.backends import connect_job_store
from matris_flows.stores.config import StoreConfig

ELEMENTS = ("Li", "Na", "K", "Mg", "Ca", "Sr", "Ba", "Al", "Ga", "Ti", "Zr", "V", "Nb", "Cr", "Mo", "Mn", "Fe", "Co", "Ni",
            "Cu", "Zn", "Sn", "B", "Si", "O", "S", "Se", "N", "P", "F", "Cl")
SOURCES = ("substitution", "prototype", "random_search")


def _spec(name: str, store: StoreConfig | None) -> CampaignSpec:
    spec = {
        "name": name,
        "generation": {"prototypes": {"element_lists": [["Li"], ["O"]], "prototypes": ["rocksalt"]}},
        "potential": {"name": "chgnet", "device": "cpu"},
        "hull": {"references": {"provider": "local_files", "paths": ["package:mp_Li-Fe-O_2024-11-21.json.gz"],
                                "snapshot_date": "2024-11-21"}, "stability_threshold": 0.0},
    }
    if store is not None:
        spec["store"] = store.model_dump(mode="json")
    return CampaignSpec.model_validate(spec)


def _structure(composition: Composition, rng: np.random.Generator) -> Structure:
    species = [str(el) for el, amount in composition.items() for _ in range(int(amount))]
    a = 2.2 * len(species) ** (1 / 3) + 2.0
    return Structure(Lattice.orthorhombic(a, a * rng.uniform(0.9, 1.1), a * rng.uniform(0.9, 1.2)), species,
                     rng.random((len(species), 3)))


def _system(rng: np.random.Generator) -> tuple[str, ...]:
    return tuple(sorted(rng.choice(ELEMENTS, size=int(rng.integers(2, 4)), replace=False).tolist()))


def _composition(elements: tuple[str, ...], rng: np.random.Generator) -> Composition:
    return Composition({el: int(rng.integers(1, 4)) for el in elements})


def _documents(name: str, index: int, elements: tuple[str, ...], per_system: int, start: int,
               rng: np.random.Generator) -> tuple[list[dict], list[dict]]:
    """(candidates, references) of one chemical system."""
    chemsys = chemsys_of(elements)
    refs = [PDEntry(Composition(el), 0.0, name=f"ref-{el}") for el in elements]
    refs += [PDEntry(c, float(rng.uniform(-2.0, -0.2)) * c.num_atoms, name=f"ref-{index}-{k}")
             for k, c in enumerate(_composition(elements, rng) for _ in range(6))]
    diagram = PhaseDiagram(refs)
    references = [{
        "reference_id": f"{name}:{entry.name}", "campaign": name, "entry_id": entry.name, "material_id": entry.name,
        "formula": entry.composition.reduced_formula, "chemsys": chemsys_of(entry.composition.elements),
        "elements": sorted(str(el) for el in entry.composition.elements),
        "formation_energy_per_atom": float(diagram.get_form_energy_per_atom(entry)),
        "e_above_hull": float(diagram.get_e_above_hull(entry)), "is_stable": bool(diagram.get_e_above_hull(entry) <= 1e-8),
    } for entry in refs]
    candidates = []
    for k in range(per_system):
        number = start + k
        composition = _composition(elements, rng)
        hull_energy = float(diagram.get_hull_energy_per_atom(composition))  # plain floats and bools: numpy ones are stored opaque
        offset = float(rng.choice([rng.uniform(-0.05, 0.0), rng.uniform(0.0, 0.6)], p=[0.1, 0.9]))
        formation = hull_energy + offset
        entry = PDEntry(composition, formation * composition.num_atoms)
        e_hull = float(diagram.get_e_above_hull(entry, allow_negative=True))
        failed = bool(rng.random() < 0.03)
        candidates.append({
            "candidate_id": f"cand-{_tag(name)}{number:08d}", "campaign": name, "formula": composition.reduced_formula,
            "chemsys": chemsys, "elements": list(elements), "nsites": int(composition.num_atoms), "spacegroup": 1,
            "structure": None if failed else _structure(composition, rng).as_dict(),
            "provenance": {"source": SOURCES[number % 3], "parent_id": f"mp-{1000 + number % 977}"},
            "formation_energy_per_atom": None if failed else formation,
            "energy_per_atom": None if failed else formation - 4.0, "corrected_energy_per_atom": None if failed else formation - 4.0,
            "e_above_hull": None if failed else max(e_hull, 0.0),
            "e_above_hull_campaign": None if failed else e_hull,
            "is_stable": None if failed else bool(e_hull <= 0.0), "is_stable_campaign": None if failed else bool(e_hull <= 0.0),
            "matches_reference": None, "duplicate_of": None, "stability_threshold": 0.0,
            "hull_kind": None if failed else "mp", "thermo_status": "relax_failed" if failed else "ok",
            "thermo_failure_reason": "relaxation failed: synthetic" if failed else None,
            "relaxation": {"status": "failed" if failed else "converged", "converged": not failed,
                           "n_steps": int(rng.integers(10, 300)), "max_force": float(rng.uniform(0.005, 0.05)),
                           "volume_ratio": float(rng.uniform(0.9, 1.15)), "engine": "torchsim",
                           "potential": {"name": "chgnet"}, "settings": {"fmax": 0.05, "max_steps": 500}},
            "validation": None, "consensus": None,
        })
    return candidates, references


def write_synthetic_campaign(
    directory: str | Path, n_candidates: int, per_system: int = 50, name: str = "synthetic",
    store: StoreConfig | None = None, seed: int = 0, batch: int = 5000,
) -> CampaignSpec:
    """Write the campaign directory (``spec.yaml`` and its store) with ``n_candidates`` candidates; return its spec."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec = _spec(name, store)
    write_spec(directory, spec)
    rng = np.random.default_rng(seed)
    job_store = connect_job_store(spec.store_config(directory), directory)
    try:
        candidates_store = job_store.additional_stores[CANDIDATES_STORE_NAME]
        references_store = job_store.additional_stores[REFERENCES_STORE_NAME]
        pending: list[dict] = []
        seen_systems: set[tuple[str, ...]] = set()
        for index in itertools.count():
            written = index * per_system
            if written >= n_candidates:
                break
            elements = _system(rng)
            while elements in seen_systems and len(seen_systems) < 4000:
                elements = _system(rng)
            seen_systems.add(elements)
            candidates, references = _documents(name, index, elements, min(per_system, n_candidates - written), written, rng)
            references_store.update(references, key="reference_id")
            pending += candidates
            if len(pending) >= batch:
                candidates_store.update(pending, key="candidate_id")
                pending = []
        if pending:
            candidates_store.update(pending, key="candidate_id")
        job_store.docs_store.update({"uuid": "synthetic-generation", "index": 1, "name": f"{name}: generate shard 0",
                                     "output": {"shard_index": 0, "report": {"n_accepted": n_candidates, "n_rejected": 0}}},
                                    key=["uuid", "index"])
    finally:
        job_store.close()
    return spec


def candidate_count(directory: str | Path) -> int:
    """Candidates in a synthetic campaign's store (for a benchmark's check that it is complete)."""
    from matris_flows.campaign.status import campaign_stores

    with campaign_stores(directory) as stores:
        return stores.candidates.count({"campaign": stores.spec.name})




def _tag(name: str) -> str:
    """Four hex digits of the campaign's name: two synthetic campaigns in one database keep apart."""
    import hashlib

    return hashlib.sha256(name.encode()).hexdigest()[:4]
