"""Is it a crystal at all: the checks a structure passes before native code sees it.

spglib segfaults on a NaN coordinate (and moyopy refuses it, which makes
:func:`~matris_flows.core.symmetry.symmetry` fall back to spglib), a singular lattice
has no inverse, and pymatgen's neighbour search sizes its image grid on the cell, so
a cell a few ångström thick in one direction and huge in another costs memory without
bound. A segfault kills the worker and every job on it, so these checks run first, in
Python, on every structure that enters a campaign.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import DummySpecies, Element, Species, Structure

MAX_LATTICE_LENGTH = 1000.0
"""Longest allowed lattice vector, Å (no crystal cell comes near; an exploded or unit-confused one does)."""
MIN_CELL_HEIGHT = 0.01
"""Smallest allowed distance between opposite faces of the cell, Å: below it the lattice is (nearly) singular."""
MAX_FRACTIONAL_COORDINATE = 1e4
"""Largest allowed |fractional coordinate|: a site 10^4 cells away is a unit or format error, not a position."""
_SINGULAR = 1e-8  # |det| relative to the product of the lattice lengths: no inverse worth the name


def native_input_problem(structure: Structure) -> str | None:
    """Why native code (spglib, moyopy, neighbour lists) must not see ``structure``, or None.

    No sites, non-finite lattice or coordinates, a singular lattice, or a site that is not
    a real element (a dummy species or an empty site). The bare minimum for native code to
    be safe: :func:`structure_problem` adds the bounds a candidate must also meet.
    """
    if len(structure) == 0:
        return "no sites"
    matrix = np.asarray(structure.lattice.matrix, dtype=float)
    if not np.all(np.isfinite(matrix)):
        return f"non-finite lattice {matrix.tolist()}"
    frac = np.asarray(structure.frac_coords, dtype=float)
    if not np.all(np.isfinite(frac)):
        site = int(np.flatnonzero(~np.isfinite(frac).all(axis=1))[0])
        return f"non-finite coordinates at site {site}: {frac[site].tolist()}"
    lengths = np.linalg.norm(matrix, axis=1)
    if lengths.min() <= 0 or abs(np.linalg.det(matrix)) <= _SINGULAR * float(np.prod(lengths)):
        return f"singular lattice (lattice vectors of lengths {np.round(lengths, 4).tolist()} Å are coplanar)"
    for index, site in enumerate(structure):
        if site.species.num_atoms <= 0:  # pymatgen refuses more than one atom on a site, not none
            return f"site {index} is empty (a vacancy)"
        for species in site.species:
            if isinstance(species, DummySpecies) or not isinstance(species, Element | Species):
                return f"site {index} holds {species}, which is not a chemical element"
    return None


def structure_problem(structure: Structure) -> str | None:
    """Why ``structure`` is not a crystal a campaign can screen, or None.

    :func:`native_input_problem`, then a cell of sane size and shape: every lattice vector
    at most :data:`MAX_LATTICE_LENGTH`, faces at least :data:`MIN_CELL_HEIGHT` apart, and
    no fractional coordinate beyond :data:`MAX_FRACTIONAL_COORDINATE`. Cheap (numpy on the
    cell and a loop over the sites), so it can run on every structure.
    """
    problem = native_input_problem(structure)
    if problem is not None:
        return problem
    matrix = np.asarray(structure.lattice.matrix, dtype=float)
    lengths = np.linalg.norm(matrix, axis=1)
    if lengths.max() > MAX_LATTICE_LENGTH:
        return f"lattice vector of {lengths.max():.4g} Å is longer than {MAX_LATTICE_LENGTH:g} Å"
    # The height over each face: volume / face area (a, b, c faces are spanned by the other two vectors).
    areas = np.linalg.norm(np.cross(matrix[[1, 2, 0]], matrix[[2, 0, 1]]), axis=1)
    height = abs(float(np.linalg.det(matrix))) / float(areas.max())
    if height < MIN_CELL_HEIGHT:
        return f"degenerate cell: {height:.3g} Å thick (lattice vectors nearly coplanar)"
    far = float(np.abs(structure.frac_coords).max())
    if far > MAX_FRACTIONAL_COORDINATE:
        return f"fractional coordinate {far:.4g} lies far outside the cell"
    return None
