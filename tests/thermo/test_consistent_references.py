"""The consistent hull of potentials not on the MP scale: MP phases near the hull relaxed with the same potential.

EMT (an ASE calculator: NOT_MP_COMPATIBLE) on a small Cu-Au reference set built here: fcc Cu
and Au, L1_2 Cu3Au and CuAu3, L1_0 CuAu, and a bcc Cu far above the hull, with made-up
DFT energies and MP-style ids.
"""

import gzip
import json

import pytest
from ase.build import bulk
from jobflow import JobStore, OutputReference, run_locally
from maggma.stores import MemoryStore
from monty.json import MontyEncoder
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry
from pymatgen.io.ase import AseAtomsAdaptor

from matris_flows.potentials.naming import parse_potential
from matris_flows.relax.jobs import RelaxMaker
from matris_flows.relax.schemas import PotentialInfo, RelaxationDocument, RelaxBatchOutput, RelaxSettings, RelaxStatus
from matris_flows.stores.sqlite.store import SQLiteStore
from matris_flows.thermo.consistent_references import (
    ConsistentReferences,
    ConsistentReferenceSet,
    ConsistentReferencesMaker,
    campaign_systems,
    potential_fingerprint,
)
from matris_flows.thermo.jobs import HullMaker
from matris_flows.thermo.references import LocalFileReferences, MissingReferenceError
from matris_flows.thermo.schemas import HullKind, ThermoStatus

EMT = "ase.calculators.emt:EMT"
SETTINGS = RelaxSettings(fmax=0.05, max_steps=60, engine="ase")

# (id, structure builder, made-up DFT energy per atom): fcc corners, three ordered alloys on or
# near the hull, and bcc Cu 0.5 eV/atom above it (outside the 0.1 eV/atom window).
_DFT = {"Cu": -4.10, "Au": -3.27}


def _fcc(el: str, a: float) -> Structure:
    return AseAtomsAdaptor.get_structure(bulk(el, "fcc", a=a))


