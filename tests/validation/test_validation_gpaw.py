"""Offline backend: GPAW relaxations -> consistent Na-Cl hull -> validation documents; failures."""

from __future__ import annotations

import sys
import time

import pytest
from jobflow import JobStore, run_locally
from maggma.stores import MemoryStore
from monty.json import MontyDecoder, jsanitize
from pymatgen.core import Composition
from validation_helpers import make_candidate, requires_gpaw

from matris_flows.validation.flows import GpawHullValidationMaker
from matris_flows.validation.gpaw_backend import GpawRelaxMaker, GpawSettings
from matris_flows.validation.hull import build_consistent_hull_validations, direct_e_above_hull
from matris_flows.validation.jobs import ValidationMaker
from matris_flows.validation.join import (
    CONFIRMED_STABLE_QUERY,
    VALIDATED_QUERY,
    attach_validations,
    update_candidate_store,
)
from matris_flows.validation.schemas import (
    CalculationRole,
    DftCalculationDocument,
    ValidationReport,
    ValidationStatus,
)
from matris_flows.validation.selection import SelectionSettings


def _run_stage(maker: ValidationMaker, candidates, references) -> tuple[ValidationReport, JobStore]:
    stage = maker.make(candidates, references)
    store = JobStore(MemoryStore())
    run_locally(stage, store=store, log=False)
    return store.get_output(stage.uuid, which="last", load=True), store


def _calculations(store: JobStore) -> list[DftCalculationDocument]:
    docs = store.query({"output.@class": "DftCalculationDocument"}, properties=["output"])
    return [DftCalculationDocument.model_validate({k: v for k, v in d["output"].items() if not k.startswith("@")})
            for d in docs]


@requires_gpaw
@pytest.mark.slow
def test_nacl_consistent_hull_end_to_end(tmp_path, monkeypatch, nacl_structures, nacl_reference_entries,
                                         cheap_gpaw_relax_maker):
    monkeypatch.chdir(tmp_path)
    candidates = [
        make_candidate("nacl-cscl", nacl_structures["NaCl_cscl"], 0.030, formation_energy_per_atom=-1.82),
        make_candidate("nacl-rocksalt-refound", nacl_structures["NaCl_rocksalt_mlip"], 0.0),
        make_candidate("nacl-far", nacl_structures["NaCl_cscl"], 0.300),
    ]
    backend = GpawHullValidationMaker(relax_maker=cheap_gpaw_relax_maker)
    maker = ValidationMaker(selection=SelectionSettings(top_k=2, max_e_above_hull=0.05), backend_maker=backend)

    start = time.perf_counter()
    report, store = _run_stage(maker, candidates, nacl_reference_entries)
    elapsed = time.perf_counter() - start

    assert report.n_selected == 1 and report.n_validated == 1
    assert report.skipped["nacl-rocksalt-refound"] == "duplicate of ref-NaCl"
    assert "e_above_hull" in report.skipped["nacl-far"]
    (doc,) = report.documents

    # DFT relax of elements (Na bcc, Cl2 in a box), the rocksalt reference and the candidate.
    calcs = {c.label: c for c in _calculations(store)}
    assert {c.role for c in calcs.values()} == set(CalculationRole)
    assert set(calcs) == {"Na", "Cl", "ref-NaCl", "nacl-cscl"}
    assert all(c.succeeded for c in calcs.values()), {k: c.failure_reason for k, c in calcs.items()}
    assert calcs["Cl"].molecule_in_box and calcs["Cl"].structure.lattice.abc == pytest.approx((7.0, 7.2, 7.5))
    assert all(c.settings == calcs["Na"].settings for c in calcs.values())  # one consistent setting

    # The hull job agrees with a direct PhaseDiagram and with the plain difference to rocksalt.
    direct = direct_e_above_hull(
        {label: (c.structure.composition, c.energy_per_atom) for label, c in calcs.items()}, "nacl-cscl"
    )
    assert doc.dft_e_above_hull == pytest.approx(direct, abs=1e-9)
    assert doc.dft_e_above_hull == pytest.approx(
        calcs["nacl-cscl"].energy_per_atom - calcs["ref-NaCl"].energy_per_atom, abs=1e-9
    )
    assert 0.10 < doc.dft_e_above_hull < 0.25  # CsCl-type NaCl: ~0.17 eV/atom above rocksalt in PBE
    formation = calcs["ref-NaCl"].energy_per_atom - (
        calcs["Na"].energy_per_atom + calcs["Cl"].energy_per_atom
    ) / 2
    assert -2.1 < formation < -1.5  # rocksalt NaCl: about -1.85 eV/atom with converged settings
    assert doc.dft_formation_energy_per_atom == pytest.approx(
        doc.dft_e_above_hull + formation, abs=1e-9
    )

    # Verdict and the MLIP-vs-DFT comparison.
    assert doc.status is ValidationStatus.NOT_CONFIRMED and doc.validated
    assert doc.dft_decomposes_to == ["ref-NaCl"]
    assert "consistent GPAW PBE hull of Cl-Na" in doc.hull_description
    assert doc.e_above_hull_error == pytest.approx(0.030 - doc.dft_e_above_hull)
    assert doc.formation_energy_error == pytest.approx(-1.82 - doc.dft_formation_energy_per_atom)
    assert doc.residual_max_force_on_mlip_structure > 0.01  # the off-centre Cl is pushed back
    assert doc.residual_max_stress_on_mlip_structure is not None
    assert doc.mlip_dft_rmsd is not None and doc.mlip_dft_rmsd < 0.1
    assert doc.dft_relax_converged
    assert doc.code == "GPAW" and doc.code_version and doc.package_versions["gpaw"] == doc.code_version
    assert doc.settings["ecut"] == 300 and doc.settings["spin_polarized"] is False
    assert report.e_above_hull_mae == pytest.approx(abs(doc.e_above_hull_error))

    # Joined into candidate documents, and queryable.
    joined = attach_validations(candidates, report.documents)
    assert joined[0].validation["status"] == "not_confirmed" and joined[1].validation is None
    candidate_store = MemoryStore(key="candidate_id")
    candidate_store.connect()
    candidate_store.update([jsanitize(c.model_dump(), strict=True) for c in candidates])
    assert update_candidate_store(candidate_store, report.documents) == 1
    assert [d["candidate_id"] for d in candidate_store.query(VALIDATED_QUERY)] == ["nacl-cscl"]
    assert candidate_store.count(CONFIRMED_STABLE_QUERY) == 0

    print(f"Na-Cl GPAW validation: {elapsed:.1f} s; CsCl-NaCl DFT e_above_hull {doc.dft_e_above_hull:.3f} "
          f"(MLIP {doc.mlip_e_above_hull:.3f}); NaCl formation {formation:.3f} eV/atom")
    assert elapsed < 240


