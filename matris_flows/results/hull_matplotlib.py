"""The static hull picture (PNG, SVG or PDF) of a :class:`~matris_flows.results.hull_data.HullData`, drawn with matplotlib.

Binary systems are drawn as formation energy against composition, ternary ones as a
composition triangle and quaternary ones as a composition tetrahedron seen obliquely
(energies as colour):

* the hull the candidates were judged against solid, the campaign hull dashed where it differs;
* stable reference phases as black dots with their formulas, unstable ones as small faint dots;
* candidates coloured by their energy above that hull (a colour bar, clipped to 0 ..
  ``color_max``), stars for the ones stable on it, red rings for the ones stable on the
  campaign hull, formulas for the stable ones of new compositions.

Formula labels start just off their point (below it in binaries, away from the shape's
centre in composition plots); adjustText then moves them apart and off the markers, the
``×n`` counts and the legend, keeping them inside the axes, and a thin line leads from each
label to its point. Figures are made with matplotlib's file backends and never shown.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from adjustText import adjust_text
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.transforms import Bbox
from pymatgen.util.string import latexify

from matris_flows.results.hull_data import COLOR_MAX, SHOW_UNSTABLE, Edge, HullData, HullPoint, hull_data

PLOT_FORMATS = ("png", "svg", "pdf")
"""File types (by suffix) that :func:`plot_hull` writes."""

MAX_CANDIDATE_LABELS = 20
"""Stable candidates get a formula label when there are at most this many (more would bury the picture)."""

CMAP = "viridis"

LABEL_STEPS = 500
"""adjustText's iterations at most: a fixed number, not its default time limit, so the picture does not depend on the machine."""

LABEL_GAP = 5.0
"""Points between a formula label's box and its point where the label starts (adjustText moves it from there)."""

# composition-space corners: a triangle, and a tetrahedron seen from slightly above and
# to the side (orthographic projections are linear, so a point is the fraction-weighted
# sum of its projected corners)
_TRIANGLE = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])
_TETRAHEDRON = np.array([[0.0, 0.0], [0.72, -0.32], [1.12, 0.18], [0.5, 0.92]])

# the scatters whose markers labels keep off (the faint unstable references may be covered)
_MARKER_GIDS = ("stable-references", "candidates", "stable-candidates", "stable-campaign-candidates")


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
        candidate_docs: Candidate documents as stored (see :func:`~matris_flows.results.hull_data.hull_data`
            for which are drawn).
        reference_docs: Reference-phase documents as stored by the hull step.
        path: Output file; its suffix picks the format.
        show_unstable: Draw unstable reference phases up to this far above the hull, eV/atom.
        color_max: Top of the candidates' colour scale, eV/atom.

    Returns:
        The path written.

    Raises:
        ValueError: an unknown suffix or a chemical system that cannot be drawn (one-line message).
    """
    _plot_format(path)  # a bad suffix is reported before any work
    return save_hull_figure(hull_data(chemsys, candidate_docs, reference_docs), path, show_unstable, color_max)


def save_hull_figure(data: HullData, path: str | Path, show_unstable: float = SHOW_UNSTABLE, color_max: float = COLOR_MAX) -> Path:
    """Draw ``data`` (see :func:`hull_figure`) and save it to ``path`` (PNG, SVG or PDF by suffix); return the path.

    Raises:
        ValueError: an unknown suffix (one-line message).
    """
    path = Path(path)
    suffix = _plot_format(path)
    figure = hull_figure(data, show_unstable=show_unstable, color_max=color_max)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        figure.savefig(path, format=suffix, bbox_inches="tight")
    finally:
        plt.close(figure)
    return path


def _plot_format(path: str | Path) -> str:
    """The file type that ``path``'s suffix asks for; ValueError unless it is one of :data:`PLOT_FORMATS`."""
    suffix = Path(path).suffix.lstrip(".").lower()
    if suffix not in PLOT_FORMATS:
        raise ValueError(f"cannot write a hull plot to {path}: use one of {', '.join(PLOT_FORMATS)} (or html for the interactive page)")
    return suffix


def hull_figure(
    data: HullData, show_unstable: float = SHOW_UNSTABLE, color_max: float = COLOR_MAX, title: str | None = None
) -> Figure:
    """The static picture of ``data`` as a matplotlib Figure (not shown; the caller saves and closes it).

    Artists carry gids the tests (and anyone post-processing the figure) can find:
    ``reference-label``/``candidate-label`` texts (with ``label-line`` leader lines),
    ``candidates``, ``stable-candidates``, ``stable-references``, ``unstable-references``
    scatters, ``candidate-count`` texts, ``hull``/``campaign-hull`` line collections.
    """
    n = len(data.elements)
    figure, ax = plt.subplots(figsize=(8.0, 6.0) if n == 2 else (8.0, 7.0), dpi=150)
    if n > 2:
        _draw_outline(ax, n)
    _draw_hulls(ax, data)
    faint = data.shown_unstable(show_unstable)
    _draw_references(ax, data, faint)
    coincident = _draw_candidates(figure, ax, data, color_max)
    _set_axes(ax, data)
    _legend(ax, data, bool(faint), show_unstable, coincident)
    n_stable = sum(p.is_stable for p in data.candidates)
    ax.set_title(
        title or f"{data.chemsys}: {len(data.candidates)} candidates ({n_stable} stable) on the {data.hull_name}",
        fontsize=11, pad=14,
    )
    _label_phases(figure, ax, data)
    return figure


