"""VASP backend: MP input generation, parsing the shared NiO run into an MP2020 entry, failure handling."""

from __future__ import annotations

import gzip
import json

import pytest
from jobflow import JobStore, run_locally
from maggma.stores import MemoryStore
from monty.json import MontyDecoder
from pymatgen.entries.computed_entries import ComputedEntry
from pymatgen.io.vasp import Incar, Kpoints, Poscar
from reference_data import shared_data_dir
from validation_helpers import make_candidate

from matris_flows.validation.jobs import ValidationMaker
from matris_flows.validation.schemas import ValidationStatus
from matris_flows.validation.selection import SelectionSettings
from matris_flows.validation.vasp import (
    VaspValidationMaker,
    mp2020_corrected_entry,
    parse_vasp_task,
    vasp_validation_from_task,
    write_mp_vasp_inputs,
)

NIO_DIR = shared_data_dir() / "vasp_nio_static"
needs_shared_data = pytest.mark.skipif(not NIO_DIR.exists(), reason=f"shared data missing: {NIO_DIR}")


@pytest.fixture(scope="module")
def nio_task():
    return parse_vasp_task(NIO_DIR)


@pytest.fixture(scope="module")
def nio_structure():
    return Poscar.from_file(NIO_DIR / "POSCAR.gz").structure


@needs_shared_data
def test_mp_inputs_written_as_mp_would(tmp_path, nio_structure):
    folders = write_mp_vasp_inputs(nio_structure, tmp_path, potcar_spec=True)
    assert list(folders) == ["MP GGA relax 1", "MP GGA relax 2", "MP GGA static"]

    relax = Incar.from_file(folders["MP GGA relax 1"] / "INCAR")
    static = Incar.from_file(folders["MP GGA static"] / "INCAR")
    for incar in (relax, static):
        # MP GGA+U for an oxide of Ni: U(Ni) = 6.2 eV, Dudarev, 520 eV, spin-polarised, Ni high-spin start.
        assert incar["ENCUT"] == 520
        assert incar["LDAU"] is True and incar["LDAUTYPE"] == 2
        assert incar["LDAUU"] == [6.2, 0] and incar["LDAUL"] == [2, 0]
        assert incar["ISPIN"] == 2 and incar["MAGMOM"] == [5.0, 0.6]
        assert incar["EDIFF"] == pytest.approx(1e-4) and incar["LASPH"] is True
    assert relax["ISIF"] == 3 and relax["IBRION"] == 2 and relax["NSW"] == 99
    assert static["NSW"] == 0 and static["LREAL"] is False

    kpoints = Kpoints.from_file(folders["MP GGA static"] / "KPOINTS")
    assert kpoints.style.name == "Gamma"
    assert "grid density" in kpoints.comment  # MP's reciprocal density, not a fixed mesh
    assert (folders["MP GGA relax 1"] / "POTCAR.spec").read_text().split() == ["Ni_pv", "O"]
    assert Poscar.from_file(folders["MP GGA relax 1"] / "POSCAR").structure.matches(nio_structure)


@needs_shared_data
def test_flow_has_mp_double_relax_static(nio_structure):
    candidate = make_candidate("nio-1", nio_structure, 0.0)
    flow = VaspValidationMaker().make([candidate], [])
    names = [job.name for job, _ in flow.iterflow()]
    assert names == ["MP GGA relax 1", "MP GGA relax 2", "MP GGA static", "VASP validation nio-1"]


@needs_shared_data
def test_parse_nio_into_mp2020_entry(nio_task):
    assert str(nio_task.run_type) == "GGA+U"
    assert str(nio_task.calc_type) == "GGA+U Static"
    entry = mp2020_corrected_entry(nio_task)
    assert entry.composition.reduced_formula == "NiO"
    assert entry.uncorrected_energy == pytest.approx(-4.52549041, abs=1e-8)
    # MP2020: oxide anion correction -0.687 eV/O plus the GGA/GGA+U mixing correction -2.541 eV/Ni.
    assert entry.correction == pytest.approx(-3.228, abs=1e-6)
    names = {adj.name: adj.value for adj in entry.energy_adjustments}
    assert names["MP2020 anion correction (oxide)"] == pytest.approx(-0.687)
    assert names["MP2020 GGA/GGA+U mixing correction (Ni)"] == pytest.approx(-2.541)
    assert entry.energy_per_atom == pytest.approx((-4.52549041 - 3.228) / 2, abs=1e-8)


