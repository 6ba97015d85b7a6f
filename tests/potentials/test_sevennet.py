"""SevenNet-0 as a working potential (its weights ship in the `sevenn` wheel, a test dependency): loading with
provenance, the energy convention of its Matbench Discovery card, relaxation, and MP2020 on its energies."""

import gzip
import json

import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry
from reference_data import shared_data_dir

from matris_flows.potentials.loader import Potential, load_potential
from matris_flows.potentials.naming import EnergyConvention, PotentialKind, parse_potential
from matris_flows.relax.defaults import resolve_settings
from matris_flows.relax.engine import relax_structures
from matris_flows.relax.schemas import RelaxStatus
from matris_flows.thermo.mp_compat import correct_entry


@pytest.fixture(scope="module")
def sevennet() -> Potential:
    return load_potential("sevennet", device="cpu")


def test_convention_and_relax_settings_follow_the_matbench_card():
    # Card models/sevennet/sevennet-0.yml: trained on MPtrj (raw energies), MP2020 applied, FIRE + FrechetCellFilter at 0.05.
    spec = parse_potential("sevennet")
    assert spec.kind is PotentialKind.SEVENNET and spec.variant == "7net-0"
    assert spec.energy_convention is EnergyConvention.MP_UNCORRECTED
    assert parse_potential("sevennet", {"model": "7net-omat"}).energy_convention is EnergyConvention.NOT_MP_COMPATIBLE
    card = {"optimizer": "FIRE", "cell_filter": "FrechetCellFilter", "fmax": 0.05, "max_steps": 500}
    assert resolve_settings(None, "sevennet").model_dump(include=set(card)) == card


def test_loads_once_with_its_checkpoint_hash_and_elements(sevennet):
    assert load_potential("sevennet", device="cpu") is sevennet, "loaded once per process"
    info = sevennet.info()
    assert sevennet.checkpoint_path.endswith("checkpoint_sevennet_0.pth") and len(info.checkpoint_sha256) == 64
    assert info.package_versions["sevenn"] and info.energy_convention is EnergyConvention.MP_UNCORRECTED
    assert {"Li", "Fe", "P", "O", "Si"} <= sevennet.supported_elements
    assert sevennet.unsupported_elements(["Li", "Og"]) == ["Og"]


def test_relaxes_silicon_to_the_experimental_lattice_constant(sevennet):
    start = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.60), ["Si"], [[0, 0, 0]]).get_primitive_structure()
    [doc] = relax_structures([start], potential=sevennet)
    assert doc.status is RelaxStatus.CONVERGED, doc.failure_reason
    a = (4 * doc.structure.volume) ** (1 / 3)
    assert a == pytest.approx(5.431, rel=0.015)
    assert doc.energy_per_atom == pytest.approx(-5.42, abs=0.1)  # MP's Si, uncorrected GGA


@pytest.mark.parametrize("entry_id", ["mp-715262-GGA+U", "mp-18782-GGA+U"])  # FeO, LiFeO2
def test_raw_energy_is_mp_uncorrected_and_mp2020_makes_it_comparable(sevennet, entry_id):
    with gzip.open(shared_data_dir() / "mp_chemsys" / "Li-Fe-P-O.json.gz", "rt") as handle:
        raw = next(r for r in json.load(handle) if r["entry_id"] == entry_id)
    entry = ComputedStructureEntry.from_dict({k: v for k, v in raw.items() if k not in ("e_above_hull", "is_stable", "e_form_per_atom")})
    n = len(entry.structure)
    atoms = entry.structure.to_ase_atoms()
    atoms.calc = sevennet.calculator
    predicted = atoms.get_potential_energy() / n
    assert predicted == pytest.approx(entry.uncorrected_energy / n, abs=0.1)
    assert abs(predicted - entry.energy / n) > 0.5
    ml_entry = ComputedStructureEntry(entry.structure, predicted * n, parameters=entry.parameters, data=entry.data, entry_id=entry_id)
    assert correct_entry(ml_entry, sevennet.info().energy_convention).ok
    assert ml_entry.energy / n == pytest.approx(entry.energy / n, abs=0.1)
