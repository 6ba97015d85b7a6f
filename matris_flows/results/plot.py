"""Convex-hull pictures of a chemical system with the campaign's candidates on them.

Everything is drawn in formation-energy space from what the campaign store holds:
the ``references`` collection (one document per reference phase, with its formation
energy and e_above_hull on the reference hull) and the ``candidates`` collection.
No reference files or relaxations are needed again.

What is drawn:

* the hull the candidates were judged against (solid): the reference hull for
  MP-scale campaigns, the hull of the elements plus the candidates for
  campaign-internal ones; for MP-scale campaigns whose candidates lower the hull,
  the campaign hull (references plus candidates) is drawn dashed as well;
* stable reference phases as black dots with their formulas, moved apart so that
  they do not overlap; unstable reference phases as small faint dots;
* candidates coloured by their energy above that hull (a colour bar, clipped to
  0 .. ``color_max``), stars for the ones stable on it, red rings for the ones
  stable on the campaign hull.

Binary systems are drawn as formation energy against composition, ternary ones as
a composition triangle and quaternary ones as a composition tetrahedron seen
obliquely (energies as colour). :func:`plot_hull` writes PNG/SVG/PDF with
matplotlib's file backends (never shown); :func:`plot_hull_html` writes a
self-contained interactive plotly page.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Annotation, Text
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Element
from pymatgen.util.string import latexify

from matris_flows.core.chemsys import chemsys_of, subsystems

logger = logging.getLogger(__name__)

PLOT_FORMATS = ("png", "svg", "pdf")
"""File types (by suffix) that :func:`plot_hull` writes."""

MAX_PLOT_ELEMENTS = 4
"""Binary, ternary and quaternary systems are drawn; larger ones need a subsystem."""

COLOR_MAX = 0.2
"""Upper end of the candidates' colour scale, eV/atom above the hull (higher values share its colour)."""

SHOW_UNSTABLE = 0.5
"""Unstable reference phases up to this far above the hull are drawn (faint), eV/atom."""

MAX_CANDIDATE_LABELS = 20
"""Stable candidates get a formula label when there are at most this many (more would bury the picture)."""

CMAP = "viridis"

# composition-space corners: a triangle, and a tetrahedron seen from slightly above and
# to the side (orthographic projections are linear, so a point is the fraction-weighted
# sum of its projected corners)
_TRIANGLE = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])
_TETRAHEDRON = np.array([[0.0, 0.0], [0.72, -0.32], [1.12, 0.18], [0.5, 0.92]])

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

    @property
    def chemsys(self) -> str:
        return "-".join(self.elements)

    @property
    def hull_name(self) -> str:
        """Which hull the solid lines and the colours refer to."""
        return "MP reference hull" if self.hull_kind == "mp" else "campaign-internal hull (elements + candidates)"


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


def _fractions(formula: str, elements: Sequence[str]) -> tuple[float, ...]:
    composition = Composition(formula)
    return tuple(composition.get_atomic_fraction(Element(el)) for el in elements)


def _within(doc: Mapping[str, Any], elements: Sequence[str]) -> bool:
    chemsys = doc.get("chemsys")
    return bool(chemsys) and set(chemsys.split("-")) <= set(elements)


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