@needs_shared_data
def test_nio_validation_document_on_mp_hull(nio_task):
    refs = json.load(gzip.open(shared_data_dir() / "mp_elemental_refs_2023-02-07.json.gz"), cls=MontyDecoder)
    references = [refs["Ni"], refs["O"]]
    candidate = make_candidate("nio-1", nio_task.structure, 0.0, formation_energy_per_atom=-1.2, hull_kind="mp")
    doc = vasp_validation_from_task(candidate, nio_task, references, first_relax_task=nio_task)
    assert doc.validated and doc.backend == "vasp" and doc.code == "VASP" and doc.code_version == "6.4.1"
    assert doc.dft_corrected_energy_per_atom == pytest.approx(-3.876745205)
    expected_form = doc.dft_corrected_energy_per_atom - (refs["Ni"].energy_per_atom + refs["O"].energy_per_atom) / 2
    assert doc.dft_formation_energy_per_atom == pytest.approx(expected_form)
    # Only the elements on the hull: the distance is the formation energy.
    assert doc.dft_e_above_hull == pytest.approx(expected_form)
    assert doc.dft_decomposes_to == sorted(str(refs[el].entry_id) for el in ("Ni", "O"))
    assert "MP2020" in doc.hull_description
    assert doc.e_above_hull_error == pytest.approx(0.0 - doc.dft_e_above_hull)
    # Both formation energies MP2020-corrected on the MP hull: like with like, so the error is reported...
    assert doc.formation_energy_error == pytest.approx(-1.2 - expected_form)
    # ...and not for a candidate whose MLIP energies are on another (campaign-internal) scale.
    internal = make_candidate("nio-2", nio_task.structure, 0.0, formation_energy_per_atom=-1.2, hull_kind="campaign_internal")
    assert vasp_validation_from_task(internal, nio_task, references).formation_energy_error is None

    # A known NiO 50 meV/atom above the candidate: the candidate is measured from outside the MP
    # hull like the MLIP e_above_hull, so it reads -0.05 (the old hull put it inside and read 0).
    # (Elements shifted so that NiO forms: this NiO test run lies above the real elemental references.)
    known = ComputedEntry("NiO", 2 * (doc.dft_corrected_energy_per_atom + 0.05), entry_id="mp-known-NiO")
    elements = [ComputedEntry("Ni", -3.0, entry_id="ni"), ComputedEntry("O2", -6.0, entry_id="o")]
    below = vasp_validation_from_task(candidate, nio_task, [*elements, known])
    assert below.dft_e_above_hull == pytest.approx(-0.05)
    assert below.dft_decomposes_to == ["mp-known-NiO"] and below.e_above_hull_error == pytest.approx(0.05)
    assert doc.residual_max_force_on_mlip_structure == pytest.approx(0.0, abs=1e-6)


def test_missing_vasp_marks_candidates_failed_and_campaign_completes(tmp_path, monkeypatch, nacl_structures):
    # No VASP, no POTCARs here: every VASP job fails, the stage still reports every candidate.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PMG_VASP_PSP_DIR", raising=False)
    candidate = make_candidate("nacl-cscl", nacl_structures["NaCl_cscl"], 0.03)
    maker = ValidationMaker(selection=SelectionSettings(), backend_maker=VaspValidationMaker())
    stage = maker.make([candidate], [])
    store = JobStore(MemoryStore())
    run_locally(stage, store=store, log=False)
    report = store.get_output(stage.uuid, which="last", load=True)
    (doc,) = report.documents
    assert doc.status is ValidationStatus.VALIDATION_FAILED and not doc.validated
    assert "VASP job failed" in doc.failure_reason
    assert report.n_failed == 1 and report.n_validated == 0
