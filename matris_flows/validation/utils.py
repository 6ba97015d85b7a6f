"""Plumbing shared by the validation modules: reading candidates and their structures.

Candidates come from the hull stage as ``CandidateDocument`` objects, or as their dicts
once they have been through a job store; this stage reads them only through
:func:`candidate_field` so that it does not depend on the hull stage's module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from pymatgen.core import Structure


@runtime_checkable
class CandidateLike(Protocol):
    """The fields of the hull stage's ``CandidateDocument`` that validation reads."""

    candidate_id: str
    formula: str
    chemsys: str
    structure: Structure
    energy_per_atom: float | None
    formation_energy_per_atom: float | None
    e_above_hull: float | None
    is_stable: bool | None
    thermo_status: str


def candidate_field(candidate: CandidateLike | Mapping[str, Any], name: str, default: Any = None) -> Any:
    """Return ``name`` from a candidate given as an object or a dict (``default`` if absent)."""
    if isinstance(candidate, Mapping):
        return candidate.get(name, default)
    return getattr(candidate, name, default)


def as_structure(value: Structure | Mapping[str, Any]) -> Structure:
    """Return a Structure from a Structure or its ``as_dict`` form (candidates decoded loosely)."""
    if isinstance(value, Structure):
        return value
    return Structure.from_dict(dict(value))


def candidate_structure(candidate: CandidateLike | Mapping[str, Any]) -> Structure:
    """Return the MLIP-relaxed structure of a candidate."""
    return as_structure(candidate_field(candidate, "structure"))


def candidate_chemsys(candidate: CandidateLike | Mapping[str, Any]) -> str:
    """Return the candidate's chemical system, derived from its structure when the field is missing."""
    chemsys = candidate_field(candidate, "chemsys")
    if chemsys:
        return "-".join(sorted(chemsys.split("-")))
    return candidate_structure(candidate).composition.chemical_system


def candidate_potential_name(candidate: CandidateLike | Mapping[str, Any]) -> str | None:
    """Return ``candidate.relaxation.potential.name`` when the hull stage recorded it."""
    relaxation = candidate_field(candidate, "relaxation")
    if relaxation is None:
        return None
    potential = candidate_field(relaxation, "potential")
    return None if potential is None else candidate_field(potential, "name")


def candidate_relax_status(candidate: CandidateLike | Mapping[str, Any]) -> str | None:
    """Return ``candidate.relaxation.status`` ('converged', 'not_converged', 'failed') when recorded."""
    relaxation = candidate_field(candidate, "relaxation")
    status = None if relaxation is None else candidate_field(relaxation, "status")
    return None if status is None else str(getattr(status, "value", status))


def slim_candidate(candidate: CandidateLike | Mapping[str, Any]) -> dict[str, Any]:
    """The fields validation needs, as a plain dict: job inputs then never depend on the hull stage's classes."""
    return {
        "candidate_id": str(candidate_field(candidate, "candidate_id")),
        "formula": candidate_field(candidate, "formula") or candidate_structure(candidate).composition.reduced_formula,
        "chemsys": candidate_chemsys(candidate),
        "structure": candidate_structure(candidate),
        "energy_per_atom": candidate_field(candidate, "energy_per_atom"),
        "corrected_energy_per_atom": candidate_field(candidate, "corrected_energy_per_atom"),
        "formation_energy_per_atom": candidate_field(candidate, "formation_energy_per_atom"),
        "e_above_hull": candidate_field(candidate, "e_above_hull"),
        "is_stable": candidate_field(candidate, "is_stable"),
        "thermo_status": candidate_field(candidate, "thermo_status", "ok"),
        "hull_kind": _value(candidate_field(candidate, "hull_kind")),
        "relaxation": {"potential": {"name": candidate_potential_name(candidate)}, "status": candidate_relax_status(candidate)},
    }


def _value(value: Any) -> Any:
    """An enum's value (documents hold enums, their dicts plain strings)."""
    return getattr(value, "value", value)
