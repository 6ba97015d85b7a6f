"""The hull job: candidate documents, energy conventions, campaign hull, failure paths."""

import pytest
from hull_helpers import decode, relaxation_doc
from jobflow import JobStore, run_locally
from maggma.stores import MemoryStore
from pymatgen.core import Lattice, Structure

from matris_flows.relax.schemas import RelaxBatchOutput, RelaxStatus
from matris_flows.thermo.assess import assess_candidates, maximal_systems
from matris_flows.thermo.jobs import HullMaker
from matris_flows.thermo.references import LocalFileReferences, MissingReferenceError
from matris_flows.thermo.schemas import CandidateDocument, HullKind, ThermoStatus


@pytest.fixture(scope="module")
def sample(lfpo_raw):
    """MP Li-Fe-P-O entries of up to 12 atoms with their stored e_above_hull (a spread of systems)."""
    small = [raw for raw in lfpo_raw if sum(raw["composition"].values()) <= 12]
    picked = small[::12][:25]
    return [(decode(raw), raw["e_above_hull"]) for raw in picked]


@pytest.fixture(scope="module")
def refs(lfpo_path):
    return LocalFileReferences([lfpo_path], snapshot_date="2024-11-21")


def mp_entries_as_relaxations(sample, potential):
    """Relaxations whose model energy is MP's DFT energy in the potential's convention."""
    docs = []
    for entry, _ in sample:
        energy = entry.uncorrected_energy if potential != "chgnet" else entry.energy
        docs.append(relaxation_doc(entry.entry_id, entry.structure, energy, potential=potential))
    return docs


def rocksalt(a, b, lattice=4.3):
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(lattice), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.mark.parametrize("potential", ["matris_10m_mp", "chgnet"])
def test_dft_energies_as_candidates_land_on_mp_values(sample, refs, potential):
    """MP's own energies in each convention reproduce MP's e_above_hull through the job."""
    docs = mp_entries_as_relaxations(sample, potential)
    job = HullMaker(references=refs).make([RelaxBatchOutput(documents=docs[:10]), docs[10:]])
    responses = run_locally(job, store=JobStore(MemoryStore()), ensure_success=True)
    result = responses[job.uuid][1].output
    assert not result.published  # no candidates store: the documents stay in the output
    out = result.documents
    assert [d.candidate_id for d in out] == [d.candidate_id for d in docs] == result.candidate_ids
    assert all(isinstance(d, CandidateDocument) and d.thermo_status is ThermoStatus.OK for d in out)
    errors = [abs(d.e_above_hull - stored) for d, (_, stored) in zip(out, sample, strict=True)]
    # Structure-based oxide-type detection can differ from MP's label on odd oxygen networks.
    assert sorted(errors)[-3] < 1e-6 and sum(e < 1e-6 for e in errors) >= len(errors) - 2
    for doc in out:
        assert doc.hull_kind is HullKind.MP
        assert doc.reference.provider == "local_files" and doc.reference.n_entries > 0
        assert doc.is_stable == (doc.e_above_hull <= 0.0)
        assert doc.e_above_hull_campaign <= max(doc.e_above_hull, 0) + 1e-9
        assert sum(p.amount for p in doc.decomposes_to) == pytest.approx(1.0)
        assert all(p.material_id.startswith("mp-") for p in doc.decomposes_to)
        assert doc.corrected_energy_per_atom == pytest.approx(doc.energy_per_atom + doc.energy_correction_per_atom)
        if potential == "chgnet":
            assert doc.energy_correction_per_atom == 0.0  # never MP2020 twice


