"""Duplicate detection that scales: bucket by a cheap invariant key, match within buckets.

All-pairs ``StructureMatcher`` is quadratic in the campaign size. Structures that match
must share their reduced formula, and (at a loose ``symprec``) their space group and
primitive-cell size, so those form the bucket key and ``StructureMatcher.fit`` only runs
against the few structures already in the same bucket. The index stores compact arrays
rather than ``Structure`` objects so 50k accepted candidates stay cheap to hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure

from matris_flows.core.symmetry import symmetry
from matris_flows.core.validity import native_input_problem

PREKEY_MODES = ("spacegroup", "formula")


def dedup_key(structure: Structure, mode: str = "spacegroup", symprec: float = 0.1) -> str:
    """Bucket key of a structure: ``formula|spacegroup|primitive nsites`` (or just the formula).

    The primitive size is that of the standardised primitive cell, so a conventional cell
    and its primitive cell share a key.
    """
    formula = structure.composition.reduced_formula
    if mode == "formula":
        return formula
    if mode != "spacegroup":
        raise ValueError(f"Unknown dedup key mode {mode!r}; use one of {PREKEY_MODES}.")
    number, n_primitive = symmetry(structure, symprec)
    return f"{formula}|{number}|{n_primitive}"


def _compact(structure: Structure) -> dict[str, Any]:
    return {
        "lattice": np.round(structure.lattice.matrix, 6).tolist(),
        "species": [site.specie.symbol for site in structure],
        "frac": np.round(structure.frac_coords, 6).tolist(),
    }


def _expand(compact: dict[str, Any]) -> Structure:
    return Structure(Lattice(compact["lattice"]), compact["species"], compact["frac"])


@dataclass
class DedupIndex:
    """Accepted structures grouped by :func:`dedup_key`; ``find`` returns the id of a match.

    ``reference`` structures (known phases) are checked first and are not part of the
    serialised state: each job rebuilds them from its reference entries.
    """

    key_mode: str = "spacegroup"
    symprec: float = 0.1
    ltol: float = 0.2
    stol: float = 0.3
    angle_tol: float = 5.0
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    reference_groups: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    n_comparisons: int = 0

    def __post_init__(self) -> None:
        # scale=True: candidates are unrelaxed, so a volume difference does not make a new phase.
        # imported here: scipy.optimize comes with it, and reading a spec must stay fast
        from pymatgen.analysis.structure_matcher import StructureMatcher

        self._matcher = StructureMatcher(
            ltol=self.ltol, stol=self.stol, angle_tol=self.angle_tol, primitive_cell=True, scale=True,
            attempt_supercell=False,
        )

    def key(self, structure: Structure) -> str:
        """Bucket key under this index's settings."""
        return dedup_key(structure, self.key_mode, self.symprec)

    def add_references(self, references: Iterable[tuple[str, Structure]]) -> int:
        """Index known phases (``(entry_id, structure)`` pairs); return how many were added."""
        n = 0
        for ref_id, structure in references:
            if not structure.is_ordered or native_input_problem(structure) is not None:
                continue  # a disordered (or broken) reference cannot equal an ordered, valid candidate
            plain = structure.copy()
            plain.remove_oxidation_states()
            self.reference_groups.setdefault(self.key(plain), []).append((ref_id, _compact(plain)))
            n += 1
        return n

    def _match(self, structure: Structure, members: list[tuple[str, dict[str, Any]]]) -> str | None:
        for member_id, compact in members:
            self.n_comparisons += 1
            if self._matcher.fit(structure, _expand(compact)):
                return member_id
        return None

    def find(self, structure: Structure, key: str | None = None) -> tuple[str | None, bool]:
        """Return ``(matching id, is_reference)``, or ``(None, False)`` when the structure is new."""
        key = key or self.key(structure)
        match = self._match(structure, self.reference_groups.get(key, []))
        if match is not None:
            return match, True
        return self._match(structure, self.groups.get(key, [])), False

    def add(self, structure: Structure, structure_id: str, key: str | None = None) -> None:
        """Index an accepted structure."""
        key = key or self.key(structure)
        self.groups.setdefault(key, []).append((structure_id, _compact(structure)))

    @property
    def n_indexed(self) -> int:
        """Number of accepted structures held."""
        return sum(len(members) for members in self.groups.values())
