"""Sanity filters and chemistry rules applied to every proposed structure.

A filter returns a reason instead of dropping the structure, so the caller can record
it (``RejectedCandidate``): a screening campaign must be able to say why a structure it
was given never reached the relaxation stage.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import lru_cache

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from pymatgen.core import Composition, Element, Structure

from matris_flows.core.validity import structure_problem
from matris_flows.generation.schemas import RejectionReason


class FilterSettings(BaseModel):
    """Thresholds of the sanity filters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The defaults must pass every real, DFT-relaxed MP phase (a sanity filter is for broken
    # structures, not for unusual chemistry): over the MP Li-Fe-P-O system (973 entries) and
    # MP's 789 elemental polymorphs the density runs from 0.024 (an H polymorph; 0.18 for
    # Li3FeO6 mp-1211341 and 0.30-0.43 for four P allotropes, which the old 0.5 rejected) to
    # 24.6 g/cm³ (a Pu polymorph), and the shortest distance is 0.744 Å (H2). The density
    # bounds leave room for a ±2 % strain (±6 % volume); an empty box (NaCl in 30 Å, 0.004)
    # or overlapping atoms are still rejected.
    min_distance: float = Field(0.7, ge=0, description="Smallest allowed interatomic distance, Å (the H2 bond is 0.74).")
    min_density: float = Field(0.02, ge=0, description="Smallest allowed density, g/cm³ (lowest MP phase: 0.024).")
    max_density: float = Field(30.0, gt=0, description="Largest allowed density, g/cm³ (densest MP phase: 24.6, Pu).")
    max_atoms: int = Field(200, gt=0, description="Largest allowed number of sites per cell.")


def min_interatomic_distance(structure: Structure) -> float:
    """Smallest distance between two sites, periodic images included, Å."""
    if len(structure) == 1:
        # A single site only sees its own images: the shortest lattice translation.
        return float(min(structure.lattice.abc))
    # get_neighbor_list scales linearly with cell size, unlike the full distance matrix.
    radius = 3.0
    _, _, _, dists = structure.get_neighbor_list(radius, exclude_self=True)
    if len(dists):
        return float(dists.min())
    return float(np.min(structure.distance_matrix[np.triu_indices(len(structure), 1)]))


@lru_cache(maxsize=256)
def _atomic_mass(symbol: str) -> float:
    return float(Element(symbol).atomic_mass)


def structure_density(structure: Structure) -> float:
    """Density in g/cm³; plain floats because pymatgen's unit-aware version costs ~2 ms a call."""
    mass_amu = sum(_atomic_mass(el.symbol) * n for el, n in structure.composition.element_composition.items())
    return mass_amu * 1.66053906660 / structure.volume  # amu/Å³ -> g/cm³


def check_structure(
    structure: Structure,
    settings: FilterSettings,
    supported_elements: Collection[str] | None = None,
) -> tuple[RejectionReason, str] | None:
    """Return ``(reason, message)`` for the first failed filter, or None if all pass.

    The structure's validity goes first (finite numbers, a real cell, real elements:
    :func:`~matris_flows.core.validity.structure_problem`), so no density, neighbour
    search or symmetry is computed on NaN; then the cheap checks, so the neighbour search
    only runs on structures that could pass.
    """
    problem = structure_problem(structure)
    if problem is not None:
        return RejectionReason.INVALID_STRUCTURE, f"invalid structure: {problem}"
    if len(structure) > settings.max_atoms:
        return RejectionReason.MAX_ATOMS, f"{len(structure)} sites > max_atoms={settings.max_atoms}"
    if supported_elements is not None:
        unsupported = sorted({el.symbol for el in structure.composition.elements} - set(supported_elements))
        if unsupported:
            return RejectionReason.UNSUPPORTED_ELEMENT, f"elements {unsupported} are not supported by the potential"
    density = structure_density(structure)
    if not settings.min_density <= density <= settings.max_density:
        return (
            RejectionReason.DENSITY,
            f"density {density:.3f} g/cm³ outside [{settings.min_density}, {settings.max_density}]",
        )
    if settings.min_distance > 0:
        d_min = min_interatomic_distance(structure)
        if d_min < settings.min_distance:
            return RejectionReason.MIN_DISTANCE, f"shortest distance {d_min:.3f} Å < min_distance={settings.min_distance}"
    return None


@lru_cache(maxsize=65536)
def _balanced_pymatgen(formula: str) -> bool:
    return bool(Composition(formula).oxi_state_guesses(max_sites=-50))


@lru_cache(maxsize=65536)
def _balanced_smact(formula: str) -> bool:
    from smact.screening import smact_validity

    # include_alloys=False: an intermetallic is not "charge balanced" in the sense asked for.
    return bool(smact_validity(formula, include_alloys=False))


def is_charge_balanced(composition: Composition | str, method: str = "pymatgen") -> bool:
    """Whether some assignment of common oxidation states makes ``composition`` neutral.

    ``method`` is ``"pymatgen"`` (``Composition.oxi_state_guesses``) or ``"smact"``
    (``smact_validity``: charge neutrality plus the Pauling electronegativity test).
    Results are cached per reduced formula because decorations repeat compositions.
    """
    formula = Composition(composition).reduced_formula
    if method == "pymatgen":
        return _balanced_pymatgen(formula)
    if method == "smact":
        return _balanced_smact(formula)
    raise ValueError(f"Unknown charge-balance method {method!r}; use 'pymatgen' or 'smact'.")
