"""Prototype decoration: common structure types decorated over a user's element lists.

The library (``matris_flows/data/prototypes.json``) is built with ASE's ``crystal`` from
textbook Wyckoff positions and reduced to primitive cells with pymatgen, so candidates are
as small as the structure type allows. Rebuild it with
``python -m matris_flows.generation.prototypes``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Element, Lattice, Structure

from matris_flows.core.data_paths import package_data_path
from matris_flows.generation.filters import is_charge_balanced
from matris_flows.generation.ids import build_candidate
from matris_flows.generation.schemas import (
    Candidate,
    Provenance,
    RejectedCandidate,
    RejectionReason,
    SourceMethod,
)

PROTOTYPE_FILE = "prototypes.json"

# name: (description, space group, ASE setting, cellpar, [(label, wyckoff position)])
# Positions are the textbook ones (Pearson/Strukturbericht); the lattice is rescaled on
# decoration, so cell parameters only fix the shape.
_DEFINITIONS: dict[str, tuple[str, int, int, list[float], list[tuple[str, tuple[float, float, float]]]]] = {
    "fcc": ("A1 Cu", 225, 1, [3.6, 3.6, 3.6, 90, 90, 90], [("A", (0, 0, 0))]),
    "bcc": ("A2 W", 229, 1, [3.2, 3.2, 3.2, 90, 90, 90], [("A", (0, 0, 0))]),
    "hcp": ("A3 Mg", 194, 1, [3.2, 3.2, 5.2, 90, 90, 120], [("A", (1 / 3, 2 / 3, 1 / 4))]),
    "diamond": ("A4 C", 227, 1, [5.4, 5.4, 5.4, 90, 90, 90], [("A", (0, 0, 0))]),
    "rocksalt": ("B1 NaCl", 225, 1, [5.6, 5.6, 5.6, 90, 90, 90], [("A", (0, 0, 0)), ("X", (0.5, 0.5, 0.5))]),
    "cscl": ("B2 CsCl", 221, 1, [4.1, 4.1, 4.1, 90, 90, 90], [("A", (0, 0, 0)), ("X", (0.5, 0.5, 0.5))]),
    "zincblende": ("B3 ZnS", 216, 1, [5.4, 5.4, 5.4, 90, 90, 90], [("A", (0, 0, 0)), ("X", (0.25, 0.25, 0.25))]),
    "wurtzite": (
        "B4 ZnS", 186, 1, [3.8, 3.8, 6.2, 90, 90, 120], [("A", (1 / 3, 2 / 3, 0)), ("X", (1 / 3, 2 / 3, 0.375))]
    ),
    "l12": ("L1_2 Cu3Au", 221, 1, [3.7, 3.7, 3.7, 90, 90, 90], [("B", (0, 0, 0)), ("A", (0, 0.5, 0.5))]),
    "fluorite": ("C1 CaF2", 225, 1, [5.5, 5.5, 5.5, 90, 90, 90], [("A", (0, 0, 0)), ("X", (0.25, 0.25, 0.25))]),
    "rutile": ("C4 TiO2", 136, 1, [4.6, 4.6, 3.0, 90, 90, 90], [("A", (0, 0, 0)), ("X", (0.305, 0.305, 0))]),
    "perovskite": (
        "E2_1 CaTiO3 (cubic)", 221, 1, [3.9, 3.9, 3.9, 90, 90, 90],
        [("A", (0.5, 0.5, 0.5)), ("B", (0, 0, 0)), ("X", (0.5, 0, 0))],
    ),
    "spinel": (
        "H1_1 MgAl2O4", 227, 2, [8.1, 8.1, 8.1, 90, 90, 90],
        [("A", (0.125, 0.125, 0.125)), ("B", (0.5, 0.5, 0.5)), ("X", (0.2625, 0.2625, 0.2625))],
    ),
    "heusler": (
        "L2_1 Cu2MnAl", 225, 1, [5.9, 5.9, 5.9, 90, 90, 90],
        [("A", (0.25, 0.25, 0.25)), ("B", (0, 0, 0)), ("C", (0.5, 0.5, 0.5))],
    ),
    "half_heusler": (
        "C1_b MgAgAs", 216, 1, [5.9, 5.9, 5.9, 90, 90, 90],
        [("A", (0, 0, 0)), ("B", (0.5, 0.5, 0.5)), ("C", (0.25, 0.25, 0.25))],
    ),
    "layered_abo2": (
        "alpha-NaFeO2", 166, 1, [2.9, 2.9, 14.2, 90, 90, 120],
        [("A", (0, 0, 0.5)), ("B", (0, 0, 0)), ("X", (0, 0, 0.25))],
    ),
    "olivine": (
        "S1_2 Mg2SiO4", 62, 1, [10.2, 6.0, 4.8, 90, 90, 90],
        [
            ("A", (0, 0, 0)), ("A", (0.2774, 0.25, 0.9915)), ("B", (0.0940, 0.25, 0.4262)),
            ("X", (0.0913, 0.25, 0.7657)), ("X", (0.4474, 0.25, 0.2164)), ("X", (0.1628, 0.0331, 0.2777)),
        ],
    ),
    "olivine_abcx4": (
        "LiFePO4 (ordered olivine)", 62, 1, [10.3, 6.0, 4.7, 90, 90, 90],
        [
            ("A", (0, 0, 0)), ("B", (0.2822, 0.25, 0.9747)), ("C", (0.0950, 0.25, 0.4182)),
            ("X", (0.0968, 0.25, 0.7428)), ("X", (0.4571, 0.25, 0.2060)), ("X", (0.1656, 0.0464, 0.2848)),
        ],
    ),
}

# Distinct placeholder elements mark the labels while ASE and spglib see a real crystal.
_PLACEHOLDERS = {"A": "Cu", "B": "Ag", "C": "Au", "X": "Pt"}


def build_prototype_library() -> dict[str, dict[str, Any]]:
    """Build every prototype (primitive cell, labelled sites) with ASE and pymatgen."""
    from ase.spacegroup import crystal
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    back = {v: k for k, v in _PLACEHOLDERS.items()}
    library = {}
    for name, (description, sg, setting, cellpar, basis) in _DEFINITIONS.items():
        atoms = crystal(
            [_PLACEHOLDERS[label] for label, _ in basis], [pos for _, pos in basis],
            spacegroup=sg, setting=setting, cellpar=cellpar,
        )
        conventional = AseAtomsAdaptor.get_structure(atoms)
        analyzer = SpacegroupAnalyzer(conventional, symprec=1e-3)
        if analyzer.get_space_group_number() != sg:
            raise RuntimeError(f"prototype {name}: built space group {analyzer.get_space_group_number()} != {sg}")
        primitive = analyzer.find_primitive()
        library[name] = {
            "description": description,
            "spacegroup": sg,
            "lattice": np.round(primitive.lattice.matrix, 8).tolist(),
            "labels": [back[site.specie.symbol] for site in primitive],
            "frac_coords": np.round(primitive.frac_coords, 8).tolist(),
        }
    return library


def write_prototype_library(path: str | Path | None = None) -> Path:
    """Write the library JSON (default: the package data file) and return its path."""
    path = Path(path) if path else package_data_path(PROTOTYPE_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(build_prototype_library(), indent=1, sort_keys=True))
    return path


@cache
def load_prototype_library() -> dict[str, dict[str, Any]]:
    """Return the shipped prototype library, ``{name: {spacegroup, lattice, labels, frac_coords}}``."""
    resource = package_data_path(PROTOTYPE_FILE)
    if resource.is_file():
        return json.loads(resource.read_text())
    return build_prototype_library()  # source checkout without the data file


def prototype_labels(name: str) -> list[str]:
    """Distinct site labels of a prototype, sorted (e.g. ``['A', 'B', 'X']``)."""
    return sorted(set(load_prototype_library()[name]["labels"]))


@cache
def _label_pair_distances(name: str) -> dict[tuple[str, str], float]:
    """Shortest distance per (sorted) label pair in the stored cell, for volume scaling."""
    proto = load_prototype_library()[name]
    structure = Structure(
        Lattice(proto["lattice"]), [_PLACEHOLDERS[lab] for lab in proto["labels"]], proto["frac_coords"]
    )
    labels = proto["labels"]
    centers, points, _, dists = structure.get_neighbor_list(6.0, exclude_self=True)
    pairs: dict[tuple[str, str], float] = {}
    for i, j, d in zip(centers, points, dists, strict=True):
        key = tuple(sorted((labels[i], labels[j])))
        pairs[key] = min(d, pairs.get(key, np.inf))
    return pairs


@cache
def _radius(symbol: str) -> float:
    el = Element(symbol)
    radius = el.atomic_radius or el.atomic_radius_calculated
    return float(radius) if radius else 1.5


def decorate_prototype(name: str, decoration: dict[str, str]) -> Structure:
    """Put elements on a prototype's labels and scale the cell so the closest pair touches.

    The scale makes the tightest label pair sit at the sum of the elements' empirical
    atomic radii: a crude guess that the relaxation corrects, but one that never starts
    from overlapping atoms or a vacuum-like cell.
    """
    proto = load_prototype_library()[name]
    scale = max(
        (_radius(decoration[a]) + _radius(decoration[b])) / d for (a, b), d in _label_pair_distances(name).items()
    )
    lattice = Lattice(np.asarray(proto["lattice"]) * scale)
    return Structure(lattice, [decoration[label] for label in proto["labels"]], proto["frac_coords"])


def _check_elements(element_lists: Sequence[Sequence[str]]) -> str | None:
    if not element_lists:
        return "no element lists given"
    for i, elements in enumerate(element_lists):
        if not elements:
            return f"element list {i} is empty"
        bad = [el for el in elements if not Element.is_valid_symbol(str(el))]
        if bad:
            return f"element list {i} has unknown element symbols {bad}"
    return None


def iter_prototype_candidates(
    element_lists: Sequence[Sequence[str]],
    prototypes: Sequence[str] | None = None,
    charge_balanced: bool = True,
    charge_balance_method: str = "pymatgen",
    permute_lists: bool = True,
) -> Iterator[Candidate | RejectedCandidate]:
    """Decorate prototypes with every combination of the element lists, in a fixed order.

    A prototype is used when its number of distinct labels equals ``len(element_lists)``;
    the lists go to the labels in sorted-label order, or in every order if
    ``permute_lists`` (so ``[[Li], [O]]`` gives both CaF2-type LiO2 and anti-fluorite Li2O).
    With ``charge_balanced``, compositions without a neutral oxidation-state assignment
    are skipped (counted as ``not_charge_balanced``, not listed one by one: there are
    usually many).
    """
    input_name = f"element_lists={[list(x) for x in element_lists]}"
    problem = _check_elements(element_lists)
    if problem:
        yield RejectedCandidate(reason=RejectionReason.INVALID_INPUT, message=f"{input_name}: {problem}", input_name=input_name)
        return
    library = load_prototype_library()
    names = list(prototypes) if prototypes is not None else list(library)
    lists = [list(dict.fromkeys(str(el) for el in elements)) for elements in element_lists]
    n_used = 0
    for name in names:
        if name not in library:
            yield RejectedCandidate(
                reason=RejectionReason.INVALID_INPUT,
                message=f"unknown prototype {name!r}; available: {sorted(library)}",
                input_name=name,
            )
            continue
        labels = prototype_labels(name)
        if len(labels) != len(lists):
            continue
        n_used += 1
        orders = itertools.permutations(labels) if permute_lists else [tuple(labels)]
        seen: set[tuple[tuple[str, str], ...]] = set()
        for order in orders:
            for elements in itertools.product(*lists):
                if len(set(elements)) < len(elements):
                    continue  # one element on two labels is a different structure type
                decoration = dict(zip(order, elements, strict=True))
                key = tuple(sorted(decoration.items()))
                if key in seen:
                    continue
                seen.add(key)
                structure = decorate_prototype(name, decoration)
                provenance = Provenance(
                    source=SourceMethod.PROTOTYPE, parent_id=name, prototype=name, decoration=dict(key)
                )
                if charge_balanced and not is_charge_balanced(structure.composition, charge_balance_method):
                    yield RejectedCandidate(
                        reason=RejectionReason.NOT_CHARGE_BALANCED,
                        message=f"{structure.composition.reduced_formula} ({name}) has no charge-balanced "
                        f"oxidation states ({charge_balance_method})",
                        input_name=name,
                        formula=structure.composition.reduced_formula,
                        provenance=provenance,
                    )
                    continue
                yield build_candidate(structure, provenance)
    if n_used == 0:
        yield RejectedCandidate(
            reason=RejectionReason.INVALID_INPUT,
            message=f"{input_name}: no prototype among {names} has {len(lists)} distinct site labels",
            input_name=input_name,
        )


if __name__ == "__main__":
    print(write_prototype_library())
