"""Assemble :class:`RelaxationDocument` s from what an engine produced, the same way for every engine."""

import numpy as np
from ase.units import GPa
from pymatgen.core import Structure

from matris_flows.core.chemsys import chemsys_of
from matris_flows.potentials.loader import Potential
from matris_flows.potentials.naming import PotentialInfo
from matris_flows.relax.checks import collapse_problem, result_problem
from matris_flows.relax.schemas import RelaxationDocument, RelaxSettings, RelaxStatus


def _identity(structure: Structure) -> dict:
    composition = structure.composition
    return {
        "formula": composition.reduced_formula,
        "chemsys": chemsys_of(composition.elements),
        "nsites": len(structure),
    }


def failed_document(
    candidate_id: str,
    structure: Structure,
    reason: str,
    potential: Potential | PotentialInfo,
    settings: RelaxSettings,
    engine: str,
    wall_time_s: float = 0.0,
    n_steps: int = 0,
) -> RelaxationDocument:
    """A document for a structure that produced no trustworthy result (``potential``: loaded, or its info)."""
    return RelaxationDocument(
        candidate_id=candidate_id,
        **_identity(structure),
        status=RelaxStatus.FAILED,
        failure_reason=reason,
        input_structure=structure,
        n_steps=n_steps,
        wall_time_s=wall_time_s,
        engine=engine,
        potential=potential if isinstance(potential, PotentialInfo) else potential.info(),
        settings=settings,
    )


def finished_document(
    candidate_id: str,
    input_structure: Structure,
    final_structure: Structure,
    energy: float,
    forces: np.ndarray,
    stress_ev_a3: np.ndarray | None,
    magmoms: np.ndarray | None,
    converged: bool,
    n_steps: int,
    wall_time_s: float,
    potential: Potential,
    settings: RelaxSettings,
    engine: str,
) -> RelaxationDocument:
    """A document for a relaxation that ran to the end (converged or out of steps)."""
    volume_ratio = final_structure.volume / input_structure.volume
    problem = result_problem(energy, forces, volume_ratio, settings) or collapse_problem(final_structure, settings)
    if problem:
        return failed_document(candidate_id, input_structure, problem, potential, settings, engine, wall_time_s, n_steps)
    max_force = float(np.linalg.norm(forces, axis=1).max()) if len(forces) else 0.0
    if magmoms is not None:
        final_structure.add_site_property("magmom", [float(m) for m in np.ravel(magmoms)])
    return RelaxationDocument(
        candidate_id=candidate_id,
        **_identity(input_structure),
        status=RelaxStatus.CONVERGED if converged else RelaxStatus.NOT_CONVERGED,
        failure_reason=None
        if converged
        else f"not converged within {settings.max_steps} steps (max force {max_force:.3f} eV/Å)",
        input_structure=input_structure,
        structure=final_structure,
        energy=float(energy),
        energy_per_atom=float(energy) / len(final_structure),
        forces=np.asarray(forces, dtype=float).tolist(),
        stress=None if stress_ev_a3 is None else (np.asarray(stress_ev_a3, dtype=float).reshape(3, 3) / GPa).tolist(),
        magmoms=None if magmoms is None else [float(m) for m in np.ravel(magmoms)],
        max_force=max_force,
        volume_ratio=volume_ratio,
        n_steps=n_steps,
        wall_time_s=wall_time_s,
        engine=engine,
        potential=potential.info(),
        settings=settings,
    )
