"""Random structure search (AIRSS-like) with pyxtal: random symmetric cells per composition.

Every (composition, formula units, space group, seed index) is one work unit with its
own seed derived by hashing, so a unit can be regenerated alone (streamed generation
resumes mid-campaign) and adding a space group does not change the other structures.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from pymatgen.core import Composition, Element

from matris_flows.generation.ids import build_candidate
from matris_flows.generation.schemas import (
    Candidate,
    Provenance,
    RejectedCandidate,
    RejectionReason,
    SourceMethod,
)

logger = logging.getLogger(__name__)

RandomUnit = tuple[str, int, int, int]  # (reduced formula, formula units, space group, seed index)


def derive_seed(base_seed: int, formula: str, formula_units: int, spacegroup: int, index: int) -> int:
    """A 32-bit seed that depends only on the unit, stable across runs and platforms."""
    text = f"{base_seed}|{formula}|{formula_units}|{spacegroup}|{index}"
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def parse_composition(formula: str) -> Composition:
    """Parse a composition for random search; raise ``ValueError`` naming it if impossible."""
    try:
        composition = Composition(formula)
    except Exception as exc:  # pymatgen raises several types for bad formulas
        raise ValueError(f"composition {formula!r} cannot be parsed ({exc})") from exc
    if composition.num_atoms <= 0 or not composition.elements:
        raise ValueError(f"composition {formula!r} is empty")
    unknown = [str(el) for el in composition.elements if not Element.is_valid_symbol(str(el))]
    if unknown:
        raise ValueError(f"composition {formula!r} has unknown elements {unknown}")
    if any(amount <= 0 for amount in composition.values()):
        raise ValueError(f"composition {formula!r} has non-positive amounts")
    if not composition.is_element and not all(
        abs(a - round(a)) < 1e-8 for a in composition.get_reduced_composition_and_factor()[0].values()
    ):
        raise ValueError(f"composition {formula!r} has fractional amounts; give an integer formula")
    return composition


def plan_random_search(
    compositions: Sequence[str],
    space_groups: Sequence[int],
    formula_units: Sequence[int] = (1, 2, 4),
    n_seeds: int = 1,
) -> tuple[list[RandomUnit], list[RejectedCandidate]]:
    """Work units for every compatible (composition, Z, space group), and rejections for the rest.

    A composition for which no requested space group has a Wyckoff combination giving its
    atom counts is rejected with ``no_valid_space_group`` rather than failing the campaign.
    """
    from pyxtal.symmetry import Group

    units: list[RandomUnit] = []
    rejected: list[RejectedCandidate] = []
    if not compositions:
        rejected.append(
            RejectedCandidate(reason=RejectionReason.INVALID_INPUT, message="random search: no compositions given")
        )
    groups = sorted({int(sg) for sg in space_groups})
    bad_groups = [sg for sg in groups if not 1 <= sg <= 230]
    if bad_groups or not groups:
        rejected.append(
            RejectedCandidate(
                reason=RejectionReason.INVALID_INPUT,
                message=f"random search: space groups must be 1-230, got {list(space_groups)}",
                input_name=str(list(space_groups)),
            )
        )
        groups = [sg for sg in groups if 1 <= sg <= 230]
    for formula in compositions:
        try:
            reduced = parse_composition(formula).reduced_composition
        except ValueError as exc:
            rejected.append(RejectedCandidate(reason=RejectionReason.INVALID_INPUT, message=str(exc), input_name=formula))
            continue
        name = reduced.reduced_formula
        found = False
        for z in sorted({int(z) for z in formula_units if int(z) > 0}):
            counts = [int(round(reduced[el] * z)) for el in reduced.elements]
            for sg in groups:
                compatible, _ = Group(sg).check_compatible(counts)
                if compatible:
                    found = True
                    units.extend((name, z, sg, k) for k in range(n_seeds))
        if not found:
            rejected.append(
                RejectedCandidate(
                    reason=RejectionReason.NO_VALID_SPACE_GROUP,
                    message=f"composition {formula!r}: no space group in {groups} has Wyckoff positions for "
                    f"formula units {sorted(formula_units)}",
                    input_name=formula,
                )
            )
    return units, rejected


def generate_random_structure(
    unit: RandomUnit, base_seed: int = 0, volume_factor: float = 1.1, max_attempts: int = 10
) -> Candidate | RejectedCandidate:
    """One pyxtal crystal for one work unit (conventional cell), or a rejection saying why not."""
    from pyxtal import pyxtal

    formula, z, sg, index = unit
    composition = Composition(formula)
    species = [el.symbol for el in composition.elements]
    counts = [int(round(composition[el] * z)) for el in composition.elements]
    seed = derive_seed(base_seed, formula, z, sg, index)
    provenance = Provenance(
        source=SourceMethod.RANDOM_SEARCH, parent_id=f"{formula}|Z={z}|sg={sg}|{index}", spacegroup=sg,
        formula_units=z, seed=seed,
    )
    crystal = pyxtal()
    try:
        crystal.from_random(3, sg, species, counts, factor=volume_factor, max_count=max_attempts, random_state=seed)
    except Exception as exc:  # noqa: BLE001 - pyxtal raises its own Comp/Symm errors and plain RuntimeErrors
        return RejectedCandidate(
            reason=RejectionReason.GENERATION_FAILED,
            message=f"pyxtal failed for {formula} Z={z} in space group {sg} (seed {seed}): {exc}",
            input_name=formula, provenance=provenance,
        )
    if not crystal.valid:
        return RejectedCandidate(
            reason=RejectionReason.GENERATION_FAILED,
            message=f"pyxtal found no valid {formula} Z={z} cell in space group {sg} (seed {seed})",
            input_name=formula, provenance=provenance,
        )
    return build_candidate(crystal.to_pymatgen(), provenance)