# ----------------------------------------------------------------------------- geometry


def _xy(data: HullData, fractions: Sequence[float], formation_energy: float) -> tuple[float, float]:
    """Plot coordinates: (fraction of the second element, E_form) for binaries, the projected composition otherwise."""
    n = len(data.elements)
    if n == 2:
        return float(fractions[1]), float(formation_energy)
    corners = _TRIANGLE if n == 3 else _TETRAHEDRON
    x, y = np.asarray(fractions, dtype=float) @ corners
    return float(x), float(y)


def _points_xy(data: HullData, points: Sequence[HullPoint]) -> np.ndarray:
    """Plot coordinates of ``points``, one row each."""
    return np.array([_xy(data, p.fractions, p.formation_energy) for p in points], dtype=float).reshape(-1, 2)


def _segments(data: HullData, edges: Sequence[Edge]) -> list[list[tuple[float, float]]]:
    return [[_xy(data, a[:-1], a[-1]), _xy(data, b[:-1], b[-1])] for a, b in edges]


def _label(formula: str) -> str:
    # upright subscripted formula (mathtext would set the letters in italics)
    return f"$\\mathrm{{{latexify(formula).replace('$', '')}}}$" if any(c.isdigit() for c in formula) else formula


# ----------------------------------------------------------------------------- drawing


def _draw_outline(ax: Axes, n: int) -> None:
    """Triangle or tetrahedron edges (the element names are the corner phases' labels)."""
    corners = _TRIANGLE if n == 3 else _TETRAHEDRON
    for i, j in combinations(range(n), 2):
        # the tetrahedron's back edge (B-D is drawn; A-C passes behind) dotted for depth
        style = ":" if n == 4 and (i, j) == (0, 2) else "-"
        ax.plot(*zip(corners[i], corners[j], strict=True), color="0.55", lw=0.8, ls=style, zorder=0)


def _draw_hulls(ax: Axes, data: HullData) -> None:
    """The tie lines of the hull the candidates are coloured against, and the campaign hull's dashed where it differs."""
    # a quaternary hull has many tie lines: thin and grey so that the points stay readable
    style = {"colors": "0.15", "linewidths": 1.1} if len(data.elements) < 4 else {"colors": "0.45", "linewidths": 0.5, "alpha": 0.6}
    ax.add_collection(LineCollection(_segments(data, data.hull_edges), zorder=2, gid="hull", **style))
    if data.campaign_hull_edges:
        ax.add_collection(
            LineCollection(
                _segments(data, data.campaign_hull_edges), colors="tab:red", linewidths=0.9, linestyles="--",
                zorder=2, gid="campaign-hull",
            )
        )


def _draw_references(ax: Axes, data: HullData, faint: Sequence[HullPoint]) -> None:
    """Stable reference phases as black dots, the ``faint`` unstable ones as small grey ones."""
    if faint:
        xy = _points_xy(data, faint)
        ax.scatter(xy[:, 0], xy[:, 1], s=9, c="0.6", alpha=0.45, linewidths=0, zorder=1, gid="unstable-references")
    xy = _points_xy(data, data.stable_references)
    ax.scatter(xy[:, 0], xy[:, 1], s=30, c="black", zorder=4, gid="stable-references")


_COLOUR_WORDS = {"e_above_hull": "E above hull", "campaign": "E above campaign hull", "consensus": "consensus E above hull",
                 "spread": "models' spread"}


