"""The campaign-wide step: hull of references + all candidates, post-relaxation duplicates, incremental reruns."""

import numpy as np
import pytest
from maggma.stores import MemoryStore
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Lattice, Structure

from matris_flows.thermo.campaign_hull import CampaignHullBuilder
from matris_flows.thermo.references import LocalFileReferences


def _doc(cid, formula, formation_energy, e_above_hull, structure=None, spacegroup=1, relax_status="converged"):
    structure = structure or Structure(Lattice.cubic(4.0), ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return {
        "relaxation": {"status": relax_status},
        "candidate_id": cid, "campaign": "c", "formula": Composition(formula).reduced_formula,
        "chemsys": "-".join(sorted(el.symbol for el in Composition(formula))), "thermo_status": "ok",
        "formation_energy_per_atom": formation_energy, "corrected_energy_per_atom": formation_energy,
        "e_above_hull": e_above_hull, "spacegroup": spacegroup, "hull_kind": "campaign_internal",
        "structure": structure.as_dict(),
    }


def _store(docs):
    store = MemoryStore(key="candidate_id")
    store.connect()
    store.update(docs, key="candidate_id")
    return store


def _builder(store):
    return CampaignHullBuilder(store, references=LocalFileReferences(paths=[]), campaign="c")


def test_campaign_hull_matches_a_phase_diagram_of_all_points():
    rng = np.random.default_rng(3)
    formulas = ["LiO", "Li2O", "LiO2", "Li3O", "FeO", "Fe2O3", "LiFeO2", "Li2FeO3", "LiFe2O4", "Li5FeO4", "FeLi"]
    docs = []
    for i in range(60):
        formula = formulas[i % len(formulas)]
        energy = float(rng.uniform(-2.0, 0.3))
        docs.append(_doc(f"c{i:02d}", formula, energy, e_above_hull=energy, spacegroup=i))  # elements-only reference hull
    store = _store(docs)
    out = _builder(store).build()
    assert out.n_candidates == 60 and out.n_systems_updated == out.n_systems == 4  # Li-O, Fe-O, Fe-Li, Fe-Li-O

    # brute force: one phase diagram of every point with the elements at zero
    entries = [PDEntry(Composition(el), 0.0) for el in ("Li", "Fe", "O")]
    entries += [PDEntry(Composition(d["formula"]), d["formation_energy_per_atom"] * Composition(d["formula"]).num_atoms)
                for d in docs]
    pd = PhaseDiagram(entries)
    for doc, entry in zip(docs, entries[3:], strict=True):
        stored = store.query_one({"candidate_id": doc["candidate_id"]})
        expected = pd.get_e_above_hull(entry, allow_negative=True)
        assert stored["e_above_hull_campaign"] == pytest.approx(expected, abs=1e-6), doc["formula"]
        assert stored["is_stable_campaign"] == (expected <= 1e-9)
    assert out.n_stable_campaign == sum(1 for e in entries[3:] if pd.get_e_above_hull(e, allow_negative=True) <= 1e-9)


def test_duplicates_after_relaxation_keep_the_lowest_energy():
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    shifted = nacl.copy()
    shifted.translate_sites(list(range(len(shifted))), [0.1, 0.1, 0.1])  # same crystal, other origin
    other = Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.4), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    docs = [
        _doc("a", "NaCl", -2.00, -2.00, nacl, 225),
        _doc("b", "NaCl", -2.10, -2.10, shifted, 225),  # the same phase, lower energy: it stays
        _doc("c", "NaCl", -1.50, -1.50, other, 221),  # CsCl-type: another bucket, not a duplicate
    ]
    store = _store(docs)
    out = _builder(store).build()
    by_id = {d["candidate_id"]: d for d in store.query({})}
    assert by_id["a"]["duplicate_of"] == "b" and by_id["b"]["duplicate_of"] is None and by_id["c"]["duplicate_of"] is None
    assert out.n_duplicates == 1
    assert by_id["b"]["is_stable_campaign"] and not by_id["a"]["is_stable_campaign"]  # a duplicate is never "stable"
    assert by_id["a"]["e_above_hull_campaign"] == pytest.approx(0.10, abs=1e-9)


