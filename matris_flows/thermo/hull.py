"""Energies above the convex hull, one phase diagram per chemical system, reused.

pymatgen builds the hull; the lookup of which hull facet a composition falls in
is vectorised here, because pymatgen's per-entry facet search (a Python loop over
facets) dominates the cost of screening 1e5 candidates. The numbers are the same
as ``PhaseDiagram.get_decomp_and_e_above_hull(entry, allow_negative=True)``.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pymatgen.analysis.phase_diagram import PatchedPhaseDiagram, PhaseDiagram
from pymatgen.core import Composition, Element
from pymatgen.entries import Entry

# Above this many elements a single convex hull gets expensive; patch it (as MP and
# Matbench Discovery do for their full databases).
PATCH_ABOVE_N_ELEMENTS = 5
_TOL = 1e-9  # pymatgen's in-simplex tolerance (numerical_tol / 10)
_AMOUNT_TOL = 1e-8  # pymatgen drops decomposition amounts below numerical_tol
_CHUNK = 4_000_000  # floats per barycentric block: bounds memory for big batches


@dataclass(frozen=True)
class HullEnergy:
    """Hull quantities of one composition/energy pair, eV/atom."""

    e_above_hull: float
    hull_energy_per_atom: float
    formation_energy_per_atom: float
    decomposition: tuple[tuple[Entry, float], ...] = ()


def build_phase_diagram(
    entries: Sequence[Entry],
    elements: Sequence[Element | str] | None = None,
    patch_above_n_elements: int = PATCH_ABOVE_N_ELEMENTS,
) -> PhaseDiagram:
    """A ``PhaseDiagram``, or a ``PatchedPhaseDiagram`` for systems with many elements."""
    els = sorted({Element(str(e)) for e in elements} if elements else {el for e in entries for el in e.elements})
    if len(els) > patch_above_n_elements:
        return PatchedPhaseDiagram(list(entries), elements=els)
    return PhaseDiagram(list(entries), elements=els)


class _FacetTable:
    """Inverted barycentric matrices of one PhaseDiagram's lower-hull facets."""

    def __init__(self, pd: PhaseDiagram) -> None:
        self.elements = list(pd.elements)
        dim = len(self.elements)
        facets = np.asarray(pd.facets, dtype=int).reshape(-1, dim)
        vertices = np.asarray(pd.qhull_data)[facets]  # (n_facets, dim, dim): dim-1 coords + energy
        mat = np.ones((len(facets), dim, dim))
        mat[:, : dim - 1, :] = vertices[:, :, :-1].transpose(0, 2, 1)
        self.inverse = np.linalg.inv(mat)
        self.vertex_energies = vertices[:, :, -1]
        self.facets = facets
        self.entries = pd.qhull_entries
        self.mu = np.array([pd.el_refs[el].energy_per_atom for el in self.elements])

    def evaluate(self, fractions: np.ndarray, energies: np.ndarray, with_decomposition: bool) -> list[HullEnergy]:
        n, dim = fractions.shape
        rhs = np.concatenate([fractions[:, 1:], np.ones((n, 1))], axis=1)
        chunk = max(1, _CHUNK // max(1, len(self.facets) * dim))
        out: list[HullEnergy] = []
        for start in range(0, n, chunk):
            block = rhs[start : start + chunk]
            bary = np.einsum("fij,nj->nfi", self.inverse, block)  # (n, n_facets, dim)
            worst = bary.min(axis=2)
            inside = worst >= -_TOL
            # the lower hull is continuous, so any facet containing the point gives the same energy
            facet = np.where(inside.any(axis=1), inside.argmax(axis=1), worst.argmax(axis=1))
            rows = np.arange(len(block))
            weights = bary[rows, facet]
            hull_e = np.einsum("ni,ni->n", weights, self.vertex_energies[facet])
            e_block = energies[start : start + chunk]
            form_e = e_block - fractions[start : start + chunk] @ self.mu
            for k in range(len(block)):
                decomp: tuple[tuple[Entry, float], ...] = ()
                if with_decomposition:
                    decomp = tuple(
                        (self.entries[idx], float(w))
                        for idx, w in zip(self.facets[facet[k]], weights[k], strict=True)
                        if abs(w) > _AMOUNT_TOL
                    )
                out.append(HullEnergy(float(e_block[k] - hull_e[k]), float(hull_e[k]), float(form_e[k]), decomp))
        return out


class HullIndex:
    """A reference phase diagram prepared for fast repeated hull look-ups."""

    def __init__(self, phase_diagram: PhaseDiagram) -> None:
        self.phase_diagram = phase_diagram
        self.elements = frozenset(el.symbol for el in phase_diagram.elements)
        self._tables: dict[object, _FacetTable] = {}

    @classmethod
    def from_entries(
        cls,
        entries: Sequence[Entry],
        elements: Sequence[Element | str] | None = None,
        patch_above_n_elements: int = PATCH_ABOVE_N_ELEMENTS,
    ) -> "HullIndex":
        """Build the phase diagram of ``entries`` once and index it."""
        return cls(build_phase_diagram(entries, elements, patch_above_n_elements))

    @property
    def n_entries(self) -> int:
        """Entries the hull was built from."""
        return len(self.phase_diagram.all_entries)

    def _table_for(self, space: frozenset[Element]) -> _FacetTable:
        pd = self.phase_diagram
        if isinstance(pd, PatchedPhaseDiagram):
            try:
                pd = pd.get_pd_for_entry(Composition({el: 1 for el in space}))
            except ValueError:
                # no patch spans this subspace (e.g. only elemental entries in it): its own hull
                key = ("subspace", space)
                if key not in self._tables:
                    within = [e for e in pd.all_entries if set(e.elements) <= space]
                    self._tables[key] = _FacetTable(PhaseDiagram(within, elements=sorted(space)))
                return self._tables[key]
        if id(pd) not in self._tables:
            self._tables[id(pd)] = _FacetTable(pd)
        return self._tables[id(pd)]

    def evaluate(
        self,
        compositions: Sequence[Composition],
        energies_per_atom: Sequence[float],
        with_decomposition: bool = True,
    ) -> list[HullEnergy]:
        """Hull energies of many (composition, energy per atom) pairs, in input order."""
        energies = np.asarray(energies_per_atom, dtype=float)
        groups: dict[frozenset[Element], list[int]] = defaultdict(list)
        for i, comp in enumerate(compositions):
            groups[frozenset(comp.elements)].append(i)
        results: list[HullEnergy | None] = [None] * len(compositions)
        for space, idxs in groups.items():
            if extra := {el.symbol for el in space} - self.elements:
                raise ValueError(f"Elements {sorted(extra)} are not in the hull of {'-'.join(sorted(self.elements))}.")
            table = self._table_for(space)
            fractions = np.array(
                [[compositions[i].get_atomic_fraction(el) for el in table.elements] for i in idxs], dtype=float
            )
            for i, res in zip(idxs, table.evaluate(fractions, energies[idxs], with_decomposition), strict=True):
                results[i] = res
        return results  # type: ignore[return-value]


def energy_above_hull(hull: HullIndex, entries: Sequence[Entry], with_decomposition: bool = True) -> list[HullEnergy]:
    """Energy above ``hull`` (may be negative), hull energy, formation energy and decomposition per entry."""
    return hull.evaluate([e.composition for e in entries], [e.energy_per_atom for e in entries], with_decomposition)