def hull_data(
    chemsys: str, candidate_docs: Iterable[Mapping[str, Any]], reference_docs: Iterable[Mapping[str, Any]]
) -> HullData:
    """Collect what the picture of ``chemsys`` shows from candidate and reference documents.

    Args:
        chemsys: Chemical system, elements in any order; 2 to 4 elements.
        candidate_docs: Candidate documents as stored; ones without energies (thermo_status
            other than 'ok'), duplicates and ones outside ``chemsys`` are left out.
        reference_docs: Reference-phase documents as stored by the hull step; ones outside
            ``chemsys`` are left out and missing elements are added at zero formation energy.

    Raises:
        ValueError: a bad ``chemsys`` (unknown element, fewer than 2 or more than 4 elements).
    """
    elements = plot_elements(chemsys)
    candidates = [
        d for d in candidate_docs
        if _within(d, elements) and d.get("thermo_status", "ok") == "ok"
        and d.get("formation_energy_per_atom") is not None and d.get("duplicate_of") is None
    ]
    kinds = {d.get("hull_kind") for d in candidates} - {None}
    hull_kind = "campaign_internal" if kinds == {"campaign_internal"} else "mp"
    if len(kinds) > 1:
        logger.warning(f"{'-'.join(elements)}: candidates of both hull kinds, colouring against the reference hull")

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

    # colour against the hull the candidates were judged on
    color_field, other_field = (
        ("e_above_hull", "e_above_hull_campaign") if hull_kind == "mp" else ("e_above_hull_campaign", "e_above_hull")
    )
    points = []
    for doc in candidates:
        value = doc.get(color_field)
        value = doc.get(other_field) if value is None else value
        points.append(
            HullPoint(
                formula=doc["formula"],
                ident=doc["candidate_id"],
                fractions=_fractions(doc["formula"], elements),
                formation_energy=float(doc["formation_energy_per_atom"]),
                e_above_hull=None if value is None else float(value),
                is_stable=bool(doc.get("is_stable" if hull_kind == "mp" else "is_stable_campaign")),
                is_stable_campaign=bool(doc.get("is_stable_campaign")),
            )
        )

    reference_edges = _edges(_hull_pd(stable.values(), elements), elements)
    campaign_edges = _edges(_hull_pd([*stable.values(), *points], elements), elements) if points else reference_edges
    if hull_kind == "mp":
        hull_edges = reference_edges
        # dashed only when candidates changed the drawn lines: composition plots show tie lines only,
        # so a candidate that merely deepens a known phase's vertex changes nothing there
        drop_energy = len(elements) > 2
        changed = _vertex_set(campaign_edges, drop_energy) != _vertex_set(reference_edges, drop_energy)
        extra = campaign_edges if changed else []
    else:
        hull_edges, extra = campaign_edges, []
    return HullData(
        elements=elements,
        hull_kind=hull_kind,
        stable_references=sorted(stable.values(), key=lambda p: p.fractions),
        unstable_references=unstable,
        candidates=points,
        hull_edges=hull_edges,
        campaign_hull_edges=extra,
    )


# ----------------------------------------------------------------------------- geometry


def _xy(data: HullData, fractions: Sequence[float], formation_energy: float) -> tuple[float, float]:
    """Plot coordinates: (fraction of the second element, E_form) for binaries, the projected composition otherwise."""
    n = len(data.elements)
    if n == 2:
        return float(fractions[1]), float(formation_energy)
    corners = _TRIANGLE if n == 3 else _TETRAHEDRON
    x, y = np.asarray(fractions, dtype=float) @ corners
    return float(x), float(y)


def _point_xy(data: HullData, p: HullPoint) -> tuple[float, float]:
    return _xy(data, p.fractions, p.formation_energy)


def _edge_segments(data: HullData, edges) -> list[list[tuple[float, float]]]:
    return [[_xy(data, a[:-1], a[-1]), _xy(data, b[:-1], b[-1])] for a, b in edges]


def _shown_unstable(data: HullData, show_unstable: float) -> list[HullPoint]:
    return [p for p in data.unstable_references if p.e_above_hull is None or p.e_above_hull <= show_unstable]


def _label(formula: str) -> str:
    # upright subscripted formula (mathtext would set the letters in italics)
    return f"$\\mathrm{{{latexify(formula).replace('$', '')}}}$" if any(c.isdigit() for c in formula) else formula


# ----------------------------------------------------------------------------- matplotlib


