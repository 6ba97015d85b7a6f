"""What a convex-hull picture of a chemical system shows, computed from the campaign store's documents.

Everything is in formation-energy space and comes from what the campaign store holds:
the ``references`` collection (one document per reference phase, with its formation
energy and e_above_hull on the reference hull) and the ``candidates`` collection.
No reference files or relaxations are needed again.

A :class:`HullData` holds

* the hull the candidates were judged against: the reference hull for MP-scale
  campaigns, the hull of the elements plus the candidates for campaign-internal ones;
  for MP-scale campaigns whose candidates change the drawn tie lines, the campaign hull
  (references plus candidates) as well;
* the stable reference phases (one per composition, the elements always among them)
  and the unstable ones;
* the candidates with their energy above that hull and whether they are stable on it
  and on the campaign hull.

No plotting library is imported here: :mod:`matris_flows.results.hull_matplotlib` draws a
:class:`HullData` as a PNG/SVG/PDF, :mod:`matris_flows.results.hull_plotly` as an
interactive page.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Element

from matris_flows.core.chemsys import chemsys_of, subsystems

logger = logging.getLogger(__name__)

MAX_PLOT_ELEMENTS = 4
"""Binary, ternary and quaternary systems are drawn; larger ones need a subsystem."""

COLOR_MAX = 0.2
"""Upper end of the candidates' colour scale, eV/atom above the hull (higher values share its colour)."""

SHOW_UNSTABLE = 0.5
"""Unstable reference phases up to this far above the hull are drawn (faint), eV/atom."""

Edge = tuple[tuple[float, ...], tuple[float, ...]]
"""A tie line: two points, each (atom fractions in the order of the elements..., formation energy per atom)."""


@dataclass(frozen=True)
class HullPoint:
    """One phase of the picture: a reference phase or a candidate."""

    formula: str
    ident: str  # candidate_id, or the reference's material_id / entry_id
    fractions: tuple[float, ...]  # atom fractions in the order of HullData.elements
    formation_energy: float  # eV/atom
    e_above_hull: float | None  # above the hull the picture colours against, eV/atom
    is_stable: bool
    is_stable_campaign: bool = False
    color_value: float | None = None  # what the colour shows (HullData.color_by); None: no value (grey)
    source: str | None = None  # a candidate's generator (provenance.source)


@dataclass
class HullData:
    """What a hull picture shows, independent of how it is drawn."""

    elements: tuple[str, ...]
    hull_kind: str  # "mp" or "campaign_internal"
    stable_references: list[HullPoint]
    unstable_references: list[HullPoint]
    candidates: list[HullPoint]
    hull_edges: list[Edge]  # the hull the candidates are coloured against
    campaign_hull_edges: list[Edge] = field(default_factory=list)  # drawn dashed; empty when it is the same hull
    color_by: str = "e_above_hull"  # e_above_hull, campaign, consensus or spread (see COLOR_BY)

    @property
    def chemsys(self) -> str:
        return "-".join(self.elements)

    def color_values(self) -> list[float | None]:
        """The candidates' colour values, in order (their e_above_hull where no other value was collected)."""
        if self.color_by == "e_above_hull":
            return [p.e_above_hull if p.color_value is None else p.color_value for p in self.candidates]
        return [p.color_value for p in self.candidates]

    @property
    def color_label(self) -> str:
        """What the candidates' colour means, for the colour bar."""
        if self.color_by == "campaign":
            return "candidate energy above the campaign hull (eV/atom)"
        if self.color_by == "consensus":
            return "consensus energy above the hull (eV/atom)"
        if self.color_by == "spread":
            return "spread of the models' energies above the hull (eV/atom)"
        return f"candidate energy above the {self.hull_name.split(' (')[0]} (eV/atom)"

    @property
    def hull_name(self) -> str:
        """Which hull the solid lines and the colours refer to."""
        return "MP reference hull" if self.hull_kind == "mp" else "campaign-internal hull (elements + candidates)"

    def shown_unstable(self, up_to: float) -> list[HullPoint]:
        """The unstable reference phases at most ``up_to`` eV/atom above the hull (and those of unknown distance)."""
        return [p for p in self.unstable_references if p.e_above_hull is None or p.e_above_hull <= up_to]


