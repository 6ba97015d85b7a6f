"""The relaxation stage: the jobflow job, physically right lattice constants, engine agreement, failure paths."""

import numpy as np
import pytest
from calculators import ExpandingCalculator, NaNCalculator, RaisingCalculator
from jobflow import JobStore, run_locally
from maggma.stores import MemoryStore
from pymatgen.core import Lattice, Structure

from matris_flows.potentials.loader import Potential, load_potential
from matris_flows.potentials.naming import parse_potential
from matris_flows.relax.engine import relax_structures
from matris_flows.relax.jobs import RelaxMaker
from matris_flows.relax.schemas import RelaxBatchOutput, RelaxSettings, RelaxStatus


def silicon(a=5.43):
    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(a), ["Si"], [[0, 0, 0]])


def rocksalt(a=5.5):
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def rattled(structure, amplitude=0.05, seed=0):
    rng = np.random.default_rng(seed)
    out = structure.copy()
    for i in range(len(out)):
        out.translate_sites([i], rng.normal(0, amplitude, 3), frac_coords=False)
    return out


def fake_potential(calculator) -> Potential:
    return Potential(spec=parse_potential("ase.calculators.emt:EMT"), calculator=calculator, device="cpu")


def test_tiny_matris_relaxation_through_the_job(tiny_matris_checkpoint):
    structures = [rattled(silicon(), seed=1), rattled(rocksalt(), seed=2)]
    job = RelaxMaker(
        potential=str(tiny_matris_checkpoint), device="cpu", settings=RelaxSettings(max_steps=30)
    ).make(structures, ["si-1", "nacl-1"])
    store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    responses = run_locally(job, store=store, ensure_success=True)
    output = responses[job.uuid][1].output
    assert isinstance(output, RelaxBatchOutput)
    assert [d.candidate_id for d in output.documents] == ["si-1", "nacl-1"]
    for document in output.documents:
        assert document.status in (RelaxStatus.CONVERGED, RelaxStatus.NOT_CONVERGED)
        assert np.isfinite(document.energy) and document.energy_per_atom == pytest.approx(document.energy / document.nsites)
        assert 0 <= document.n_steps <= 30
        assert np.asarray(document.forces).shape == (document.nsites, 3)
        assert np.asarray(document.stress).shape == (3, 3)
        assert document.potential.kind == "matris_checkpoint"
        assert len(document.potential.checkpoint_sha256) == 64
        assert document.potential.package_versions["matris"].startswith("1.")
        assert document.settings.optimizer == "FIRE" and document.settings.cell_filter == "FrechetCellFilter"
    # The stored output keeps the records in the data store and round-trips from there.
    with store:
        assert "blob_uuid" in store.query_one({"uuid": job.uuid})["output"]["documents"]
    stored = store.get_output(job.uuid, load=True)
    assert stored["documents"][0]["candidate_id"] == "si-1"


@pytest.mark.parametrize(
    ("structure", "expected_a"),
    # MP (PBE) conventional lattice constants, which CHGNet was trained to reproduce.
    [(silicon(5.55), 5.469), (rocksalt(5.50), 5.69)],
    ids=["Si", "NaCl"],
)
def test_chgnet_relaxes_rattled_crystals_to_the_right_lattice_constant(structure, expected_a):
    document = relax_structures([rattled(structure, 0.03)], "chgnet", device="cpu")[0]
    assert document.status is RelaxStatus.CONVERGED
    assert document.max_force < 0.05 + 1e-6
    a = document.structure.volume ** (1 / 3)  # conventional cubic cell, distortion relaxed away
    assert a == pytest.approx(expected_a, rel=0.01)
    assert document.magmoms is not None and len(document.magmoms) == len(structure)


@pytest.mark.parametrize("potential_name", ["chgnet", "tiny_matris"])
def test_batched_and_per_structure_engines_agree(potential_name, tiny_matris_checkpoint):
    name = str(tiny_matris_checkpoint) if potential_name == "tiny_matris" else potential_name
    structures = [rattled(silicon(5.5), 0.04, seed=s) for s in range(2)] + [rattled(rocksalt(5.6), 0.04, seed=3)]
    settings = dict(max_steps=60)
    per_structure = relax_structures(structures, name, RelaxSettings(engine="ase", **settings), device="cpu")
    batched = relax_structures(structures, name, RelaxSettings(engine="torchsim", **settings), device="cpu")
    assert {d.engine for d in per_structure} == {"ase"} and {d.engine for d in batched} == {"torchsim"}
    for a, b in zip(per_structure, batched, strict=True):
        assert a.status is b.status
        assert abs(a.energy_per_atom - b.energy_per_atom) <= 1e-3  # ≤ 1 meV/atom
        assert abs(a.n_steps - b.n_steps) <= 2


