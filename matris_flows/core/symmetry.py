"""Space group and primitive size of a structure: the one symmetry helper of every stage."""

from __future__ import annotations

import warnings

import numpy as np
import spglib
from pymatgen.core import Structure

from matris_flows.core.validity import native_input_problem

try:
    import moyopy
except ImportError:  # optional: spglib gives the same answer, ~20x slower on cubic cells
    moyopy = None


def _cell(structure: Structure) -> tuple[np.ndarray, np.ndarray, list[int]]:
    # spglib segfaults on NaN: refuse here, in Python, whatever the caller checked before
    problem = native_input_problem(structure)
    if problem is not None:
        raise ValueError(f"no symmetry for an invalid structure ({structure.composition.formula}): {problem}")
    numbers = [site.specie.Z for site in structure]
    return structure.lattice.matrix, structure.frac_coords, numbers


def symmetry(structure: Structure, symprec: float = 0.1) -> tuple[int, int]:
    """(space group number, primitive-cell size); moyopy when installed (~20x faster than spglib).

    Raises ``ValueError`` for a structure native code must not see (see
    :func:`~matris_flows.core.validity.native_input_problem`).
    """
    lattice, frac, numbers = _cell(structure)
    if moyopy is not None:
        try:
            dataset = moyopy.MoyoDataset(moyopy.Cell(lattice.tolist(), frac.tolist(), numbers), symprec=symprec)
            return dataset.number, len(dataset.prim_std_cell.numbers)
        except Exception:  # noqa: BLE001 - moyopy rejects some cells spglib still handles
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # spglib's notice about its error API
        try:
            dataset = spglib.get_symmetry_dataset((lattice, frac, numbers), symprec=symprec)
        except Exception:  # noqa: BLE001 - spglib's new error API raises where the old returned None
            dataset = None
    if dataset is None:  # no symmetry found: P1 semantics
        return 1, len(structure)
    identity = np.eye(3, dtype=int)
    n_translations = sum(1 for rot in dataset.rotations if np.array_equal(rot, identity))
    return dataset.number, len(structure) // max(n_translations, 1)


def spacegroup_number(structure: Structure, symprec: float = 0.1) -> int:
    """Space group number at ``symprec`` (1 when no symmetry is found)."""
    return symmetry(structure, symprec)[0]