def test_fe_oxide_with_corrected_energy_labelled_chgnet_is_not_corrected_twice(refs, lfpo_raw):
    fe_oxides = (decode(r) for r in lfpo_raw if r["composition"] in ({"Fe": 1.0, "O": 1.0}, {"Fe": 2.0, "O": 2.0}))
    feo = min(fe_oxides, key=lambda e: e.energy_per_atom)
    right = assess_candidates([relaxation_doc("feo", feo.structure, feo.energy, "chgnet")], refs)[0]
    wrong = assess_candidates([relaxation_doc("feo", feo.structure, feo.energy, "matris_10m_mp")], refs)[0]
    stored = next(r["e_above_hull"] for r in lfpo_raw if r["entry_id"] == feo.entry_id)
    assert right.e_above_hull == pytest.approx(stored, abs=1e-6)
    assert wrong.e_above_hull - right.e_above_hull == pytest.approx((-0.687 - 2.256) / 2, abs=1e-3)


def test_failed_rejected_and_unreferenced_candidates_are_documented_not_dropped(sample, refs):
    entry = sample[0][0]
    good = relaxation_doc("good", entry.structure, entry.uncorrected_energy)
    failed = relaxation_doc("failed", entry.structure, None, status=RelaxStatus.FAILED, failure_reason="NaN energy")
    rejected = relaxation_doc("po", rocksalt("Po", "O", 5.0), -10.0)
    nacl = relaxation_doc("nacl", rocksalt("Na", "Cl", 5.6), -6.8)
    out = assess_candidates([good, failed, rejected, nacl], refs)
    assert [d.thermo_status for d in out] == [
        ThermoStatus.OK, ThermoStatus.RELAX_FAILED, ThermoStatus.REJECTED, ThermoStatus.NO_REFERENCE
    ]
    assert "NaN energy" in out[1].thermo_failure_reason and out[1].e_above_hull is None
    assert "POTCAR" in out[2].thermo_failure_reason
    assert "Cl-Na" in out[3].thermo_failure_reason and out[3].e_above_hull is None
    with pytest.raises(MissingReferenceError, match="Cl-Na"):
        assess_candidates([nacl], refs, raise_on_missing_reference=True)


def test_new_stable_phases_shadow_each_other_on_the_campaign_hull(refs):
    # two LiFeO2 candidates far below the MP hull: both negative vs MP, only the lower one on the campaign hull
    structure = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.16), ["Li", "Fe", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]
    )
    hull = assess_candidates([relaxation_doc("probe", structure, -60.0, "chgnet")], refs)[0]
    e_hull = hull.corrected_energy_per_atom - hull.e_above_hull  # MP hull energy at this composition
    n = len(structure)
    low = relaxation_doc("low", structure, (e_hull - 0.3) * n, "chgnet")
    high = relaxation_doc("high", structure, (e_hull - 0.1) * n, "chgnet")
    out = assess_candidates([low, high], refs, stability_threshold=0.05)
    assert [d.e_above_hull for d in out] == pytest.approx([-0.3, -0.1])
    assert [d.e_above_hull_campaign for d in out] == pytest.approx([0.0, 0.2])
    assert all(d.is_stable and d.stability_threshold == 0.05 for d in out)


def test_threshold_decides_is_stable(sample, refs):
    docs = mp_entries_as_relaxations(sample, "chgnet")
    strict = assess_candidates(docs, refs)
    loose = assess_candidates(docs, refs, stability_threshold=0.1)
    assert sum(d.is_stable for d in loose) > sum(d.is_stable for d in strict)
    assert all(d.is_stable == (d.e_above_hull <= 0.1) for d in loose)


def test_mixing_potentials_in_one_hull_is_refused(sample, refs):
    entry = sample[0][0]
    docs = [relaxation_doc("a", entry.structure, -10.0, "chgnet"), relaxation_doc("b", entry.structure, -10.0)]
    with pytest.raises(ValueError, match="mix potentials"):
        assess_candidates(docs, refs)