def _draw_candidates(figure: Figure, ax: Axes, data: HullData, color_max: float) -> bool:
    """Candidates coloured by energy above the hull, stable ones as stars, ringed when stable on the campaign hull.

    Returns whether candidates of one composition coincide (composition plots mark them ``×n``).
    """
    if not data.candidates:
        return False
    values = np.array([np.nan if v is None else v for v in data.color_values()])
    xy = _points_xy(data, data.candidates)
    colors = {"cmap": plt.get_cmap(CMAP).with_extremes(bad="0.75"), "norm": Normalize(vmin=0.0, vmax=color_max, clip=False)}
    stable = np.array([p.is_stable for p in data.candidates])
    # Candidates of one composition share a point when energy is not an axis: draw the highest
    # first so the one that matters (lowest e_above_hull) is the one seen.
    unstable = np.flatnonzero(~stable)
    energies = np.array([np.nan if p.e_above_hull is None else p.e_above_hull for p in data.candidates])
    unstable = unstable[np.argsort(-np.nan_to_num(energies[unstable], nan=np.inf), kind="stable")]
    mappable = ax.scatter(xy[unstable, 0], xy[unstable, 1], c=values[unstable], s=42, edgecolors="0.15", linewidths=0.5,
                          zorder=5, gid="candidates", **colors)
    if stable.any():
        ax.scatter(xy[stable, 0], xy[stable, 1], c=values[stable], marker="*", s=190, edgecolors="black", linewidths=0.7,
                   zorder=6, gid="stable-candidates", **colors)
    ringed = np.array([p.is_stable_campaign for p in data.candidates])
    if ringed.any():
        ax.scatter(xy[ringed, 0], xy[ringed, 1], s=330, facecolors="none", edgecolors="tab:red", linewidths=1.2, zorder=6,
                   gid="stable-campaign-candidates")
    _colorbar(figure, ax, mappable, values, color_max, data.color_label)
    return len(data.elements) > 2 and _count_labels(ax, xy)


def _colorbar(figure: Figure, ax: Axes, mappable, values: np.ndarray, color_max: float, label: str) -> None:
    """The candidates' colour scale, with pointed ends where values lie below 0 or above ``color_max``."""
    finite = values[np.isfinite(values)]
    low, high = bool((finite < 0).any()), bool((finite > color_max).any())
    extend = "both" if low and high else "min" if low else "max" if high else "neither"
    colorbar = figure.colorbar(mappable, ax=ax, extend=extend, shrink=0.8, pad=0.02)
    colorbar.set_label(label)


def _count_labels(ax: Axes, xy: np.ndarray) -> bool:
    """``×n`` next to each point where n > 1 candidates of one composition coincide; whether there was one."""
    positions, counts = np.unique(np.round(xy, 6), axis=0, return_counts=True)
    for (x, y), count in zip(positions, counts, strict=True):
        if count > 1:
            ax.annotate(f"×{count}", (x, y), xytext=(5, -10), textcoords="offset points", fontsize=7, color="0.2",
                        zorder=7, gid="candidate-count", annotation_clip=False)
    return bool((counts > 1).any())


def _set_axes(ax: Axes, data: HullData) -> None:
    """Axis titles and limits for binaries (room under the hull for the labels); composition plots have no axes."""
    if len(data.elements) == 2:
        ax.set_xlabel(f"x in {data.elements[0]}$_{{1-x}}${data.elements[1]}$_x$")
        ax.set_ylabel("formation energy (eV/atom)")
        ax.axhline(0.0, color="0.8", lw=0.6, zorder=0)
        ax.set_xlim(-0.04, 1.04)
        ax.autoscale_view(scalex=False)
        low, high = ax.get_ylim()
        ax.set_ylim(low - 0.08 * (high - low), high)
    else:
        ax.set_aspect("equal")
        ax.axis("off")
        ax.margins(0.1)  # labels stay inside the axes: room for the corners' labels outside the shape
        ax.autoscale_view()


def _legend(ax: Axes, data: HullData, has_faint: bool, show_unstable: float, coincident: bool = False) -> None:
    """The legend: in the empty top of a binary, below a composition plot."""
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
        handles += _candidate_handles(data, coincident)
    # binaries: the upper corners are empty (the hull hangs below zero); composition plots: below the shape
    if len(data.elements) == 2:
        ax.legend(handles=handles, loc="upper center", fontsize=7.5, framealpha=0.9, ncols=2)
    else:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, -0.01), fontsize=7.5, framealpha=0.9, ncols=2)


def _candidate_handles(data: HullData, coincident: bool) -> list[Line2D]:
    label = f"candidate (colour: {_COLOUR_WORDS.get(data.color_by, 'E above hull')})"
    if coincident:
        label += "; ×n: n at one composition, lowest shown"
    handles = [Line2D([], [], ls="", marker="o", ms=6, mfc="tab:cyan", mec="0.15", label=label)]
    if any(p.is_stable for p in data.candidates):
        handles.append(Line2D([], [], ls="", marker="*", ms=11, mfc="tab:cyan", mec="black", label="candidate stable on that hull"))
    if any(p.is_stable_campaign for p in data.candidates):
        handles.append(
            Line2D([], [], ls="", marker="o", ms=13, mfc="none", mec="tab:red", label="candidate stable on the campaign hull")
        )
    return handles


# ----------------------------------------------------------------------------- labels