@requires_gpaw
def test_scf_failure_marks_candidate_failed(tmp_path, monkeypatch, nacl_structures):
    monkeypatch.chdir(tmp_path)
    maker = GpawRelaxMaker(settings=GpawSettings(ecut=250, kpoint_density=1.5, scf_max_iterations=2), steps=1)
    job = maker.make(nacl_structures["NaCl_cscl"], label="nacl-cscl")
    store = JobStore(MemoryStore())
    run_locally(job, store=store, log=False, ensure_success=True)  # the job itself does not fail
    calc = MontyDecoder().process_decoded(store.get_output(job.uuid))
    assert not calc.succeeded
    assert calc.failure_reason == "SCF not converged: KohnShamConvergenceError after 2 SCF iterations"

    ok = {"succeeded": True, "code": "GPAW", "settings": calc.settings}
    elements = [
        DftCalculationDocument(label=el, role="element", formula=el, input_structure=nacl_structures[el],
                               structure=nacl_structures[el], energy=e * len(nacl_structures[el]),
                               energy_per_atom=e, **ok)
        for el, e in (("Na", -1.3), ("Cl", -1.7))
    ]
    candidate = make_candidate("nacl-cscl", nacl_structures["NaCl_cscl"], 0.03)
    (doc,) = build_consistent_hull_validations([candidate.model_dump()], [*elements, calc, None])
    assert doc.status is ValidationStatus.VALIDATION_FAILED and not doc.validated
    assert doc.failure_reason.startswith("SCF not converged")
    assert doc.mlip_e_above_hull == 0.03  # the MLIP result stays beside the failure


def test_missing_dft_code_fails_candidates_not_campaign(tmp_path, monkeypatch, nacl_structures,
                                                        nacl_reference_entries):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "gpaw", None)  # import gpaw -> ImportError, as on a bare machine
    candidates = [make_candidate("nacl-cscl", nacl_structures["NaCl_cscl"], 0.03)]
    maker = ValidationMaker(backend_maker=GpawHullValidationMaker())
    report, _ = _run_stage(maker, candidates, nacl_reference_entries)
    (doc,) = report.documents
    assert doc.status is ValidationStatus.VALIDATION_FAILED
    assert "DFT code missing" in doc.failure_reason and "element reference failed" in doc.failure_reason
    assert report.n_failed == 1


def test_failed_reference_phase_is_left_out_and_crashed_job_reported(nacl_structures):
    def calc(label, role, key, e, **kw):
        s = nacl_structures[key]
        return DftCalculationDocument(label=label, role=role, formula=s.composition.reduced_formula,
                                      input_structure=s, structure=s, energy=e * len(s), energy_per_atom=e,
                                      succeeded=True, code="GPAW", settings={"xc": "PBE"}, **kw)

    calcs = [
        calc("Na", "element", "Na", -1.3),
        calc("Cl", "element", "Cl", -1.7),
        DftCalculationDocument(label="ref-NaCl", role="reference", formula="NaCl",
                               input_structure=nacl_structures["NaCl_rocksalt"], succeeded=False,
                               failure_reason="SCF not converged", code="GPAW", settings={}),
        calc("nacl-cscl", "candidate", "NaCl_cscl", -3.2, initial_max_force=0.2),
    ]
    candidates = [make_candidate("nacl-cscl", nacl_structures["NaCl_cscl"], 0.03).model_dump(),
                  make_candidate("nacl-other", nacl_structures["NaCl_rocksalt_mlip"], 0.0).model_dump()]
    cscl, other = build_consistent_hull_validations(candidates, calcs)
    assert "failed reference phases left out: ref-NaCl" in cscl.hull_description
    assert cscl.status is ValidationStatus.CONFIRMED_STABLE and cscl.dft_e_above_hull == pytest.approx(0.0)
    assert cscl.dft_formation_energy_per_atom == pytest.approx(-3.2 + 1.5)
    assert cscl.residual_max_force_on_mlip_structure == 0.2
    assert other.status is ValidationStatus.VALIDATION_FAILED and "did not return" in other.failure_reason
    assert direct_e_above_hull({"Na": ("Na", -1.3), "Cl": ("Cl", -1.7), "x": (Composition("NaCl"), -1.0)}, "x") > 0
