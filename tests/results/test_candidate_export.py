"""Exported structure files parse back to the stored structures; failed candidates are skipped."""

import logging

import numpy as np
import pytest
from ase.io import read
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from matris_flows.results import export_structures

EXPORTED = ["c01", "c02", "c03", "c04", "c05", "c06", "c07", "c09"]


def _read(path, fmt) -> tuple[Structure, dict]:
    if fmt == "extxyz":
        atoms = read(path, format="extxyz")
        return AseAtomsAdaptor.get_structure(atoms), dict(atoms.info) | (
            {"energy": atoms.get_potential_energy()} if atoms.calc is not None else {}
        )
    return Structure.from_file(path), {}


@pytest.mark.parametrize(("fmt", "ext"), [("cif", "cif"), ("poscar", "vasp"), ("extxyz", "extxyz"), ("json", "json")])
def test_export_round_trip(docs, tmp_path, caplog, fmt, ext):
    with caplog.at_level(logging.WARNING, logger="matris_flows.results.export"):
        paths = export_structures(docs, tmp_path / fmt, fmt)
    assert "c08" in caplog.text  # the failed relaxation is reported, not written
    by_id = {d["candidate_id"]: d for d in docs}
    assert [p.name for p in paths] == [f"{by_id[c]['formula']}_{c}.{ext}" for c in EXPORTED]
    for path, cid in zip(paths, EXPORTED, strict=True):
        doc = by_id[cid]
        expected = Structure.from_dict(doc["structure"])
        got, info = _read(path, fmt)
        assert [s.species_string for s in got] == [s.species_string for s in expected]
        # CIF keeps lattice parameters, not the orientation of the cell
        np.testing.assert_allclose(got.lattice.parameters, expected.lattice.parameters, atol=1e-4)
        diff = got.frac_coords - expected.frac_coords
        np.testing.assert_allclose(diff - np.round(diff), 0, atol=1e-5)
        if fmt == "extxyz":
            assert info["candidate_id"] == cid
            assert info["energy"] == pytest.approx(doc["energy_per_atom"] * len(expected))
            if doc["e_above_hull"] is not None:
                assert info["e_above_hull"] == pytest.approx(doc["e_above_hull"])


def test_export_unknown_format(docs, tmp_path):
    with pytest.raises(ValueError, match="unknown structure format"):
        export_structures(docs, tmp_path, "xsf")