def _label_phases(figure: Figure, ax: Axes, data: HullData) -> None:
    """Formula labels of the stable phases, placed by adjustText clear of each other and of what :func:`_obstacles` lists."""
    labelled = _labelled(data)
    targets = _points_xy(data, [p for p, _ in labelled])
    # final limits and aspect first: labels start a fixed distance off their points on the page
    figure.draw_without_rendering()
    texts = [_start_label(ax, data, p, gid, xy) for (p, gid), xy in zip(labelled, targets, strict=True)]
    # no pull back to the points: the labels start beside them, and pulling them into a crowd only to push
    # them out again leaves them on markers when the steps run out
    adjust_text(
        texts, target_x=targets[:, 0], target_y=targets[:, 1], objects=_obstacles(ax), avoid_self=False,
        force_pull=0.0, ensure_inside_axes=True, iter_lim=LABEL_STEPS, ax=ax,
    )
    _leader_lines(ax, texts, targets)


def _labelled(data: HullData) -> list[tuple[HullPoint, str]]:
    """The points that get a formula, with their label's gid: every stable reference phase, and the stable
    candidates of new compositions while there are at most :data:`MAX_CANDIDATE_LABELS`."""
    labelled = [(p, "reference-label") for p in data.stable_references]
    # a candidate of a labelled reference composition would repeat that label next to it
    known = {p.formula for p in data.stable_references}
    new = [p for p in data.candidates if (p.is_stable or p.is_stable_campaign) and p.formula not in known]
    if len(new) <= MAX_CANDIDATE_LABELS:
        labelled += [(p, "candidate-label") for p in new]
    return labelled


def _start_label(ax: Axes, data: HullData, point: HullPoint, gid: str, xy: np.ndarray) -> Text:
    """The label of ``point`` at ``xy``, its box :data:`LABEL_GAP` points clear of the point: below it in binaries
    (the region under a lower hull is empty), away from the shape's centre in composition plots (outside the
    shape for the phases on its edges)."""
    n = len(data.elements)
    if gid == "candidate-label":
        style = {"fontsize": 8, "color": "tab:red", "style": "italic"}
    else:
        is_corner = max(point.fractions) == 1.0 and n > 2
        style = {"fontsize": 11 if is_corner else 8.5, "fontweight": "bold" if is_corner else "normal"}
    text = ax.text(*xy, _label(point.formula), ha="center", va="center", zorder=7, gid=gid, **style)
    box = text.get_window_extent(ax.figure.canvas.get_renderer())
    direction = np.array([0.0, -1.0])
    if n > 2:
        away = xy - np.mean(_TRIANGLE if n == 3 else _TETRAHEDRON, axis=0)  # equal aspect: as on the page
        norm = np.linalg.norm(away)
        direction = away / norm if norm > 1e-9 else direction
    # centre to edge of the box along the direction: a wide formula beside its point needs more than a short one
    with np.errstate(divide="ignore"):
        reach = np.min(np.array([box.width, box.height]) / 2 / np.abs(direction))
    centre = ax.transData.transform(xy) + direction * (reach + LABEL_GAP * ax.figure.dpi / 72.0)
    text.set_position(ax.transData.inverted().transform(centre))
    return text


def _obstacles(ax: Axes) -> list[Bbox]:
    """What labels keep off, as boxes in data coordinates: the markers (but the faint ones), the ``×n`` counts, the legend."""
    to_data = ax.transData.inverted()
    renderer = ax.figure.canvas.get_renderer()
    counts = [t for t in ax.texts if t.get_gid() == "candidate-count"]
    boxes = [artist.get_window_extent(renderer).transformed(to_data) for artist in [*counts, ax.get_legend()]]
    for scatter in ax.collections:
        if scatter.get_gid() not in _MARKER_GIDS or not len(scatter.get_offsets()):
            continue
        centres = ax.transData.transform(scatter.get_offsets())
        # a marker's size is its area in points²; a star reaches about as far as a circle of that area
        radii = np.broadcast_to(np.sqrt(scatter.get_sizes()) / 2 * ax.figure.dpi / 72.0, len(centres))
        boxes += [Bbox(to_data.transform([c - r, c + r])) for c, r in zip(centres, radii, strict=True)]
    return boxes


def _leader_lines(ax: Axes, texts: Sequence[Text], targets: np.ndarray) -> None:
    """A thin line from each label's edge to its point (red for candidates), stopping short of the marker."""
    for text, (x, y) in zip(texts, targets, strict=True):
        candidate = text.get_gid() == "candidate-label"
        ax.annotate(
            "", (x, y), xytext=text.get_position(), zorder=6.5, gid="label-line", annotation_clip=False,
            arrowprops={"arrowstyle": "-", "color": "tab:red" if candidate else "0.5", "lw": 0.5, "shrinkA": 1,
                        "shrinkB": 5 if candidate else 3, "patchA": text},
        )