def _l12(a_el: str, b_el: str, a: float) -> Structure:
    return Structure(Lattice.cubic(a), [b_el, a_el, a_el, a_el], [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def _l10(a: float) -> Structure:
    return Structure(Lattice.tetragonal(a / 2**0.5, a), ["Cu", "Au"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _entry(entry_id: str, structure: Structure, formation: float) -> ComputedStructureEntry:
    comp = structure.composition
    energy = sum(_DFT[el.symbol] * n for el, n in comp.items()) + formation * comp.num_atoms
    return ComputedStructureEntry(
        structure, energy, entry_id=f"{entry_id}-GGA", parameters={"run_type": "GGA"}, data={"material_id": entry_id}
    )


def cu_au_entries() -> list[ComputedStructureEntry]:
    return [
        _entry("mp-30", _fcc("Cu", 3.62), 0.0),
        _entry("mp-81", _fcc("Au", 4.17), 0.0),
        _entry("mp-2258", _l12("Cu", "Au", 3.75), -0.070),  # Cu3Au
        _entry("mp-522", _l10(3.96), -0.055),  # CuAu, 2.5 meV/atom above the Cu3Au-CuAu3 tie-line
        _entry("mp-1018", _l12("Au", "Cu", 4.03), -0.045),  # CuAu3
        _entry("mp-bcc-Cu", AseAtomsAdaptor.get_structure(bulk("Cu", "bcc", a=2.87)), 0.5),
    ]


@pytest.fixture(scope="module")
def cu_au_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("refs") / "mp_Au-Cu.json.gz"
    with gzip.open(path, "wt") as handle:
        json.dump([e.as_dict() for e in cu_au_entries()], handle, cls=MontyEncoder)
    return path


@pytest.fixture(scope="module")
def references(cu_au_file):
    return LocalFileReferences([cu_au_file], snapshot_date="2024-11-21")


def _maker(references, cache_store, settings=SETTINGS, **kwargs) -> ConsistentReferencesMaker:
    relax = RelaxMaker(name="refs relax", potential=EMT, settings=settings, device="cpu")
    return ConsistentReferencesMaker(references=references, relax=relax, cache_store=cache_store, chunk_size=3, **kwargs)


def _run(maker):
    """Run the subflow; return its ConsistentReferenceSet and the uuids of the relaxation jobs that ran."""
    job = maker.make()
    store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    responses = run_locally(job, store=store, ensure_success=True)
    output = responses[job.uuid][max(responses[job.uuid])].output
    if isinstance(output, OutputReference):  # replaced: the job's output points at the caching job's
        output = output.resolve(store)
    relax_runs = [uuid for uuid, by_index in responses.items() if isinstance(by_index[1].output, RelaxBatchOutput)]
    return ConsistentReferenceSet.model_validate(output if isinstance(output, dict) else output.model_dump()), relax_runs


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    # a store on disk, as a campaign's: the jobs connect to their own (deserialised) copy of it
    store = SQLiteStore(collection_name="consistent_references", database_path=str(tmp_path_factory.mktemp("store") / "db.sqlite"))
    store.connect()
    return store


@pytest.fixture(scope="module")
def first_run(references, cache):
    return _run(_maker(references, cache, chemsys=["Cu-Au"], elements=["Cu", "Au"]))


def test_window_selects_the_mp_phases_near_the_hull_and_relaxes_them_with_the_potential(first_run, cache):
    reference_set, relax_runs = first_run
    ids = {p.entry_id for p in reference_set.phases}
    # every phase within 0.1 eV/atom of the MP hull, elements included; bcc Cu (0.5 above) is not
    assert ids == {"mp-30-GGA", "mp-81-GGA", "mp-2258-GGA", "mp-522-GGA", "mp-1018-GGA"}
    assert reference_set.systems == ["Au-Cu"] and reference_set.window_ev == 0.1
    assert reference_set.n_relaxed == 5 and reference_set.n_from_cache == 0 and len(relax_runs) == 2  # chunks of 3
    assert cache.count() == 5
    by_id = {p.entry_id: p for p in reference_set.phases}
    assert by_id["mp-522-GGA"].mp_e_above_hull == pytest.approx(0.0025, abs=1e-6)
    # energies are EMT's (a few tenths of an eV per atom), not the DFT ones they started from
    for phase in reference_set.phases:
        assert phase.relax_status == "converged"
        assert abs(phase.energy / Composition(phase.formula).num_atoms) < 0.5
    # the cache holds the relaxed structures and what keys them
    doc = cache.query_one({"entry_id": "mp-2258-GGA"})
    assert Structure.from_dict(doc["structure"]).composition.reduced_formula == "Cu3Au"
    assert doc["potential"] == EMT and doc["settings_hash"] == reference_set.settings_hash
    assert doc["potential_fingerprint"] == potential_fingerprint(EMT) == reference_set.potential_fingerprint


def test_second_campaign_reuses_the_cache_without_relaxing(first_run, references, cache):
    reference_set, _ = first_run
    again, relax_runs = _run(_maker(references, cache, chemsys=["Au-Cu"], elements=["Au", "Cu"]))
    assert again.n_relaxed == 0 and again.n_from_cache == 5 and relax_runs == []
    assert again.set_key == reference_set.set_key
    assert [p.energy for p in again.phases] == [p.energy for p in reference_set.phases]
    # other relax settings are another key: those phases are relaxed again
    other, relax_runs = _run(
        _maker(references, cache, settings=SETTINGS.model_copy(update={"fmax": 0.04}), chemsys=["Au-Cu"], elements=["Cu", "Au"])
    )
    assert other.n_relaxed == 5 and relax_runs and other.set_key != reference_set.set_key
    assert cache.count() == 10


def test_window_is_configurable(references):
    wide, _ = _run(_maker(references, None, chemsys=["Au-Cu"], elements=["Au", "Cu"], window_ev=1.0))
    assert "mp-bcc-Cu-GGA" in {p.entry_id for p in wide.phases} and wide.cache_collection is None
    narrow, _ = _run(_maker(references, None, chemsys=["Au-Cu"], elements=["Au", "Cu"], window_ev=0.0))
    assert "mp-522-GGA" not in {p.entry_id for p in narrow.phases}


def _candidate(structure: Structure, energy_per_atom: float, cid: str) -> RelaxationDocument:
    spec = parse_potential(EMT)
    comp = structure.composition
    return RelaxationDocument(
        candidate_id=cid, formula=comp.reduced_formula, chemsys=comp.chemical_system, nsites=len(structure),
        status=RelaxStatus.CONVERGED, input_structure=structure, structure=structure,
        energy=energy_per_atom * len(structure), energy_per_atom=energy_per_atom, engine="ase",
        potential=PotentialInfo(name=spec.name, kind=spec.kind.value, device="cpu", energy_convention=spec.energy_convention),
        settings=SETTINGS,
    )


def _assess(candidates, reference_set, references):
    job = HullMaker(references=references).make(candidates, consistent_references=reference_set)
    responses = run_locally(job, store=JobStore(MemoryStore()), ensure_success=True)
    return {d.candidate_id: d for d in responses[job.uuid][1].output.documents}


def test_candidates_are_measured_against_the_consistent_hull(first_run, references):
    reference_set, _ = first_run
    phases = {p.entry_id: p for p in reference_set.phases}
    # the hull on EMT's scale, built by hand from the relaxed phases
    pd = PhaseDiagram([PDEntry(Composition(p.formula), p.energy, name=p.entry_id) for p in reference_set.phases])
    assert {e.composition.reduced_formula for e in pd.stable_entries} >= {"Cu3Au", "Cu", "Au"}
    cu3au = phases["mp-2258-GGA"]
    # a Cu2Au candidate (B2-like cell) 0.01 eV/atom above the hull point at its composition
    structure = Structure(Lattice.cubic(3.0), ["Cu", "Cu", "Au"], [[0, 0, 0], [0.5, 0.5, 0.5], [0, 0, 0.5]])
    hull_energy = pd.get_hull_energy_per_atom(structure.composition)
    docs = _assess([_candidate(structure, hull_energy + 0.01, "cand-cu2au"),
                    _candidate(_fcc("Cu", 3.62), pd.get_hull_energy_per_atom(Composition("Cu")) - 0.002, "cand-cu")],
                   reference_set, references)
    doc = docs["cand-cu2au"]
    assert doc.thermo_status is ThermoStatus.OK and doc.hull_kind is HullKind.CAMPAIGN_INTERNAL
    assert doc.e_above_hull == pytest.approx(0.01, abs=1e-6)
    # not the formation energy: the consistent hull has compounds, which the candidate decomposes to
    depth = doc.e_above_hull - doc.formation_energy_per_atom  # the hull below the elements at Cu2Au
    assert depth == pytest.approx(-pd.get_form_energy_per_atom(PDEntry(structure.composition, hull_energy * 3)), abs=1e-6)
    assert depth > 0.005
    assert {p.material_id for p in doc.decomposes_to} & {"mp-2258", "mp-522", "mp-1018"}
    assert doc.corrected_energy_per_atom == pytest.approx(hull_energy + 0.01)  # the potential's scale, no MP2020
    assert doc.reference.reference_set == reference_set.set_key and doc.reference.n_entries == 5
    assert "consistent hull" in doc.reference.source and "0.1 eV/atom" in doc.reference.source
    assert docs["cand-cu"].e_above_hull == pytest.approx(-0.002, abs=1e-6)
    assert cu3au.material_id == "mp-2258"


def test_systems_outside_the_set_get_elemental_corners_or_fail_loudly(first_run, references):
    reference_set, _ = first_run
    provider = ConsistentReferences(reference_set)
    assert len(provider.get_entries("Cu")) == 1 and provider.covers("Au-Cu")
    # the campaign's elements were Cu and Au: no corner was relaxed, so Cu-Ni has no hull
    assert reference_set.elemental_corners == []
    with pytest.raises(MissingReferenceError, match="outside the consistent reference systems"):
        provider.get_entries("Cu-Ni")
    ni3cu = _l12("Ni", "Cu", 3.56)
    assert _assess([_candidate(ni3cu, -0.01, "cand-ni3cu")], reference_set, references)["cand-ni3cu"].thermo_status is (
        ThermoStatus.NO_REFERENCE
    )
    # with Ni among the campaign's elements the references job relaxes its ground state too, in a
    # job of its own; the hull job of a Cu-Ni candidate then uses the elements' tie-line, and says so
    with_ni, relax_runs = _run(_maker(references, None, chemsys=["Au-Cu"], elements=["Au", "Cu", "Ni"]))
    assert with_ni.elemental_corners == ["Ni"] and len(relax_runs) == 3 and with_ni.n_relaxed == 6
    corner = next(p for p in with_ni.phases if p.entry_id == "elemental-ref-Ni")
    assert corner.relax_status == "converged" and corner.formula == "Ni1"
    doc = _assess([_candidate(ni3cu, -0.01, "cand-ni3cu")], with_ni, references)["cand-ni3cu"]
    assert doc.thermo_status is ThermoStatus.OK and doc.reference.reference_set is None
    assert "no competing compounds" in doc.reference.source
    assert doc.e_above_hull == pytest.approx(doc.formation_energy_per_atom)
    # the covered system still gets the consistent hull
    assert ConsistentReferences(with_ni).provenance("Au-Cu", 5).reference_set == with_ni.set_key


def test_sources_of_unknown_elements_get_a_corner_for_every_element(references):
    """Files and substitutions can bring any element: every ground state is relaxed (unsupported ones fail fast)."""
    from matris_flows.thermo.elemental import ground_state_elements

    reference_set, relax_runs = _run(_maker(references, None, chemsys=["Au-Cu"]))
    assert set(reference_set.elemental_corners) == set(ground_state_elements()) - {"Au", "Cu"}
    assert len(relax_runs) == 3  # two chunks of phases, one job of corners
    corners = {p.entry_id.removeprefix("elemental-ref-"): p for p in reference_set.phases if p.entry_id.startswith("elemental-ref-")}
    assert corners["Ni"].usable and corners["Pt"].usable
    assert not corners["Li"].usable and "Li" in corners["Li"].failure_reason  # EMT has no Li parameters
    assert ConsistentReferences(reference_set).get_entries("Ni-Pt")


def test_campaign_systems_follow_the_spec_and_the_reference_files(references):
    assert campaign_systems(["Cu-Au", "Ni"], references, None) == ["Au-Cu", "Ni"]
    assert campaign_systems(None, references, None) == ["Au-Cu"]
    assert campaign_systems(None, references, ["Cu", "Ni", "Pd"]) == []  # no file covers two of them
    assert campaign_systems(None, object(), ["Li", "Fe", "O"]) == ["Fe-Li-O"]  # e.g. the MP API


CAMPAIGN = """
name: {name}
generation:
  prototypes:
    element_lists: [[Cu, Au], [Cu, Au]]
    prototypes: [l12]
    charge_balanced: false
  chunk_size: 1
potential:
  name: "ase.calculators.emt:EMT"
  device: cpu
relax:
  max_steps: 60
  engine: ase
hull:
  references:
    paths: ["{references}"]
store:
  type: sqlite
  path: "{store}"
execution:
  n_workers: 1
  threads_per_worker: 1
"""


def test_campaigns_share_the_consistent_hull_through_their_store(cu_au_file, tmp_path):
    """An EMT campaign relaxes the MP phases once (visible jobs); the next one on the same store reuses them."""
    from matris_flows.campaign.reading import query_campaign
    from matris_flows.campaign.runner import run_campaign
    from matris_flows.stores.backends import connect_job_store
    from matris_flows.stores.config import StoreConfig

    store_dir = tmp_path / "shared-store"
    docs = {}
    for name in ("emt-cuau-a", "emt-cuau-b"):
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(CAMPAIGN.format(name=name, references=cu_au_file, store=store_dir))
        run_campaign(spec, tmp_path / name, manager="local")
        docs[name] = {d["formula"]: d for d in query_campaign(tmp_path / name)}
        # campaign.json names each stage's job, though the consistent-references job comes first in the flow
        manifest = json.loads((tmp_path / name / "campaign.json").read_text())
        jobs = manifest["jobs"]
        assert manifest["generation"] == jobs[f"{name}: generate"] != jobs[f"{name}: consistent references"]
        assert manifest["campaign_hull"] == jobs[f"{name}: campaign hull"]
    # the job outputs of both campaigns are in the shared store: count the reference relaxations of each
    store = connect_job_store(StoreConfig(type="sqlite", path=str(store_dir)), tmp_path)
    names = [d["name"] for d in store.docs_store.query({}, properties=["name"])]
    # the campaign's reference phases (plots, reports) are the consistent ones, with their MP ids
    published = {d["material_id"] for d in store.additional_stores["references"].query({"campaign": "emt-cuau-a"})}
    store.close()
    assert published == {"mp-30", "mp-81", "mp-2258", "mp-522", "mp-1018"}
    relax_jobs = {n: sum(x.startswith(f"{n}: consistent references: relax") for x in names) for n in docs}
    assert relax_jobs == {"emt-cuau-a": 5, "emt-cuau-b": 0}  # 5 phases in the window, one per job (chunk_size 1); then none
    cache = SQLiteStore(collection_name="consistent_references", database_path=str(store_dir / "matris_flows.sqlite"))
    with cache:
        phases = {Composition(d["formula"]).reduced_formula: d for d in cache.query({})}
    assert len(phases) == 5 and all(d["potential"] == EMT for d in phases.values())

    # the consistent hull on EMT's scale, from the cached phases
    pd = PhaseDiagram([PDEntry(Composition(d["formula"]), d["energy"]) for d in phases.values()])
    docs_a, docs_b = docs["emt-cuau-a"], docs["emt-cuau-b"]
    assert set(docs_a) == set(docs_b) == {"Cu3Au", "CuAu3"}
    for formula, doc in docs_a.items():
        assert doc["thermo_status"] == "ok" and doc["hull_kind"] == "campaign_internal"
        assert doc["reference"]["reference_set"] and doc["reference"]["reference_set"] == docs_b[formula]["reference"]["reference_set"]
        assert doc["reference"]["n_entries"] == 5  # the consistent hull: elements and three Cu-Au compounds
        # the candidate is the MP phase itself relaxed with the same potential: same energy, and it
        # lands where that phase is on the consistent hull (EMT puts CuAu3 ~11 meV/atom above it)
        comp = Composition(formula)
        assert doc["energy_per_atom"] == pytest.approx(phases[formula]["energy_per_atom"], abs=1e-3)
        expected = pd.get_e_above_hull(PDEntry(comp, doc["energy_per_atom"] * comp.num_atoms), allow_negative=True)
        assert doc["e_above_hull"] == pytest.approx(expected, abs=1e-6)
        assert doc["e_above_hull"] == pytest.approx(docs_b[formula]["e_above_hull"], abs=1e-9)
    # on a hull of the elements alone Cu3Au would be a "new stable phase" at its formation energy
    assert abs(docs_a["Cu3Au"]["e_above_hull"]) < 1e-3 and docs_a["Cu3Au"]["formation_energy_per_atom"] < -0.005


def test_failed_reference_relaxations_are_recorded_and_never_silently_dropped(tmp_path):
    """A phase the potential cannot relax (EMT has no Fe) is kept as failed; a system missing an element fails loudly."""
    path = tmp_path / "mp_Cu-Fe.json.gz"
    fe = AseAtomsAdaptor.get_structure(bulk("Fe", "bcc", a=2.87))
    entries = [cu_au_entries()[0], ComputedStructureEntry(fe, -8.3, entry_id="mp-13-GGA", data={"material_id": "mp-13"})]
    with gzip.open(path, "wt") as handle:
        json.dump([e.as_dict() for e in entries], handle, cls=MontyEncoder)
    reference_set, _ = _run(_maker(LocalFileReferences([path]), None, chemsys=["Cu-Fe", "Cu-Ni"], elements=["Cu", "Fe"]))
    assert reference_set.systems == ["Cu-Fe"] and reference_set.missing_systems == ["Cu-Ni"]
    assert reference_set.n_failed == 1
    failed = next(p for p in reference_set.phases if p.entry_id == "mp-13-GGA")
    assert failed.relax_status == "failed" and failed.energy is None and "Fe" in failed.failure_reason
    provider = ConsistentReferences(reference_set)
    assert len(provider.get_entries("Cu")) == 1
    with pytest.raises(MissingReferenceError, match="no elemental reference entry for Fe"):
        provider.get_entries("Cu-Fe")


def test_the_campaign_flow_has_the_job_only_for_potentials_off_the_mp_scale(cu_au_file, tmp_path):
    from matris_flows.campaign.flow import ScreeningMaker
    from matris_flows.campaign.spec import CampaignSpec

    raw = {
        "name": "flow-check",
        "generation": {"prototypes": {"element_lists": [["Cu", "Au"], ["Cu", "Au"]], "prototypes": ["l12"], "charge_balanced": False}},
        "potential": {"name": EMT, "device": "cpu"},
        "hull": {"references": {"paths": [str(cu_au_file)], "internal_window_ev": 0.05}},
        "store": {"type": "memory"},
    }
    maker = ScreeningMaker.from_spec(CampaignSpec.model_validate(raw), tmp_path)
    refs = maker.consistent_references
    assert refs.window_ev == 0.05 and refs.elements == ["Au", "Cu"] and refs.chemsys is None
    assert refs.relax.potential == EMT and refs.relax.settings == maker.relax.settings and refs.cache_store is not None
    flow = maker.make()
    assert flow.jobs[0].name == "flow-check: consistent references"  # a visible job, first in the flow
    no_cache = {**raw, "hull": {"references": {"paths": [str(cu_au_file)], "internal_cache": False, "internal_chemsys": ["Cu-Au"]}}}
    refs = ScreeningMaker.from_spec(CampaignSpec.model_validate(no_cache), tmp_path).consistent_references
    assert refs.cache_store is None and refs.chemsys == ["Cu-Au"] and refs.window_ev == 0.1
    chgnet = CampaignSpec.model_validate({**raw, "potential": {"name": "chgnet"}})  # MP-corrected energies: the MP hull
    assert ScreeningMaker.from_spec(chgnet, tmp_path).consistent_references is None
    with pytest.raises(ValueError, match="internal_window_ev"):
        CampaignSpec.model_validate({**raw, "hull": {"references": {"internal_window_ev": -0.1}}})


def test_cache_key_follows_the_checkpoint_content(tiny_matris_checkpoint, tmp_path):
    from matris_flows.potentials.matris_weights import file_sha256

    fingerprint = json.loads(potential_fingerprint(str(tiny_matris_checkpoint)))
    assert fingerprint["weights"] == f"sha256:{file_sha256(tiny_matris_checkpoint)}"
    copy = tmp_path / "other.pth.tar"
    copy.write_bytes(tiny_matris_checkpoint.read_bytes() + b"\0")  # other weights, same loader
    assert json.loads(potential_fingerprint(str(copy)))["weights"] != fingerprint["weights"]
    # a MatRIS key is its immutable release file; options that change energies are part of it
    assert json.loads(potential_fingerprint("matris_10m_omat"))["weights"] == "release:MatRIS_10M_OMAT.pth.tar"
    assert potential_fingerprint("matris_10m_omat", {"mode": "a"}) != potential_fingerprint("matris_10m_omat")
