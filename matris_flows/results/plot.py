"""Convex-hull plots of a chemical system with the campaign's candidates on them.

The hull drawn is the reference entries plus the candidates (the hull that
``e_above_hull_campaign`` refers to): a candidate below the reference hull
becomes a hull vertex, the others are drawn as unstable points. Candidates are
overlaid with a red star so they stand out from the reference phases.

Figures are only saved, never shown: ``savefig`` renders PNG/SVG/PDF with
matplotlib's file backends whatever the interactive backend is (headless
machines fall back to Agg; tests select it explicitly).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from pymatgen.analysis.phase_diagram import PDPlotter, PhaseDiagram
from pymatgen.core import Composition, Element
from pymatgen.entries.computed_entries import ComputedEntry

from matris_flows.core.chemsys import chemsys_of, elements_of
from matris_flows.results.export import structure_of
from matris_flows.thermo.references import entries_within

logger = logging.getLogger(__name__)

PLOT_FORMATS = ("png", "svg", "pdf")
"""File types (by suffix) that :func:`plot_hull` writes."""

MAX_PLOT_ELEMENTS = 4
"""PDPlotter draws unary to quaternary systems (quaternary as a 3D tetrahedron)."""


def candidate_entry(doc: Mapping[str, Any]) -> ComputedEntry | None:
    """A ComputedEntry of a candidate on the reference hull's energy scale; None without an energy.

    Energy: ``corrected_energy_per_atom`` times the number of atoms of the relaxed
    structure (or of the reduced formula when the document has no structure).
    """
    energy_per_atom = doc.get("corrected_energy_per_atom")
    if energy_per_atom is None:
        return None
    structure = structure_of(doc)
    composition = structure.composition if structure is not None else Composition(doc["formula"])
    return ComputedEntry(
        composition,
        energy_per_atom * composition.num_atoms,
        entry_id=doc["candidate_id"],
        data={"candidate": True, "e_above_hull": doc.get("e_above_hull")},
    )


def hull_phase_diagram(
    chemsys: str, candidate_docs: Iterable[Mapping[str, Any]], reference_entries: Sequence[ComputedEntry]
) -> tuple[PhaseDiagram, list[ComputedEntry]]:
    """The phase diagram of ``chemsys`` from the reference entries plus the candidates within it.

    Candidates without an energy (failed) or with elements outside ``chemsys``
    are left out. Returns the diagram and the candidate entries it holds.
    """
    elements = elements_of(chemsys)
    references = entries_within(reference_entries, elements)
    candidates: list[ComputedEntry] = []
    for doc in candidate_docs:
        entry = candidate_entry(doc)
        if entry is None:
            logger.debug(f"{doc.get('candidate_id')}: no corrected energy, not on the hull plot")
        elif {el.symbol for el in entry.elements} <= elements:
            candidates.append(entry)
    return PhaseDiagram([*references, *candidates], elements=[Element(el) for el in sorted(elements)]), candidates


def candidate_points(plotter: PDPlotter, candidates: Sequence[ComputedEntry]) -> list[tuple[float, ...]]:
    """Plot coordinates of the candidates that ``plotter`` draws (stable, or unstable within show_unstable).

    The coordinates are PDPlotter's own (``pd_plot_data``), so markers sit on its points.
    """
    _lines, stable, unstable = plotter.pd_plot_data
    ids = {e.entry_id for e in candidates}
    points = [coord for coord, entry in stable.items() if entry.entry_id in ids]
    points += [
        coord
        for entry, coord in unstable.items()
        if entry.entry_id in ids and plotter._pd.get_e_above_hull(entry) <= plotter.show_unstable
    ]
    return points


def plot_hull(
    chemsys: str,
    candidate_docs: Iterable[Mapping[str, Any]],
    reference_entries: Sequence[ComputedEntry],
    path: str | Path,
    show_unstable: float = 0.2,
) -> Path:
    """Draw the convex hull of ``chemsys`` with the candidates and save it (PNG, SVG or PDF by suffix).

    Args:
        chemsys: Chemical system, elements in any order; 2 to 4 elements.
        candidate_docs: Candidate documents as stored; failed ones and ones outside ``chemsys`` are skipped.
        reference_entries: Reference entries on the candidates' energy scale (e.g. MP2020-corrected MP entries).
        path: Output file; its suffix picks the format.
        show_unstable: Draw unstable entries up to this far above the hull, eV/atom.

    Returns:
        The path written.
    """
    path = Path(path)
    suffix = path.suffix.lstrip(".").lower()
    if suffix not in PLOT_FORMATS:
        raise ValueError(f"cannot write a hull plot to {path}: use one of {', '.join(PLOT_FORMATS)}")
    n_elements = len(elements_of(chemsys))
    if not 2 <= n_elements <= MAX_PLOT_ELEMENTS:
        raise ValueError(f"hull plots need 2 to {MAX_PLOT_ELEMENTS} elements, {chemsys_of(elements_of(chemsys))} has {n_elements}")

    phase_diagram, candidates = hull_phase_diagram(chemsys, candidate_docs, reference_entries)
    plotter = PDPlotter(phase_diagram, show_unstable=show_unstable, backend="matplotlib")
    # MP holds many polymorphs per composition: labelling every unstable one is unreadable
    ax = plotter.get_plot(label_unstable=False)
    if points := candidate_points(plotter, candidates):
        ax.scatter(*zip(*points, strict=True), marker="*", s=250, c="red", zorder=10, label="candidates")
        ax.legend(loc="best")
    ax.set_title(f"{chemsys_of(elements_of(chemsys))}: {len(candidates)} candidates")
    figure = ax.figure
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        figure.savefig(path, format=suffix, bbox_inches="tight")
    finally:
        plt.close(figure)
    return path