def hull_figure(
    data: HullData, show_unstable: float = SHOW_UNSTABLE, color_max: float = COLOR_MAX, title: str | None = None
) -> Figure:
    """The static picture of ``data`` as a matplotlib Figure (not shown; the caller saves and closes it).

    Artists carry gids the tests (and anyone post-processing the figure) can find:
    ``reference-label``/``candidate-label`` texts, ``candidates``, ``stable-references``,
    ``unstable-references`` scatters, ``hull``/``campaign-hull`` line collections.
    """
    n = len(data.elements)
    figure, ax = plt.subplots(figsize=(8.0, 6.0) if n == 2 else (8.0, 7.0), dpi=150)
    if n > 2:
        _draw_outline(ax, data)

    from matplotlib.collections import LineCollection

    # a quaternary hull has many tie lines: thin and grey so that the points stay readable
    hull_style = {"colors": "0.15", "linewidths": 1.1} if n < 4 else {"colors": "0.45", "linewidths": 0.5, "alpha": 0.6}
    ax.add_collection(LineCollection(_edge_segments(data, data.hull_edges), zorder=2, gid="hull", **hull_style))
    if data.campaign_hull_edges:
        ax.add_collection(
            LineCollection(
                _edge_segments(data, data.campaign_hull_edges), colors="tab:red", linewidths=0.9, linestyles="--",
                zorder=2, gid="campaign-hull",
            )
        )

    faint = _shown_unstable(data, show_unstable)
    if faint:
        ax.scatter(*zip(*(_point_xy(data, p) for p in faint), strict=True), s=9, c="0.6", alpha=0.45, linewidths=0,
                   zorder=1, gid="unstable-references")
    stable_xy = [_point_xy(data, p) for p in data.stable_references]
    ax.scatter(*zip(*stable_xy, strict=True), s=30, c="black", zorder=4, gid="stable-references")

    cand_xy = [_point_xy(data, p) for p in data.candidates]
    mappable = None
    coincident = False  # candidates of one composition drawn at one point (composition projections)
    if data.candidates:
        values = np.array([np.nan if p.e_above_hull is None else p.e_above_hull for p in data.candidates])
        norm = Normalize(vmin=0.0, vmax=color_max, clip=False)
        cmap = plt.get_cmap(CMAP).with_extremes(bad="0.75")
        stable_mask = np.array([p.is_stable for p in data.candidates])
        xy = np.array(cand_xy)
        # Candidates of one composition share a point when energy is not an axis: draw the highest
        # first so the one that matters (lowest e_above_hull) is the one seen.
        unstable = np.flatnonzero(~stable_mask)
        unstable = unstable[np.argsort(-np.nan_to_num(values[unstable], nan=np.inf), kind="stable")]
        mappable = ax.scatter(xy[unstable, 0], xy[unstable, 1], c=values[unstable], cmap=cmap, norm=norm, s=42,
                              edgecolors="0.15", linewidths=0.5, zorder=5, gid="candidates")
        if stable_mask.any():
            ax.scatter(xy[stable_mask, 0], xy[stable_mask, 1], c=values[stable_mask], cmap=cmap, norm=norm, marker="*",
                       s=190, edgecolors="black", linewidths=0.7, zorder=6, gid="stable-candidates")
        campaign_mask = np.array([p.is_stable_campaign for p in data.candidates])
        if campaign_mask.any():
            ax.scatter(xy[campaign_mask, 0], xy[campaign_mask, 1], s=330, facecolors="none", edgecolors="tab:red",
                       linewidths=1.2, zorder=6, gid="stable-campaign-candidates")
        extend = "neither"
        finite = values[np.isfinite(values)]
        if finite.size:
            low, high = (finite < 0).any(), (finite > color_max).any()
            extend = "both" if low and high else "min" if low else "max" if high else "neither"
        if n > 2:
            coincident = _count_labels(ax, xy)
        colorbar = figure.colorbar(mappable, ax=ax, extend=extend, shrink=0.8, pad=0.02)
        colorbar.set_label(f"candidate energy above the {data.hull_name.split(' (')[0]} (eV/atom)")

    if n == 2:
        ax.set_xlabel(f"x in {data.elements[0]}$_{{1-x}}${data.elements[1]}$_x$")
        ax.set_ylabel("formation energy (eV/atom)")
        ax.axhline(0.0, color="0.8", lw=0.6, zorder=0)
        ax.set_xlim(-0.04, 1.04)
        ax.autoscale_view(scalex=False)
        low, high = ax.get_ylim()
        ax.set_ylim(low - 0.08 * (high - low), high)  # room for the labels under the hull
    else:
        ax.set_aspect("equal")
        ax.axis("off")
        ax.autoscale_view()

    _legend(ax, data, bool(faint), show_unstable, coincident)
    n_stable = sum(p.is_stable for p in data.candidates)
    ax.set_title(
        title or f"{data.chemsys}: {len(data.candidates)} candidates ({n_stable} stable) on the {data.hull_name}",
        fontsize=11, pad=14,
    )
    _labels(figure, ax, data, stable_xy, cand_xy)
    return figure


