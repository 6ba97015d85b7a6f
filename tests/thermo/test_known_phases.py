"""Known phases: relaxed candidates that rebuild a reference (MP) phase are recognised and kept off the new-materials list."""

import pytest
from hull_helpers import decode, relaxation_doc
from jobflow import JobStore, run_locally
from maggma.stores import MemoryStore
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry

from matris_flows.results.query import CandidateQuery, query_candidates
from matris_flows.thermo.assess import assess_candidates
from matris_flows.thermo.campaign_hull import CampaignHullBuilder
from matris_flows.thermo.jobs import HullMaker
from matris_flows.thermo.known_phases import match_known_phases, material_id
from matris_flows.thermo.references import LocalFileReferences


@pytest.fixture(scope="module")
def refs(lfpo_path):
    return LocalFileReferences([lfpo_path], snapshot_date="2024-11-21")


@pytest.fixture(scope="module")
def mp(lfpo_raw):
    """MP entries of the Li-Fe-P-O file by material id."""
    return {raw["data"]["material_id"]: decode(raw) for raw in lfpo_raw}


def rattled(structure: Structure, seed: int = 0, distance: float = 0.03, strain: float = 0.02) -> Structure:
    """A slightly displaced and strained copy: what a relaxation with another potential returns."""
    out = structure.copy()
    out.perturb(distance, min_distance=distance / 2, seed=seed)
    out.apply_strain(strain)
    return out


def made_up_lifeo2() -> Structure:
    """A LiFeO2 arrangement that is no MP phase (checked against every MP LiFeO2 in the test)."""
    return Structure(Lattice.cubic(4.2), ["Li", "Fe", "O", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0]])


def test_material_id_prefers_data_and_strips_run_type_suffixes():
    assert material_id(ComputedEntry("Li2O", -1.0, entry_id="mp-1960-GGA", data={"material_id": "mp-1960"})) == "mp-1960"
    assert material_id(ComputedEntry("FeO", -1.0, entry_id="mp-18905-GGA+U")) == "mp-18905"
    assert material_id(ComputedEntry("FeO", -1.0, entry_id="user-7")) == "user-7"


def test_an_mp_phase_comes_back_with_its_material_id(mp, refs):
    """Rattled and strained MP phases (a conventional supercell too) match; a made-up arrangement does not."""
    olivine = rattled(mp["mp-19017"].structure)  # LiFePO4 among 70 LiFePO4 polymorphs
    li2o = mp["mp-1960"].structure.copy()
    li2o.make_supercell([2, 1, 1])  # another cell of the same crystal
    new = made_up_lifeo2()
    lifeo2_phases = [e.structure for e in mp.values() if e.composition.reduced_formula == "LiFeO2"]
    assert len(lifeo2_phases) == 9
    assert not any(StructureMatcher().fit(new, s) for s in lifeo2_phases)  # ground truth: pymatgen's defaults

    found = match_known_phases([("olivine", olivine), ("li2o", rattled(li2o, 1)), ("new", new), ("failed", None)], refs)
    assert found == {"olivine": "mp-19017", "li2o": "mp-1960", "new": None, "failed": None}


def test_hull_documents_carry_matches_reference(mp, refs):
    """Through the hull stage: the known phase is 'stable' on the reference hull but recognised as known."""
    entry = mp["mp-19017"]
    structure = rattled(entry.structure, 2)
    # a model 10 meV/atom below MP's DFT energy of this same phase: "below the hull", i.e. the old false discovery
    known = relaxation_doc("known", structure, entry.energy - 0.010 * len(structure), "chgnet")
    new = relaxation_doc("new", made_up_lifeo2(), -7.2 * 4, "chgnet")
    nacl = relaxation_doc("nacl", Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]), -6.8, "chgnet")
    out = assess_candidates([known, new, nacl], refs)
    assert out[0].matches_reference == "mp-19017" and out[0].is_stable and out[0].e_above_hull < 0
    assert out[1].matches_reference is None
    assert out[2].matches_reference is None and out[2].thermo_status.value == "no_reference"
    assert all(d.matches_reference is None for d in assess_candidates([known, new], refs, match_references=False))


