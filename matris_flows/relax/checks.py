"""Checks that decide, before and after a relaxation, whether a structure's result can be trusted."""

import math

import numpy as np
from ase.data import covalent_radii
from pymatgen.core import Structure

from matris_flows.core.validity import native_input_problem
from matris_flows.potentials.loader import Potential
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
    # non-finite numbers, a singular cell, non-elements: what native code must never see
    problem = native_input_problem(structure)
    if problem is not None:
        return problem
    # Periodic images count: one atom in a tiny cell overlaps its own image.
    closest = min_distance(structure, settings.min_distance)
    if closest < settings.min_distance:
        return f"overlapping atoms: closest pair {closest:.3f} Å < {settings.min_distance} Å"
    return None


def input_problem_for(structure: Structure, potential: Potential, settings: RelaxSettings) -> str | None:
    """:func:`input_problem` with the elements ``potential`` does not support."""
    return input_problem(structure, potential.unsupported_elements([e.symbol for e in structure.composition]), settings)


def min_distance(structure: Structure, within: float) -> float:
    """Shortest interatomic distance (periodic images included) if it is below ``within`` Å, else inf.

    A neighbour search out to ``within`` (no N² matrix): the search radius is the threshold
    itself, so any threshold can trigger.
    """
    _, _, _, distances = structure.get_neighbor_list(r=within, exclude_self=True)
    if len(distances):
        return float(distances.min())
    return math.inf


def collapse_problem(structure: Structure, settings: RelaxSettings) -> str | None:
    """Why a relaxed ``structure`` has collapsed, or None.

    Collapsed: two atoms closer than ``settings.collapse_fraction`` of the sum of their
    covalent radii (ASE's table, Cordero et al. 2008) — no bond is that short, so the model
    has driven atoms into each other (an unphysical minimum) and its energy is meaningless.
    """
    numbers = np.array(structure.atomic_numbers)
    radii = covalent_radii[numbers]
    cutoff = settings.collapse_fraction * 2 * float(radii.max())
    centers, neighbors, _, distances = structure.get_neighbor_list(r=cutoff, exclude_self=True)
    if not len(distances):
        return None
    limits = settings.collapse_fraction * (radii[centers] + radii[neighbors])
    short = distances < limits
    if not short.any():
        return None
    worst = int(np.argmin(np.where(short, distances / limits, np.inf)))
    i, j = int(centers[worst]), int(neighbors[worst])
    return (
        f"collapsed structure: {structure[i].specie}-{structure[j].specie} (sites {i}, {j}) {distances[worst]:.3f} Å apart, "
        f"below {settings.collapse_fraction} x the sum of their covalent radii ({limits[worst] / settings.collapse_fraction:.2f} Å)"
    )


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
