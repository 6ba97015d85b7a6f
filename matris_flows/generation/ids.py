"""Candidates from generated structures: element species only, ids from :mod:`matris_flows.core.ids`."""

from __future__ import annotations

from pathlib import PurePath

from pymatgen.core import Structure

from matris_flows.core.ids import candidate_id
from matris_flows.generation.schemas import Candidate, Provenance


def build_candidate(structure: Structure, provenance: Provenance) -> Candidate:
    """Make a :class:`Candidate`: element species only, id from structure and provenance.

    Oxidation states are dropped so the same arrangement has one representation whichever
    generator made it. A file's directory is left out of the id (only its name counts) so
    ids do not change when a campaign folder moves to another machine.
    """
    plain = structure.copy()
    plain.remove_oxidation_states()
    id_provenance = provenance.model_dump(mode="json", exclude_none=True)
    if provenance.file_path is not None:
        id_provenance["file_path"] = PurePath(provenance.file_path).name
    composition = plain.composition
    return Candidate(
        candidate_id=candidate_id(plain, id_provenance),
        structure=plain,
        formula=composition.reduced_formula,
        chemsys=composition.chemical_system,
        nsites=len(plain),
        provenance=provenance,
    )
