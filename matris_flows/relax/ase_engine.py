"""Per-structure relaxation with an ASE optimizer (any potential, any device)."""

import math
from time import perf_counter

import ase.filters
import ase.optimize
import numpy as np
from ase import Atoms
from ase.constraints import FixSymmetry
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from matris_flows.potentials.loader import Potential
from matris_flows.relax.checks import input_problem_for
from matris_flows.relax.documents import failed_document, finished_document
from matris_flows.relax.schemas import RelaxationDocument, RelaxSettings, RelaxTrajectory

ENGINE = "ase"


class _Abort(Exception):
    """Raised from an optimizer observer to stop a relaxation that has gone wrong."""


class _Watchdog:
    """Stop early on NaN energies/forces or a runaway cell, instead of burning the step budget."""

    def __init__(self, atoms: Atoms, settings: RelaxSettings, trajectory: RelaxTrajectory | None) -> None:
        self.atoms = atoms
        self.volume0 = atoms.get_volume()
        self.settings = settings
        self.trajectory = trajectory

    def __call__(self) -> None:
        energy = self.atoms.get_potential_energy()
        if not math.isfinite(energy):
            raise _Abort(f"non-finite energy ({energy})")
        if not np.all(np.isfinite(self.atoms.get_forces())):
            raise _Abort("non-finite forces")
        ratio = self.atoms.get_volume() / self.volume0
        limit = self.settings.max_volume_ratio
        if not (1 / limit <= ratio <= limit):
            raise _Abort(f"exploding cell: volume changed by a factor {ratio:.2f} (limit {limit})")
        if self.trajectory is not None:
            self.trajectory.energies.append(float(energy))
            self.trajectory.cells.append(self.atoms.cell.array.tolist())
            self.trajectory.positions.append(self.atoms.positions.tolist())


def relax_one(
    structure: Structure,
    candidate_id: str,
    potential: Potential,
    settings: RelaxSettings,
    keep_trajectory: bool = False,
) -> tuple[RelaxationDocument, RelaxTrajectory | None]:
    """Relax one structure; every failure becomes a FAILED document, never an exception."""
    start = perf_counter()
    problem = input_problem_for(structure, potential, settings)
    if problem:
        return failed_document(candidate_id, structure, problem, potential, settings, ENGINE), None

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = potential.calculator
    if settings.fix_symmetry:
        atoms.set_constraint(FixSymmetry(atoms, symprec=settings.symprec))
    target = getattr(ase.filters, settings.cell_filter)(atoms) if settings.relax_cell else atoms
    trajectory = RelaxTrajectory(candidate_id=candidate_id, energies=[], cells=[], positions=[]) if keep_trajectory else None
    optimizer = getattr(ase.optimize, settings.optimizer)(target, logfile=None)
    optimizer.attach(_Watchdog(atoms, settings, trajectory), interval=1)
    try:
        converged = bool(optimizer.run(fmax=settings.fmax, steps=settings.max_steps))
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
        stress = atoms.get_stress(voigt=False) if settings.relax_cell or "stress" in atoms.calc.implemented_properties else None
        magmoms = _magmoms(atoms, potential)
    except _Abort as exc:
        elapsed = perf_counter() - start
        return failed_document(candidate_id, structure, str(exc), potential, settings, ENGINE, elapsed, optimizer.nsteps), trajectory
    except Exception as exc:  # noqa: BLE001 - a model error on one structure must not end the chunk
        reason = f"{type(exc).__name__}: {exc}"
        elapsed = perf_counter() - start
        return failed_document(candidate_id, structure, reason, potential, settings, ENGINE, elapsed, optimizer.nsteps), trajectory
    atoms.set_constraint()  # FixSymmetry must not leak into the pymatgen conversion
    # get_structure copies atoms.calc onto the Structure: detach it, or every document
    # would carry (and pickle, across Dask) the whole model.
    atoms.calc = None
    final = AseAtomsAdaptor.get_structure(atoms)
    document = finished_document(
        candidate_id, structure, final, energy, forces, stress, magmoms, converged,
        optimizer.nsteps, perf_counter() - start, potential, settings, ENGINE,
    )
    return document, trajectory


def _magmoms(atoms: Atoms, potential: Potential) -> np.ndarray | None:
    if not potential.spec.predicts_magmoms or "magmoms" not in atoms.calc.implemented_properties:
        return None
    # MatRIS names the property 'magmoms', CHGNet 'magmoms' too; ASE's getter wants 'magmoms'.
    return np.asarray(atoms.calc.get_property("magmoms", atoms))