def test_every_bad_input_gets_a_status_and_the_rest_finish():
    emt = load_potential("ase.calculators.emt:EMT")
    copper = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.7), ["Cu"], [[0, 0, 0]])
    overlapping = Structure(Lattice.cubic(4.0), ["Cu", "Cu"], [[0, 0, 0], [0.05, 0, 0]])
    unknown = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.7), ["Si"], [[0, 0, 0]])
    disordered = Structure(Lattice.cubic(3.6), [{"Cu": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    documents = relax_structures([copper, overlapping, unknown, disordered, rattled(copper, 0.02)], emt)
    status = [d.status for d in documents]
    assert status[0] is RelaxStatus.CONVERGED and status[4] is RelaxStatus.CONVERGED
    assert documents[1].status is RelaxStatus.FAILED and "overlapping atoms" in documents[1].failure_reason
    assert documents[2].status is RelaxStatus.FAILED and "not supported" in documents[2].failure_reason
    assert "Si" in documents[2].failure_reason
    assert documents[3].status is RelaxStatus.FAILED and "partial occupancies" in documents[3].failure_reason
    assert documents[0].energy == pytest.approx(documents[4].energy, abs=1e-3)
    # The relaxed structure must not drag the potential along (pickled across Dask workers).
    assert getattr(documents[0].structure, "calc", None) is None


def test_element_unknown_to_matris_fails_that_candidate_only(tiny_matris_checkpoint):
    polonium = Structure(Lattice.cubic(3.35), ["Po"], [[0, 0, 0]])
    documents = relax_structures([polonium, silicon()], str(tiny_matris_checkpoint), RelaxSettings(max_steps=3), device="cpu")
    assert documents[0].status is RelaxStatus.FAILED and "Po" in documents[0].failure_reason
    assert documents[1].status is not RelaxStatus.FAILED


def test_nan_energies_and_forces_are_flagged():
    [document] = relax_structures([silicon()], fake_potential(NaNCalculator()))
    assert document.status is RelaxStatus.FAILED
    assert "non-finite energy" in document.failure_reason
    assert document.energy is None


def test_exploding_cell_is_stopped_and_flagged():
    [document] = relax_structures([silicon()], fake_potential(ExpandingCalculator()), RelaxSettings(max_steps=500))
    assert document.status is RelaxStatus.FAILED
    assert "exploding cell" in document.failure_reason
    assert document.n_steps < 500


def test_model_exception_is_a_failed_candidate_not_a_crash():
    [document] = relax_structures([silicon()], fake_potential(RaisingCalculator()))
    assert document.status is RelaxStatus.FAILED
    assert document.failure_reason == "RuntimeError: model exploded"


def test_non_converged_relaxation_keeps_its_last_frame():
    emt = load_potential("ase.calculators.emt:EMT")
    copper = rattled(Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.9), ["Cu"], [[0, 0, 0]]), 0.1)
    [document] = relax_structures([copper], emt, RelaxSettings(max_steps=2))
    assert document.status is RelaxStatus.NOT_CONVERGED
    assert document.n_steps == 2
    assert "not converged within 2 steps" in document.failure_reason
    assert document.structure is not None and np.isfinite(document.energy)


def test_trajectories_go_to_the_data_store():
    emt_maker = RelaxMaker(potential="ase.calculators.emt:EMT", store_trajectories=True, settings=RelaxSettings(max_steps=5))
    copper = rattled(Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.7), ["Cu"], [[0, 0, 0]]), 0.05)
    job = emt_maker.make([copper], ["cu"])
    data = MemoryStore()
    store = JobStore(MemoryStore(), additional_stores={"data": data})
    run_locally(job, store=store, ensure_success=True)
    with store:
        doc = store.query_one({"uuid": job.uuid})
        # The document keeps only references to the blobs (records and frames) in the data store.
        assert "blob_uuid" in doc["output"]["trajectories"] and "blob_uuid" in doc["output"]["documents"]
        assert data.count() == 2
    output = store.get_output(job.uuid, load=True)
    frames = output["trajectories"][0]
    assert frames["candidate_id"] == "cu" and len(frames["energies"]) == output["documents"][0]["n_steps"] + 1


def test_fix_symmetry_keeps_the_space_group():
    emt = load_potential("ase.calculators.emt:EMT")
    copper = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.8), ["Cu"], [[0, 0, 0]])
    copper.perturb(0.02)  # breaks symmetry slightly; FixSymmetry symmetrizes at symprec
    [document] = relax_structures([copper], emt, RelaxSettings(fix_symmetry=True, symprec=0.05))
    assert document.status is RelaxStatus.CONVERGED
    assert document.structure.get_space_group_info(symprec=1e-3)[1] == 225


def test_auto_engine_batches_where_it_was_measured_to_pay(tiny_matris_checkpoint):
    from matris_flows.relax.engine import choose_engine

    auto = RelaxSettings()
    assert choose_engine(auto, load_potential("chgnet", device="cpu")) == "torchsim"
    assert choose_engine(auto, load_potential(str(tiny_matris_checkpoint), device="cpu")) == "ase"
    assert choose_engine(auto, load_potential("ase.calculators.emt:EMT")) == "ase"  # no batched model
    assert choose_engine(RelaxSettings(fix_symmetry=True), load_potential("chgnet", device="cpu")) == "ase"
    assert choose_engine(RelaxSettings(engine="ase"), load_potential("chgnet", device="cpu")) == "ase"
