"""Fixtures of the validation-stage tests: Na-Cl structures and reference entries."""

from __future__ import annotations

import os

import pytest
from ase.build import bulk
from pymatgen.core import Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry
from pymatgen.io.ase import AseAtomsAdaptor

from matris_flows.validation.gpaw_backend import GpawRelaxMaker, GpawSettings, molecule_in_box

# Two serial GPAW/BLAS processes share the 2 CI cores; threads would only oversubscribe them.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def nacl_structures() -> dict[str, Structure]:
    """Na (bcc), Cl2 in a box, rocksalt NaCl and CsCl-type NaCl, near their PBE geometries."""
    adaptor = AseAtomsAdaptor()
    cscl = adaptor.get_structure(bulk("NaCl", "cesiumchloride", a=3.40))
    # Off-centre Cl: the MLIP structure then carries a residual DFT force to report.
    cscl.translate_sites([1], [0.0, 0.0, 0.04], frac_coords=False)
    return {
        "Na": adaptor.get_structure(bulk("Na", "bcc", a=4.20)),
        "Cl": molecule_in_box("Cl", 1.99),
        "NaCl_rocksalt": adaptor.get_structure(bulk("NaCl", "rocksalt", a=5.69)),
        "NaCl_rocksalt_mlip": adaptor.get_structure(bulk("NaCl", "rocksalt", a=5.62)),
        "NaCl_cscl": cscl,
    }


@pytest.fixture(scope="session")
def nacl_reference_entries(nacl_structures) -> list[ComputedStructureEntry]:
    """MP-like reference entries of Na-Cl (energies only decide which phases are stable)."""
    return [
        ComputedStructureEntry(nacl_structures["Na"], -1.31, entry_id="ref-Na"),
        ComputedStructureEntry(nacl_structures["Cl"], 2 * -1.84, entry_id="ref-Cl"),
        ComputedStructureEntry(nacl_structures["NaCl_rocksalt"], 2 * -3.43, entry_id="ref-NaCl"),
    ]


@pytest.fixture
def cheap_gpaw_relax_maker() -> GpawRelaxMaker:
    """GPAW settings low enough for 2-atom cells to take seconds on one core (test only)."""
    return GpawRelaxMaker(settings=GpawSettings(ecut=300, kpoint_density=2.5), steps=30)
