"""Hull energies against real MP data: the reference path reproduces MP's own numbers."""

import numpy as np
import pytest
from hull_helpers import decode
from pymatgen.analysis.phase_diagram import PatchedPhaseDiagram, PhaseDiagram
from pymatgen.core import Composition

from matris_flows.thermo.hull import HullIndex, energy_above_hull
from matris_flows.thermo.references import LocalFileReferences


@pytest.fixture(scope="module")
def lfpo(lfpo_raw):
    return [decode(raw) for raw in lfpo_raw]


def test_rebuilt_hull_reproduces_mp_e_above_hull(lfpo, lfpo_raw, lfpo_path):
    entries = LocalFileReferences([lfpo_path]).get_entries("Li-Fe-P-O")
    by_id = {e.entry_id: e for e in entries}
    stored = np.array([raw["e_above_hull"] for raw in lfpo_raw])
    ordered = [by_id[raw["entry_id"]] for raw in lfpo_raw]

    pymatgen_pd = PhaseDiagram(entries)
    pmg = np.array([pymatgen_pd.get_e_above_hull(e, allow_negative=True) for e in ordered])
    ours = energy_above_hull(HullIndex.from_entries(entries), ordered)
    assert np.abs(pmg - stored).max() <= 1e-6
    assert np.abs(np.array([r.e_above_hull for r in ours]) - stored).max() <= 1e-6
    stored_form = np.array([raw["e_form_per_atom"] for raw in lfpo_raw])
    assert np.abs(np.array([r.formation_energy_per_atom for r in ours]) - stored_form).max() <= 1e-6
    assert sum(r.e_above_hull <= 1e-9 for r in ours) == sum(raw["is_stable"] for raw in lfpo_raw) == 40


def test_decomposition_matches_pymatgen_and_sums_to_one(lfpo):
    pd = PhaseDiagram(lfpo)
    hull = HullIndex(pd)
    unstable = [e for e in lfpo if pd.get_e_above_hull(e) > 0.05][:50]
    for entry, result in zip(unstable, energy_above_hull(hull, unstable), strict=True):
        expected = {e.entry_id: amt for e, amt in pd.get_decomposition(entry.composition).items()}
        assert {e.entry_id: pytest.approx(a, abs=1e-9) for e, a in result.decomposition} == expected
        assert sum(a for _, a in result.decomposition) == pytest.approx(1.0)
        assert result.hull_energy_per_atom == pytest.approx(pd.get_hull_energy_per_atom(entry.composition))


def test_patched_phase_diagram_gives_the_same_energies(lfpo):
    plain = energy_above_hull(HullIndex.from_entries(lfpo), lfpo, with_decomposition=False)
    patched_index = HullIndex.from_entries(lfpo, patch_above_n_elements=3)
    assert isinstance(patched_index.phase_diagram, PatchedPhaseDiagram)
    patched = energy_above_hull(patched_index, lfpo, with_decomposition=False)
    assert np.allclose([r.e_above_hull for r in plain], [r.e_above_hull for r in patched], atol=1e-9)


def test_composition_outside_the_hull_is_refused(lfpo):
    hull = HullIndex.from_entries([e for e in lfpo if {el.symbol for el in e.elements} <= {"Fe", "O"}])
    with pytest.raises(ValueError, match="Li"):
        hull.evaluate([Composition("LiFeO2")], [-6.0])
