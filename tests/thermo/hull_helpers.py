"""Helpers of the hull-stage tests: MP reference data and relaxation documents made from it."""

import gzip
import json

from monty.json import MontyDecoder
from pymatgen.core import Structure
from reference_data import shared_data_dir

from matris_flows.potentials.naming import parse_potential
from matris_flows.relax.schemas import PotentialInfo, RelaxationDocument, RelaxSettings, RelaxStatus

LFPO_PATH = shared_data_dir() / "mp_chemsys" / "Li-Fe-P-O.json.gz"


def load_raw(name: str) -> list[dict]:
    """Raw dicts of a shared MP chemsys file (keeps the stored e_above_hull keys)."""
    with gzip.open(shared_data_dir() / "mp_chemsys" / name, "rt") as handle:
        return json.load(handle)


def decode(raw: dict):
    return MontyDecoder().process_decoded({k: v for k, v in raw.items() if k not in ("e_above_hull", "is_stable", "e_form_per_atom")})


def relaxation_doc(
    candidate_id: str,
    structure: Structure | None,
    energy: float | None,
    potential: str = "matris_10m_mp",
    status: RelaxStatus = RelaxStatus.CONVERGED,
    failure_reason: str | None = None,
) -> RelaxationDocument:
    """A RelaxationDocument as the relax stage writes it, with a given total energy."""
    spec = parse_potential(potential)
    comp = structure.composition
    return RelaxationDocument(
        candidate_id=candidate_id,
        formula=comp.reduced_formula,
        chemsys=comp.chemical_system,
        nsites=len(structure),
        status=status,
        failure_reason=failure_reason,
        input_structure=structure,
        structure=None if energy is None else structure,
        energy=energy,
        energy_per_atom=None if energy is None else energy / len(structure),
        engine="ase",
        potential=PotentialInfo(name=spec.name, kind=spec.kind.value, device="cpu", energy_convention=spec.energy_convention),
        settings=RelaxSettings(),
    )