def test_novel_excludes_known_phases_and_duplicates(mp, refs):
    """The new-materials list (query novel_only) drops the known phase and the duplicate, keeps the new one."""
    entry = mp["mp-19017"]
    olivine = rattled(entry.structure, 3)
    new = made_up_lifeo2()
    twin = new.copy()
    twin.translate_sites(list(range(len(twin))), [0.1, 0.1, 0.1])  # the same crystal, another origin
    docs = [
        relaxation_doc("known", olivine, entry.energy - 0.010 * len(olivine), "chgnet"),
        relaxation_doc("new", new, -7.3 * 4, "chgnet"),
        relaxation_doc("twin", twin, -7.2 * 4, "chgnet"),  # higher energy: the duplicate
    ]
    candidates = MemoryStore(key="candidate_id")
    store = JobStore(MemoryStore(), additional_stores={"candidates": candidates})
    job = HullMaker(references=refs, campaign="kp", campaign_hull=False).make(docs)
    output = run_locally(job, store=store, ensure_success=True)[job.uuid][1].output
    assert output.n_known_phases == 1
    with store:
        summary = CampaignHullBuilder(candidates, refs, campaign="kp").build()
        assert summary.n_known_phases == 1 and summary.n_duplicates == 1

        def ids(**query):
            return sorted(d["candidate_id"] for d in query_candidates(candidates, CandidateQuery(campaign="kp", **query)))

        assert ids() == ["known", "new", "twin"]
        assert ids(novel_only=True) == ["new"]
        stable = ids(stable_only=True)
        assert "known" in stable  # the reference hull alone calls the known phase stable...
        assert "known" not in ids(stable_only=True, novel_only=True)  # ...the new-materials list does not
        assert summary.n_new_stable == len(ids(stable_campaign_only=True, novel_only=True))


def test_generated_structure_recognises_a_phase_the_model_relaxes_elsewhere(mp, refs):
    """An MP phase given as input is known even when the model relaxes it into no MP phase; the relaxed match wins."""
    lifeo2 = sorted(
        (e for e in mp.values() if e.composition.reduced_formula == "LiFeO2" and len(e.structure) <= 16),
        key=lambda e: e.energy_per_atom,
    )
    generated_as, relaxed_into = lifeo2[0], lifeo2[1]
    assert not StructureMatcher().fit(generated_as.structure, relaxed_into.structure)
    elsewhere = made_up_lifeo2()  # "relaxed" into an arrangement that is no MP phase
    found = match_known_phases(
        [("elsewhere", elsewhere), ("into_other", rattled(relaxed_into.structure, 4)), ("new", made_up_lifeo2())],
        refs,
        generated={"elsewhere": rattled(generated_as.structure, 5), "into_other": generated_as.structure, "new": made_up_lifeo2()},
    )
    assert found == {
        "elsewhere": material_id(generated_as),
        "into_other": material_id(relaxed_into),
        "new": None,
    }
    # without the generated structures only the relaxed match is left
    assert match_known_phases([("elsewhere", elsewhere)], refs) == {"elsewhere": None}


def test_hull_stage_matches_the_generated_structure(mp, refs):
    """assess_candidates passes the relaxation's input structure: an MP input relaxed elsewhere stays a known phase."""
    ground = min((e for e in mp.values() if e.composition.reduced_formula == "LiFeO2"), key=lambda e: e.energy_per_atom)
    doc = relaxation_doc("moved", made_up_lifeo2(), -7.2 * 4, "chgnet")
    doc = doc.model_copy(update={"input_structure": rattled(ground.structure, 6)})
    (out,) = assess_candidates([doc], refs)
    assert out.matches_reference == material_id(ground)
    (plain,) = assess_candidates([relaxation_doc("moved", made_up_lifeo2(), -7.2 * 4, "chgnet")], refs)
    assert plain.matches_reference is None