def plot_elements(chemsys: str) -> tuple[str, ...]:
    """The sorted element symbols of ``chemsys``; a one-line ValueError for typos and sizes that cannot be drawn."""
    symbols = sorted({s.strip() for s in chemsys.split("-") if s.strip()})
    if not symbols:
        raise ValueError(f"invalid chemical system {chemsys!r}: give elements joined by '-', e.g. Fe-Li-O")
    bad = [s for s in symbols if not Element.is_valid_symbol(s)]
    if bad:
        verb = "is not an element" if len(bad) == 1 else "are not elements"
        raise ValueError(f"invalid chemical system {chemsys!r}: {', '.join(bad)} {verb}")
    if not 2 <= len(symbols) <= MAX_PLOT_ELEMENTS:
        hint = f": plot a subsystem, e.g. --chemsys {'-'.join(symbols[:3])}" if len(symbols) > MAX_PLOT_ELEMENTS else ""
        raise ValueError(f"hull plots draw 2 to {MAX_PLOT_ELEMENTS} elements, {'-'.join(symbols)} has {len(symbols)}{hint}")
    return tuple(symbols)


def subsystem_chemsys(elements: Iterable[str]) -> list[str]:
    """Every chemsys string within ``elements`` (for ``{"chemsys": {"$in": ...}}`` store queries)."""
    return [chemsys_of(s) for s in subsystems(frozenset(elements))]


COLOR_BY = {"e_above_hull": None, "campaign": "e_above_hull_campaign", "consensus": "e_above_hull_consensus",
            "spread": "consensus_spread"}
"""What the candidates can be coloured by: their e_above_hull, that on the campaign hull (references and every candidate),
the consensus value or the models' spread (field read)."""


def hull_data(
    chemsys: str,
    candidate_docs: Iterable[Mapping[str, Any]],
    reference_docs: Iterable[Mapping[str, Any]],
    color_by: str = "e_above_hull",
) -> HullData:
    """Collect what the picture of ``chemsys`` shows from candidate and reference documents.

    Args:
        chemsys: Chemical system, elements in any order; 2 to 4 elements.
        candidate_docs: Candidate documents as stored; ones without energies (thermo_status
            other than 'ok'), duplicates and ones outside ``chemsys`` are left out.
        reference_docs: Reference-phase documents as stored by the hull step; ones outside
            ``chemsys`` are left out and missing elements are added at zero formation energy.
        color_by: Colour candidates by ``e_above_hull`` (the hull judged against), ``campaign`` (e_above_hull_campaign), ``consensus``
            (e_above_hull_consensus) or ``spread`` (consensus_spread); candidates without the
            value (not shortlisted) are grey.

    Raises:
        ValueError: a bad ``chemsys`` (unknown element, fewer than 2 or more than 4 elements) or ``color_by``.
    """
    if color_by not in COLOR_BY:
        raise ValueError(f"colour by {', '.join(COLOR_BY)}, not {color_by!r}")
    elements = plot_elements(chemsys)
    drawn = [d for d in candidate_docs if _is_drawn_candidate(d, elements)]
    hull_kind = _hull_kind(drawn, elements)
    stable, unstable = _reference_points(reference_docs, elements)
    candidates = [_candidate_point(d, elements, hull_kind, COLOR_BY[color_by]) for d in drawn]
    hull_edges, campaign_hull_edges = _hull_lines(stable, candidates, elements, hull_kind)
    return HullData(
        elements=elements,
        hull_kind=hull_kind,
        stable_references=sorted(stable, key=lambda p: p.fractions),
        unstable_references=unstable,
        candidates=candidates,
        hull_edges=hull_edges,
        campaign_hull_edges=campaign_hull_edges,
        color_by=color_by,
    )


def _fractions(formula: str, elements: Sequence[str]) -> tuple[float, ...]:
    composition = Composition(formula)
    return tuple(composition.get_atomic_fraction(Element(el)) for el in elements)


def _within(doc: Mapping[str, Any], elements: Sequence[str]) -> bool:
    chemsys = doc.get("chemsys")
    return bool(chemsys) and set(chemsys.split("-")) <= set(elements)


def _is_drawn_candidate(doc: Mapping[str, Any], elements: Sequence[str]) -> bool:
    """A candidate within the system with an energy, and not a duplicate of another."""
    return (
        _within(doc, elements) and doc.get("thermo_status", "ok") == "ok"
        and doc.get("formation_energy_per_atom") is not None and doc.get("duplicate_of") is None
    )


def _hull_kind(candidate_docs: Sequence[Mapping[str, Any]], elements: Sequence[str]) -> str:
    """The hull the candidates were judged against; the reference hull when they disagree."""
    kinds = {d.get("hull_kind") for d in candidate_docs} - {None}
    if len(kinds) > 1:
        logger.warning(f"{'-'.join(elements)}: candidates of both hull kinds, colouring against the reference hull")
    return "campaign_internal" if kinds == {"campaign_internal"} else "mp"