def _count_labels(ax: Axes, xy: np.ndarray) -> bool:
    """``×n`` next to each point where n > 1 candidates of one composition coincide; whether there was one."""
    positions, counts = np.unique(np.round(xy, 6), axis=0, return_counts=True)
    for (x, y), count in zip(positions, counts, strict=True):
        if count > 1:
            ax.annotate(f"×{count}", (x, y), xytext=(5, -10), textcoords="offset points", fontsize=7, color="0.2",
                        zorder=7, gid="candidate-count", annotation_clip=False)
    return bool((counts > 1).any())


def _draw_outline(ax: Axes, data: HullData) -> None:
    """Triangle or tetrahedron edges and the element names at the corners."""
    n = len(data.elements)
    corners = _TRIANGLE if n == 3 else _TETRAHEDRON
    for i, j in combinations(range(n), 2):
        # the tetrahedron's back edge (B-D is drawn; A-C passes behind) dotted for depth
        style = ":" if n == 4 and (i, j) == (0, 2) else "-"
        ax.plot(*zip(corners[i], corners[j], strict=True), color="0.55", lw=0.8, ls=style, zorder=0)


def _legend(ax: Axes, data: HullData, has_faint: bool, show_unstable: float, coincident: bool = False) -> None:
    kind = "MP reference" if data.hull_kind == "mp" else "elemental reference"
    handles = [
        Line2D([], [], color="0.15", lw=1.1, label=data.hull_name),
        Line2D([], [], ls="", marker="o", ms=5, color="black", label=f"{kind} phase on the hull"),
    ]
    if data.campaign_hull_edges:
        handles.append(Line2D([], [], color="tab:red", lw=0.9, ls="--", label="campaign hull (references + candidates)"))
    if has_faint:
        handles.append(Line2D([], [], ls="", marker="o", ms=3, color="0.6", alpha=0.6,
                              label=f"{kind} phase above the hull (≤ {show_unstable:g} eV/atom)"))
    if data.candidates:
        label = "candidate (colour: E above hull)"
        if coincident:
            label += "; ×n: n at one composition, lowest shown"
        handles.append(Line2D([], [], ls="", marker="o", ms=6, mfc="tab:cyan", mec="0.15", label=label))
        if any(p.is_stable for p in data.candidates):
            handles.append(Line2D([], [], ls="", marker="*", ms=11, mfc="tab:cyan", mec="black", label="candidate stable on that hull"))
        if any(p.is_stable_campaign for p in data.candidates):
            handles.append(
                Line2D([], [], ls="", marker="o", ms=13, mfc="none", mec="tab:red", label="candidate stable on the campaign hull")
            )
    # binaries: the upper corners are empty (the hull hangs below zero); composition plots: below the shape
    if len(data.elements) == 2:
        ax.legend(handles=handles, loc="upper center", fontsize=7.5, framealpha=0.9, ncols=2)
    else:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, -0.01), fontsize=7.5, framealpha=0.9, ncols=2)


def _labels(figure: Figure, ax: Axes, data: HullData, stable_xy, cand_xy) -> None:
    """Formula labels of the stable phases, nudged apart so that none overlap each other or a marker."""
    n = len(data.elements)
    center = np.mean(_TRIANGLE if n == 3 else _TETRAHEDRON, axis=0) if n > 2 else None
    labels: list[Annotation] = []

    def offset(x: float, y: float) -> tuple[float, float]:
        if n == 2:
            return 0.0, -13.0  # below the vertex: the region under a lower hull is empty
        direction = np.array([x, y]) - center
        norm = np.linalg.norm(direction)
        return tuple(12.0 * direction / norm) if norm > 1e-9 else (0.0, -12.0)

    for p, (x, y) in zip(data.stable_references, stable_xy, strict=True):
        is_corner = max(p.fractions) == 1.0
        labels.append(
            ax.annotate(
                _label(p.formula), (x, y), xytext=offset(x, y), textcoords="offset points", ha="center", va="center",
                fontsize=11 if is_corner and n > 2 else 8.5, fontweight="bold" if is_corner and n > 2 else "normal",
                zorder=7, gid="reference-label", annotation_clip=False,
                arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.5, "shrinkA": 1, "shrinkB": 3},
            )
        )
    # a candidate of a labelled reference composition would repeat that label next to it
    labelled = {p.formula for p in data.stable_references}
    stable_candidates = [
        (p, xy) for p, xy in zip(data.candidates, cand_xy, strict=True)
        if (p.is_stable or p.is_stable_campaign) and p.formula not in labelled
    ]
    if len(stable_candidates) <= MAX_CANDIDATE_LABELS:
        for p, (x, y) in stable_candidates:
            labels.append(
                ax.annotate(
                    _label(p.formula), (x, y), xytext=offset(x, y), textcoords="offset points", ha="center", va="center",
                    fontsize=8, color="tab:red", style="italic", zorder=7, gid="candidate-label", annotation_clip=False,
                    arrowprops={"arrowstyle": "-", "color": "tab:red", "lw": 0.5, "shrinkA": 1, "shrinkB": 5},
                )
            )
    _spread(figure, ax, labels, [*stable_xy, *cand_xy])


