"""Checks that decide, before and after a relaxation, whether a structure's result can be trusted."""

import math

import numpy as np
from pymatgen.core import Structure

from matris_flows.relax.schemas import RelaxSettings


def input_problem(structure: Structure, unsupported: list[str], settings: RelaxSettings) -> str | None:
    """Why ``structure`` cannot be relaxed, or None if it can.

    ``unsupported`` are the structure's elements the potential was not built for.
    """
    if len(structure) == 0:
        return "empty structure"
    if not structure.is_ordered:
        return "partial occupancies: order the structure before relaxing it"
    if unsupported:
        return f"elements not supported by the potential: {', '.join(unsupported)}"
    if not np.all(np.isfinite(structure.cart_coords)) or not np.all(np.isfinite(structure.lattice.matrix)):
        return "non-finite coordinates or lattice"
    if structure.volume <= 1e-6:
        return "degenerate cell (zero volume)"
    if len(structure) > 1:
        closest = _min_distance(structure)
        if closest < settings.min_distance:
            return f"overlapping atoms: closest pair {closest:.3f} Å < {settings.min_distance} Å"
    return None


def _min_distance(structure: Structure) -> float:
    """Shortest interatomic distance under periodic images, via a neighbor search (no N² matrix)."""
    _, _, _, distances = structure.get_neighbor_list(r=1.0, exclude_self=True)
    if len(distances):
        return float(distances.min())
    return math.inf


def result_problem(
    energy: float | None, forces: np.ndarray | None, volume_ratio: float | None, settings: RelaxSettings
) -> str | None:
    """Why a finished relaxation's numbers cannot be trusted, or None."""
    if energy is None or not math.isfinite(energy):
        return f"non-finite energy ({energy})"
    if forces is not None and not np.all(np.isfinite(forces)):
        return "non-finite forces"
    if volume_ratio is not None:
        if not math.isfinite(volume_ratio) or not (
            1 / settings.max_volume_ratio <= volume_ratio <= settings.max_volume_ratio
        ):
            return f"exploding cell: volume changed by a factor {volume_ratio:.2f} (limit {settings.max_volume_ratio})"
    return None