def _reference_points(
    reference_docs: Iterable[Mapping[str, Any]], elements: Sequence[str]
) -> tuple[list[HullPoint], list[HullPoint]]:
    """The stable reference phases (one per composition, every element among them) and the unstable ones.

    The stable ones come in document order (unrecorded elements last), the order the hull is built from.
    """
    stable: dict[str, HullPoint] = {}
    unstable: list[HullPoint] = []
    for doc in reference_docs:
        if not _within(doc, elements):
            continue
        point = HullPoint(
            formula=doc["formula"],
            ident=str(doc.get("material_id") or doc.get("entry_id")),
            fractions=_fractions(doc["formula"], elements),
            formation_energy=float(doc["formation_energy_per_atom"]),
            e_above_hull=doc.get("e_above_hull"),
            is_stable=bool(doc.get("is_stable")),
        )
        if not point.is_stable:
            unstable.append(point)
        # one label per composition: the lowest of degenerate stable polymorphs
        elif point.formula not in stable or point.formation_energy < stable[point.formula].formation_energy:
            stable[point.formula] = point
    for el in elements:  # the corners are on every hull, recorded or not
        if not any(p.fractions == _fractions(el, elements) for p in stable.values()):
            stable[el] = HullPoint(el, el, _fractions(el, elements), 0.0, 0.0, True)
    return list(stable.values()), unstable


def _candidate_point(doc: Mapping[str, Any], elements: Sequence[str], hull_kind: str, color_field: str | None = None) -> HullPoint:
    """The candidate, its energy above (and stability on) the hull it was judged against."""
    # the other hull's number stands in where the judged one was not recorded
    judged_field, other_field = (
        ("e_above_hull", "e_above_hull_campaign") if hull_kind == "mp" else ("e_above_hull_campaign", "e_above_hull")
    )
    value = doc.get(judged_field)
    value = doc.get(other_field) if value is None else value
    color = value if color_field is None else doc.get(color_field)
    return HullPoint(
        formula=doc["formula"],
        ident=doc["candidate_id"],
        fractions=_fractions(doc["formula"], elements),
        formation_energy=float(doc["formation_energy_per_atom"]),
        e_above_hull=None if value is None else float(value),
        is_stable=bool(doc.get("is_stable" if hull_kind == "mp" else "is_stable_campaign")),
        is_stable_campaign=bool(doc.get("is_stable_campaign")),
        color_value=None if color is None else float(color),
        source=(doc.get("provenance") or {}).get("source"),
    )


def _hull_lines(
    stable: Sequence[HullPoint], candidates: Sequence[HullPoint], elements: Sequence[str], hull_kind: str
) -> tuple[list[Edge], list[Edge]]:
    """The tie lines of the hull the candidates are coloured against, and of the campaign hull where it differs."""
    reference_edges = _edges(_hull_pd(stable, elements), elements)
    campaign_edges = _edges(_hull_pd([*stable, *candidates], elements), elements) if candidates else reference_edges
    if hull_kind != "mp":
        return campaign_edges, []
    # dashed only when candidates changed the drawn lines: composition plots show tie lines only,
    # so a candidate that merely deepens a known phase's vertex changes nothing there
    drop_energy = len(elements) > 2
    changed = _vertex_set(campaign_edges, drop_energy) != _vertex_set(reference_edges, drop_energy)
    return reference_edges, campaign_edges if changed else []


def _hull_pd(points: Iterable[HullPoint], elements: Sequence[str]) -> PhaseDiagram:
    """Phase diagram in formation-energy space (elements at zero) of ``points``."""
    entries = [PDEntry(Composition({el: 1}), 0.0, name=el) for el in elements]
    for p in points:
        composition = Composition({el: f for el, f in zip(elements, p.fractions, strict=True) if f > 0})
        entries.append(PDEntry(composition, p.formation_energy * composition.num_atoms, name=p.ident))
    return PhaseDiagram(entries, elements=[Element(el) for el in elements])


def _edges(pd: PhaseDiagram, elements: Sequence[str]) -> list[Edge]:
    """Tie lines of the hull: each edge of each facet, as two (fraction..., E_form) points."""
    vertices = [
        (*(e.composition.get_atomic_fraction(Element(el)) for el in elements), pd.get_form_energy_per_atom(e))
        for e in pd.qhull_entries
    ]
    edges = {tuple(sorted(pair)) for facet in pd.facets for pair in combinations(facet, 2)}
    return [(vertices[i], vertices[j]) for i, j in sorted(edges)]


def _vertex_set(edges: Sequence[Edge], drop_energy: bool) -> set[frozenset[tuple[float, ...]]]:
    """The edges as sets of rounded points (without the energy: as a composition plot shows them)."""
    return {frozenset(tuple(round(x, 6) for x in (p[:-1] if drop_energy else p)) for p in edge) for edge in edges}