def test_not_mp_compatible_potential_gets_a_campaign_internal_hull(sample, refs):
    li = Structure(Lattice.cubic(3.44), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    o2 = Structure(Lattice.cubic(6.0), ["O", "O"], [[0, 0, 0], [0.2, 0, 0]])
    elements = [relaxation_doc("el-li", li, -3.8, "matris_10m_omat"), relaxation_doc("el-o", o2, -9.8, "matris_10m_omat")]
    li2o = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.6), ["O", "Li"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    n = len(li2o)
    candidate = relaxation_doc("li2o", li2o, -4.8 * n, "matris_10m_omat")
    job = HullMaker(references=refs).make([candidate], elemental_references=elements)
    out = run_locally(job, store=JobStore(MemoryStore()), ensure_success=True)[job.uuid][1].output.documents[0]
    assert out.hull_kind is HullKind.CAMPAIGN_INTERNAL and out.reference.provider == "campaign_internal"
    assert "campaign-internal" in out.reference.note and "matris_10m_omat" in out.reference.source
    assert out.energy_correction_per_atom == 0.0
    # Li2O against Li (-1.9 eV/atom) and O (-4.9 eV/atom): -4.8 - (2 * -1.9 + -4.9) / 3
    assert out.formation_energy_per_atom == pytest.approx(-4.8 - (2 * -1.9 - 4.9) / 3)
    assert out.e_above_hull == pytest.approx(out.formation_energy_per_atom)  # below the element-only hull
    with pytest.raises(ValueError, match="not_mp_compatible"):
        assess_candidates([candidate], refs)


def test_maximal_systems_group_subsystems_into_the_largest():
    systems = [frozenset(s.split("-")) for s in ("Li-O", "Fe-O", "Fe-Li-O", "Li-P-O", "Na")]
    assert maximal_systems(systems) == [frozenset({"Fe", "Li", "O"}), frozenset({"Li", "O", "P"}), frozenset({"Na"})]


def test_hull_maker_serialises_with_its_reference_provider(refs):
    maker = HullMaker(references=refs, stability_threshold=0.1)
    restored = HullMaker.from_dict(maker.as_dict())
    assert restored.references.paths == refs.paths and restored.stability_threshold == 0.1


def test_relaxation_outputs_are_read_in_every_shape_jobflow_hands_over(sample):
    from monty.json import jsanitize

    from matris_flows.thermo.assess import flatten_relaxations

    docs = mp_entries_as_relaxations(sample[:3], "chgnet")
    batch = RelaxBatchOutput(documents=docs[:2])
    as_stored = jsanitize(batch, strict=True, enum_values=True)  # what a JobStore holds
    flat = flatten_relaxations([batch, [docs[2]], as_stored, jsanitize(docs[2], strict=True, enum_values=True)])
    assert [d.candidate_id for d in flat] == [d.candidate_id for d in [*docs, *docs[:2], docs[2]]]
    assert flat[3].structure == docs[0].structure


def test_hull_job_publishes_its_documents_to_the_candidates_store(sample, refs):
    """With a candidates store the documents go there (one per candidate, small) and not into the output."""
    docs = mp_entries_as_relaxations(sample, "chgnet")
    candidates = MemoryStore(key="candidate_id")
    store = JobStore(MemoryStore(), additional_stores={"candidates": candidates})
    job = HullMaker(references=refs, campaign="lfpo", campaign_hull=False).make(docs, relax_job="relax-uuid")
    result = run_locally(job, store=store, ensure_success=True)[job.uuid][1].output
    assert result.published and result.documents is None and result.n_ok == len(docs)
    with store:
        stored = {d["candidate_id"]: d for d in candidates.query({"campaign": "lfpo"})}
        assert stored.keys() == {d.candidate_id for d in docs}
        for doc in stored.values():
            assert doc["relaxation"]["relax_job"] == "relax-uuid" and "forces" not in doc["relaxation"]
            assert doc["e_above_hull_campaign"] is None  # left to the campaign-wide step
            assert isinstance(doc["spacegroup"], int) and doc["elements"] == sorted(doc["chemsys"].split("-"))


def test_unconverged_relaxations_are_never_stable_unless_allowed(refs):
    """An unconverged relaxation far below the hull is flagged, not stable; the spec's allow_unconverged lets it be."""
    structure = rocksalt("Li", "O", 4.6)  # LiO: no MP phase at this energy
    probe = assess_candidates([relaxation_doc("probe", structure, -10.0, "chgnet")], refs)[0]
    e_hull = probe.corrected_energy_per_atom - probe.e_above_hull
    n = len(structure)
    docs = [
        relaxation_doc("done", structure, (e_hull - 0.2) * n, "chgnet"),
        relaxation_doc("stuck", structure, (e_hull - 0.3) * n, "chgnet", status=RelaxStatus.NOT_CONVERGED),
    ]
    out = assess_candidates(docs, refs)
    assert [d.e_above_hull for d in out] == pytest.approx([-0.2, -0.3])
    assert [d.is_stable for d in out] == [True, False]
    assert out[1].relaxation.status is RelaxStatus.NOT_CONVERGED and out[1].is_stable_campaign is False
    for allowed, expected in ((False, [True, False]), (True, [True, True])):
        job = HullMaker(references=refs, allow_unconverged=allowed).make(docs)
        result = run_locally(job, store=JobStore(MemoryStore()), ensure_success=True)[job.uuid][1].output
        assert [d.is_stable for d in result.documents] == expected
        assert result.n_stable == sum(expected)


@pytest.mark.parametrize("allowed", [False, True])
def test_spec_allow_unconverged_reaches_both_hull_jobs(tmp_path, allowed):
    from matris_flows.campaign.flow import ScreeningMaker
    from matris_flows.campaign.spec import load_spec
    from matris_flows.thermo.jobs import CampaignHullMaker

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        "name: gate\ngeneration:\n  prototypes:\n    element_lists: [[Li], [O]]\n    prototypes: [rocksalt]\n"
        f"hull:\n  allow_unconverged: {str(allowed).lower()}\n"
    )
    maker = ScreeningMaker.from_spec(load_spec(spec_file), tmp_path)
    assert maker.hull.allow_unconverged is allowed
    campaign_hull = [j for j in maker.make().jobs if isinstance(getattr(j, "maker", None), CampaignHullMaker)]
    assert len(campaign_hull) == 1 and campaign_hull[0].maker.allow_unconverged is allowed