def _overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Overlap widths and heights (pixels, <= 0 when apart) of every box of ``a`` with every box of ``b`` (x0, y0, x1, y1)."""
    dx = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    dy = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return dx, dy


def _pushes(a: np.ndarray, b: np.ndarray, same: bool) -> np.ndarray:
    """Sum over ``b`` of the moves that separate each box of ``a`` from it, along the axis of least overlap."""
    dx, dy = _overlaps(a, b)
    hit = (dx > 0) & (dy > 0)
    if same:
        np.fill_diagonal(hit, False)
    ca, cb = (a[:, :2] + a[:, 2:]) / 2, (b[:, :2] + b[:, 2:]) / 2
    diff = ca[:, None, :] - cb[None, :, :]
    # coincident centres: separate by index so that the pair does not stay stuck
    tie = np.sign(np.arange(len(a))[:, None] - np.arange(len(b))[None, :]) + 0.5 if same else np.ones((len(a), len(b)))
    sx = np.where(diff[..., 0] != 0, np.sign(diff[..., 0]), np.sign(tie))
    sy = np.where(diff[..., 1] != 0, np.sign(diff[..., 1]), np.sign(tie))
    along_x = hit & (dx < dy)
    along_y = hit & ~(dx < dy)
    return np.stack([(along_x * sx * (dx / 2 + 0.5)).sum(axis=1), (along_y * sy * (dy / 2 + 0.5)).sum(axis=1)], axis=1)


def _spread(figure: Figure, ax: Axes, labels: Sequence[Annotation], markers: Sequence[tuple[float, float]],
            iterations: int = 1500, pad: float = 2.0, marker_radius: float = 5.0, max_step: float = 4.0) -> None:
    """Push overlapping labels apart (and off the markers), a few pixels per step, in display space.

    Labels still overlapping also drift away from the centre of the markers, so that a crowded
    cluster unpacks outwards into empty space instead of jittering in place.
    """
    if not labels:
        return
    renderer = figure.canvas.get_renderer()
    to_points = 72.0 / figure.dpi
    marker_px = ax.transData.transform(np.asarray(markers, dtype=float))
    marker_boxes = np.hstack([marker_px - marker_radius, marker_px + marker_radius])
    middle = marker_px.mean(axis=0)
    # the boxes only translate with the offsets: measure the text once, move the numbers, set the offsets at the end
    boxes = np.array([_text_extent(a, renderer) for a in labels]) + [-pad, -pad, pad, pad]
    shift = np.zeros((len(labels), 2))
    try:
        for _ in range(iterations):
            if _spread_step(boxes, shift, marker_boxes, middle, max_step):
                return
        logger.info(f"hull plot: some labels still overlap after {iterations} steps")
    finally:
        for label, (sx, sy) in zip(labels, shift, strict=True):
            x, y = label.xyann
            label.xyann = (x + sx * to_points, y + sy * to_points)


def _spread_step(boxes: np.ndarray, shift: np.ndarray, marker_boxes: np.ndarray, middle: np.ndarray, max_step: float) -> bool:
    """One step of :func:`_spread`, moving ``boxes`` and adding to ``shift`` in place; True when nothing overlaps."""
    moves = _pushes(boxes, boxes, same=True) + _pushes(boxes, marker_boxes, same=False)
    stuck = np.abs(moves).sum(axis=1) > 0
    if not stuck.any():
        return True
    outward = (boxes[:, :2] + boxes[:, 2:]) / 2 - middle
    outward /= np.maximum(np.linalg.norm(outward, axis=1, keepdims=True), 1e-9)
    moves = np.clip(moves + stuck[:, None] * 1.5 * outward, -max_step, max_step)  # small steps: large ones oscillate
    boxes += np.hstack([moves, moves])
    shift += moves
    return False


def _text_extent(label: Annotation, renderer) -> tuple[float, float, float, float]:
    """The text's own box in pixels (an Annotation's window extent includes its leader line)."""
    label.update_positions(renderer)
    return Text.get_window_extent(label, renderer).extents


def plot_hull(
    chemsys: str,
    candidate_docs: Iterable[Mapping[str, Any]],
    reference_docs: Iterable[Mapping[str, Any]],
    path: str | Path,
    show_unstable: float = SHOW_UNSTABLE,
    color_max: float = COLOR_MAX,
) -> Path:
    """Draw the hull of ``chemsys`` with the candidates on it and save it (PNG, SVG or PDF by suffix).

    Args:
        chemsys: Chemical system, elements in any order; 2 to 4 elements.
        candidate_docs: Candidate documents as stored (see :func:`hull_data` for which are drawn).
        reference_docs: Reference-phase documents as stored by the hull step.
        path: Output file; its suffix picks the format.
        show_unstable: Draw unstable reference phases up to this far above the hull, eV/atom.
        color_max: Top of the candidates' colour scale, eV/atom.

    Returns:
        The path written.

    Raises:
        ValueError: an unknown suffix or a chemical system that cannot be drawn (one-line message).
    """
    path = Path(path)
    suffix = path.suffix.lstrip(".").lower()
    if suffix not in PLOT_FORMATS:
        raise ValueError(f"cannot write a hull plot to {path}: use one of {', '.join(PLOT_FORMATS)} (or html for the interactive page)")
    data = hull_data(chemsys, candidate_docs, reference_docs)
    figure = hull_figure(data, show_unstable=show_unstable, color_max=color_max)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        figure.savefig(path, format=suffix, bbox_inches="tight")
    finally:
        plt.close(figure)
    return path


# ----------------------------------------------------------------------------- plotly


def _hover(p: HullPoint, kind: str) -> str:
    e_hull = "n/a" if p.e_above_hull is None else f"{p.e_above_hull:.3f}"
    flags = ", stable" if p.is_stable else ""
    flags += ", stable on campaign hull" if p.is_stable_campaign else ""
    return f"<b>{p.formula}</b> ({kind}{flags})<br>{p.ident}<br>E_form {p.formation_energy:.3f} eV/atom<br>E above hull {e_hull} eV/atom"


def hull_plotly(data: HullData, show_unstable: float = SHOW_UNSTABLE, color_max: float = COLOR_MAX):
    """The interactive picture of ``data`` as a plotly Figure (hover shows ids and energies)."""
    import plotly.graph_objects as go

    n = len(data.elements)
    faint = _shown_unstable(data, show_unstable)

    def coords(points: Sequence[tuple[Sequence[float], float]]) -> dict[str, list]:
        """Trace coordinates: x/y for binaries, a/b/c for ternaries, x/y/z (tetrahedron) for quaternaries."""
        if n == 2:
            return {"x": [f[1] for f, _ in points], "y": [e for _, e in points]}
        if n == 3:
            return {"a": [f[2] for f, _ in points], "b": [f[0] for f, _ in points], "c": [f[1] for f, _ in points]}
        corners = np.array([[0, 0, 0], [1, 0, 0], [0.5, math.sqrt(3) / 2, 0], [0.5, math.sqrt(3) / 6, math.sqrt(2 / 3)]])
        xyz = np.array([f for f, _ in points], dtype=float) @ corners if points else np.empty((0, 3))
        return {"x": list(xyz[:, 0]), "y": list(xyz[:, 1]), "z": list(xyz[:, 2])}

    trace = {2: go.Scatter, 3: go.Scatterternary, 4: go.Scatter3d}[n]

    def lines(edges, **style) -> Any:
        # one trace, segments separated by gaps
        keys = coords([])
        for a, b in edges:
            seg = coords([(a[:-1], a[-1]), (b[:-1], b[-1])])
            for key in keys:
                keys[key] += [*seg[key], None]
        return trace(mode="lines", hoverinfo="skip", **keys, **style)

    def markers(points: Sequence[HullPoint], kind: str, **style) -> Any:
        return trace(**coords([(p.fractions, p.formation_energy) for p in points]),
                     hovertext=[_hover(p, kind) for p in points], hoverinfo="text", **style)

    traces = [lines(data.hull_edges, name=data.hull_name, line={"color": "black", "width": 1.5})]
    if n == 4:
        corners = [(tuple(float(i == j) for i in range(4)), 0.0) for j in range(4)]
        outline = [(corners[i][0] + (0.0,), corners[j][0] + (0.0,)) for i, j in combinations(range(4), 2)]
        traces.append(lines(outline, name="composition tetrahedron", line={"color": "grey", "width": 1}, showlegend=False))
    if data.campaign_hull_edges:
        traces.append(lines(data.campaign_hull_edges, name="campaign hull (references + candidates)",
                            line={"color": "red", "width": 1.2, "dash": "dash"}))
    if faint:
        traces.append(markers(faint, "reference, above hull", mode="markers",
                              name=f"reference above the hull (≤ {show_unstable:g} eV/atom)",
                              marker={"size": 4, "color": "grey", "opacity": 0.4}))
    traces.append(markers(data.stable_references, "reference on hull", mode="markers+text", name="reference phase on the hull",
                          text=[p.formula for p in data.stable_references], textposition="bottom center",
                          marker={"size": 7, "color": "black"}))
    if data.candidates:
        values = [None if p.e_above_hull is None else p.e_above_hull for p in data.candidates]
        traces.append(markers(
            data.candidates, "candidate", mode="markers", name="candidate (colour: E above hull)",
            marker={
                "size": [14 if p.is_stable else 8 for p in data.candidates],
                "symbol": ["diamond" if p.is_stable else "circle" for p in data.candidates],
                "color": values, "colorscale": "Viridis", "cmin": 0.0, "cmax": color_max,
                "line": {"width": 0.5, "color": "#333"},
                "colorbar": {"title": {"text": "E above hull<br>(eV/atom)"}},
            },
        ))
        # rings as their own trace: 3D markers take no per-point outline widths
        if ringed := [p for p in data.candidates if p.is_stable_campaign]:
            traces.append(markers(ringed, "candidate", mode="markers", name="candidate stable on the campaign hull",
                                  marker={"size": 18, "symbol": "circle-open", "color": "red"}))
    figure = go.Figure(traces)
    title = f"{data.chemsys}: {len(data.candidates)} candidates on the {data.hull_name}"
    if n == 2:
        figure.update_layout(xaxis_title=f"fraction of {data.elements[1]} in {data.elements[0]}-{data.elements[1]}",
                             yaxis_title="formation energy (eV/atom)")
    elif n == 3:
        figure.update_layout(ternary={"aaxis": {"title": {"text": data.elements[2]}},
                                      "baxis": {"title": {"text": data.elements[0]}},
                                      "caxis": {"title": {"text": data.elements[1]}}})
    else:
        hidden = {"visible": False}
        corner_xyz = coords(corners)
        annotations = [
            {"x": x, "y": y, "z": z, "text": f"<b>{el}</b>", "showarrow": False, "yshift": 14}
            for el, x, y, z in zip(data.elements, corner_xyz["x"], corner_xyz["y"], corner_xyz["z"], strict=True)
        ]
        figure.update_layout(
            scene={"xaxis": hidden, "yaxis": hidden, "zaxis": hidden, "aspectmode": "data", "annotations": annotations}
        )
    figure.update_layout(title=title, legend={"orientation": "h", "y": -0.12}, template="plotly_white")
    return figure


def plot_hull_html(
    chemsys: str,
    candidate_docs: Iterable[Mapping[str, Any]],
    reference_docs: Iterable[Mapping[str, Any]],
    path: str | Path,
    show_unstable: float = SHOW_UNSTABLE,
    color_max: float = COLOR_MAX,
) -> Path:
    """Write the interactive hull picture of ``chemsys`` as one self-contained HTML file (plotly.js embedded).

    Same arguments as :func:`plot_hull`; the suffix of ``path`` is not checked.
    """
    path = Path(path)
    figure = hull_plotly(hull_data(chemsys, candidate_docs, reference_docs), show_unstable, color_max)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.write_html(path, include_plotlyjs=True, full_html=True)
    return path
