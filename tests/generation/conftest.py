"""Fixtures of the generation tests: the shared MP data and small real structures."""

import gzip
import json

import pytest
from monty.json import MontyDecoder
from pymatgen.core import Lattice, Structure
from reference_data import shared_data_dir

LFPO = shared_data_dir() / "mp_chemsys" / "Li-Fe-P-O.json.gz"


@pytest.fixture(scope="session")
def lfpo_entries():
    """The MP Li-Fe-P-O chemical system (973 entries)."""
    if not LFPO.is_file():
        pytest.skip(f"shared MP data not found at {LFPO}")
    with gzip.open(LFPO, "rt") as handle:
        return json.load(handle, cls=MontyDecoder)


@pytest.fixture(scope="session")
def olivine_lifepo4(lfpo_entries):
    """Olivine LiFePO4, mp-19017 (Pnma, 28 atoms)."""
    (entry,) = [e for e in lfpo_entries if e.data.get("material_id") == "mp-19017" or e.entry_id.startswith("mp-19017")]
    return entry


@pytest.fixture
def nacl() -> Structure:
    """Conventional rocksalt NaCl."""
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