def test_elemental_corners_use_the_campaign_potential_options():
    """The corners of an internal hull come from the same weights as the candidates (loader options)."""
    from matris_flows.relax.jobs import RelaxMaker
    from matris_flows.relax.schemas import RelaxSettings
    from matris_flows.thermo.consistent_references import ConsistentReferenceSet, ConsistentReferencesMaker

    settings = RelaxSettings(fmax=0.05, max_steps=200, engine="ase")
    lj = "ase.calculators.lj:LennardJones"
    energies = {}
    for epsilon in (1.0, 2.0):
        options = {"calculator_kwargs": {"sigma": 2.3, "epsilon": epsilon, "rc": 6.0}}
        relax = RelaxMaker(potential=lj, settings=settings, device="cpu", potential_options=options)
        # Cu is outside the shipped Li-Fe-O references: its corner is relaxed by the references job itself
        maker = ConsistentReferencesMaker(references=LocalFileReferences(), relax=relax, elements=["Cu"])
        job = maker.make()
        store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
        responses = run_locally(job, store=store, ensure_success=True)
        output = responses[job.uuid][max(responses[job.uuid])].output
        output = output.resolve(store) if hasattr(output, "resolve") else output
        reference_set = ConsistentReferenceSet.model_validate(output if isinstance(output, dict) else output.model_dump())
        assert reference_set.systems == [] and reference_set.elemental_corners == ["Cu"]
        (phase,) = reference_set.phases
        assert phase.entry_id == "elemental-ref-Cu" and phase.usable, phase.failure_reason
        energies[epsilon] = phase.energy
    # LJ energy at the relaxed (sigma-set) geometry scales with epsilon: the options were used
    assert energies[2.0] == pytest.approx(2 * energies[1.0], rel=1e-3)