def test_rerun_recomputes_only_the_systems_that_changed():
    docs = [_doc("li2o", "Li2O", -2.0, -2.0), _doc("feo", "FeO", -1.5, -1.5), _doc("lfo", "LiFeO2", -1.0, -1.0)]
    store = _store(docs)
    assert _builder(store).build().n_systems_updated == 3
    assert _builder(store).build().n_systems_updated == 0  # nothing changed: nothing rewritten
    # a new Fe-O candidate below FeO: Fe-O changes, and Fe-Li-O (which contains it) too; Li-O does not
    store.update([_doc("fe3o4", "Fe3O4", -1.9, -1.9)], key="candidate_id")
    assert _builder(store).build().n_systems_updated == 2
    lfo = store.query_one({"candidate_id": "lfo"})
    entries = [PDEntry(Composition(f), e * Composition(f).num_atoms) for f, e in
               [("Li", 0), ("Fe", 0), ("O", 0), ("Li2O", -2.0), ("FeO", -1.5), ("Fe3O4", -1.9), ("LiFeO2", -1.0)]]
    expected = PhaseDiagram(entries).get_e_above_hull(entries[-1], allow_negative=True)
    assert lfo["e_above_hull_campaign"] == pytest.approx(expected, abs=1e-9)


def test_reference_phases_are_written_to_the_campaign_store(lfpo_path):
    """MP-scale groups publish every reference phase of their system, with its hull numbers."""
    li2o = _doc("li2o", "Li2O", -2.1, 0.0)
    li2o["hull_kind"] = "mp"
    store, refs = _store([li2o]), MemoryStore(key="reference_id")
    refs.connect()
    CampaignHullBuilder(store, LocalFileReferences([lfpo_path]), campaign="c", references_store=refs).build()
    docs = list(refs.query({"campaign": "c"}))
    assert docs and all(d["chemsys"] in ("Li", "O", "Li-O") for d in docs)
    stable = {d["formula"] for d in docs if d["is_stable"]}
    assert {"Li", "O2", "Li2O", "Li2O2"} <= stable
    assert all(d["e_above_hull"] >= -1e-9 and (d["e_above_hull"] > 1e-6) != d["is_stable"] for d in docs)


def test_unconverged_relaxations_are_never_campaign_stable_unless_allowed():
    """An unconverged candidate still shapes the campaign hull, but is stable only when the spec allows it."""
    docs = [
        _doc("li2o", "Li2O", -2.0, -2.0, relax_status="not_converged"),
        _doc("li2o2", "Li2O2", -1.0, -1.0, spacegroup=2),  # above the Li2O-O tie line
        _doc("lio2", "LiO2", -0.9, -0.9, spacegroup=3),
    ]
    store = _store(docs)
    out = _builder(store).build()
    by_id = {d["candidate_id"]: d for d in store.query({})}
    assert by_id["li2o"]["e_above_hull_campaign"] == pytest.approx(0.0, abs=1e-9)  # it is on the hull...
    assert by_id["li2o"]["is_stable_campaign"] is False  # ...but its energy is no minimum
    # Li2O2 (x_O = 1/2) on the Li2O (x_O = 1/3, -2.0) - O (0) tie line: -1.0 - (-2.0 * (1 - 1/2) / (1 - 1/3)) = +0.5
    assert by_id["li2o2"]["e_above_hull_campaign"] == pytest.approx(0.5, abs=1e-9)
    assert out.n_stable_campaign == 0

    allowing = CampaignHullBuilder(store, references=LocalFileReferences(paths=[]), campaign="c", allow_unconverged=True)
    assert allowing.build().n_systems_updated == 1  # the setting is part of the fingerprint: recomputed
    assert store.query_one({"candidate_id": "li2o"})["is_stable_campaign"] is True
