"""The interactive hull picture of a :class:`~matris_flows.results.hull_data.HullData`: one self-contained plotly page.

It shows what the static picture shows (:mod:`matris_flows.results.hull_matplotlib`),
with hover texts that name each phase's id and energies: binary systems as formation
energy against composition, ternary ones on plotly's ternary axes, quaternary ones in
a composition tetrahedron that can be turned. Labels are plotly's own (each formula
under its point, no spreading: zooming separates them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from matris_flows.results.hull_data import COLOR_MAX, SHOW_UNSTABLE, Edge, HullData, HullPoint

# trace type per number of elements
_TRACE = {2: go.Scatter, 3: go.Scatterternary, 4: go.Scatter3d}

# the regular composition tetrahedron's corners in 3D
_TETRAHEDRON = np.array([[0, 0, 0], [1, 0, 0], [0.5, math.sqrt(3) / 2, 0], [0.5, math.sqrt(3) / 6, math.sqrt(2 / 3)]])

Position = tuple[Sequence[float], float]
"""Where a phase is: its atom fractions in the order of the elements and its formation energy per atom."""


def write_hull_html(data: HullData, path: str | Path, show_unstable: float = SHOW_UNSTABLE, color_max: float = COLOR_MAX) -> Path:
    """Write the interactive picture of ``data`` as one self-contained HTML file (plotly.js embedded); return its path.

    ``show_unstable`` and ``color_max`` as in :func:`~matris_flows.results.hull_matplotlib.plot_hull`; the
    suffix of ``path`` is not checked.
    """
    path = Path(path)
    figure = hull_plotly(data, show_unstable, color_max)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.write_html(path, include_plotlyjs=True, full_html=True)
    return path


def hull_plotly(data: HullData, show_unstable: float = SHOW_UNSTABLE, color_max: float = COLOR_MAX) -> go.Figure:
    """The interactive picture of ``data`` as a plotly Figure (hover shows ids and energies)."""
    figure = go.Figure([
        *_line_traces(data), *_reference_traces(data, show_unstable), *_candidate_traces(data, color_max)
    ])
    _layout(figure, data)
    return figure


def _coords(n: int, positions: Sequence[Position]) -> dict[str, list]:
    """Trace coordinates: x/y for binaries, a/b/c for ternaries, x/y/z (tetrahedron) for quaternaries."""
    if n == 2:
        return {"x": [f[1] for f, _ in positions], "y": [e for _, e in positions]}
    if n == 3:
        return {"a": [f[2] for f, _ in positions], "b": [f[0] for f, _ in positions], "c": [f[1] for f, _ in positions]}
    xyz = np.array([f for f, _ in positions], dtype=float).reshape(-1, 4) @ _TETRAHEDRON
    return {"x": list(xyz[:, 0]), "y": list(xyz[:, 1]), "z": list(xyz[:, 2])}


def _corners(n: int) -> list[Position]:
    """The pure elements, at zero formation energy."""
    return [(tuple(float(i == j) for i in range(n)), 0.0) for j in range(n)]


def _lines(n: int, edges: Sequence[Edge], **style) -> go.Scatter | go.Scatterternary | go.Scatter3d:
    """The edges as one trace (a trace per edge would fill the legend), segments separated by gaps."""
    keys = _coords(n, [])
    for a, b in edges:
        segment = _coords(n, [(a[:-1], a[-1]), (b[:-1], b[-1])])
        for key in keys:
            keys[key] += [*segment[key], None]
    return _TRACE[n](mode="lines", hoverinfo="skip", **keys, **style)


def _markers(n: int, points: Sequence[HullPoint], kind: str, **style) -> go.Scatter | go.Scatterternary | go.Scatter3d:
    return _TRACE[n](**_coords(n, [(p.fractions, p.formation_energy) for p in points]),
                     hovertext=[_hover(p, kind) for p in points], hoverinfo="text", **style)


def _reference_markers(
    n: int, points: Sequence[HullPoint], kind: str, under: frozenset[tuple[float, ...]], labelled: bool = False, **style
) -> list[go.Scatter | go.Scatterternary | go.Scatter3d]:
    """Reference markers (with their formulas when ``labelled``); on a ternary diagram those at a candidate's
    composition (``under``) take no hover.

    Plotly hovers (and clicks) the nearest marker and, at one spot, the smaller one: a reference
    phase with a candidate's composition would otherwise hide the candidate from the mouse. Those
    are drawn by a second trace of the same legend entry that skips hovering.
    """
    quiet = [p for p in points if n == 3 and _spot(p) in under]
    shown = [p for p in points if p not in quiet]
    style = {**style, "legendgroup": style["name"], "mode": "markers+text" if labelled else "markers"}
    if labelled:
        style["textposition"] = "bottom center"
    traces = [_markers(n, shown, kind, **style, **({"text": [p.formula for p in shown]} if labelled else {}))]
    if quiet:
        traces.append(_TRACE[n](**_coords(n, [(p.fractions, p.formation_energy) for p in quiet]), hoverinfo="skip",
                                showlegend=False, **style, **({"text": [p.formula for p in quiet]} if labelled else {})))
    return traces


def _spot(p: HullPoint) -> tuple[float, ...]:
    """Where a point is drawn on a ternary diagram (composition only)."""
    return tuple(round(f, 4) for f in p.fractions)


def _hover(p: HullPoint, kind: str) -> str:
    e_hull = "n/a" if p.e_above_hull is None else f"{p.e_above_hull:.3f}"
    flags = ", stable" if p.is_stable else ""
    flags += ", stable on campaign hull" if p.is_stable_campaign else ""
    source = f"<br>source: {p.source}" if p.source else ""
    return (f"<b>{p.formula}</b> ({kind}{flags})<br>{p.ident}<br>E_form {p.formation_energy:.3f} eV/atom"
            f"<br>E above hull {e_hull} eV/atom{source}")


def _line_traces(data: HullData) -> list:
    """The judged hull, the tetrahedron's outline (quaternaries) and the campaign hull where it differs (dashed)."""
    n = len(data.elements)
    traces = [_lines(n, data.hull_edges, name=data.hull_name, line={"color": "black", "width": 1.5})]
    if n == 4:
        corners = _corners(n)
        outline = [(corners[i][0] + (0.0,), corners[j][0] + (0.0,)) for i, j in combinations(range(n), 2)]
        traces.append(_lines(n, outline, name="composition tetrahedron", line={"color": "grey", "width": 1}, showlegend=False))
    if data.campaign_hull_edges:
        traces.append(_lines(n, data.campaign_hull_edges, name="campaign hull (references + candidates)",
                             line={"color": "red", "width": 1.2, "dash": "dash"}))
    return traces


def _reference_traces(data: HullData, show_unstable: float) -> list:
    """Unstable reference phases up to ``show_unstable`` (faint) and the stable ones with their formulas."""
    n = len(data.elements)
    traces = []
    under = frozenset(_spot(p) for p in data.candidates)
    if faint := data.shown_unstable(show_unstable):
        traces.extend(_reference_markers(n, faint, "reference, above hull", under,
                                         name=f"reference above the hull (≤ {show_unstable:g} eV/atom)",
                                         marker={"size": 4, "color": "grey", "opacity": 0.4}))
    traces.extend(_reference_markers(n, data.stable_references, "reference on hull", under, labelled=True,
                                     name="reference phase on the hull", marker={"size": 7, "color": "black"}))
    return traces


def _candidate_traces(data: HullData, color_max: float) -> list:
    """Candidates coloured by energy above the hull (diamonds when stable), ringed when stable on the campaign hull."""
    if not data.candidates:
        return []
    n = len(data.elements)
    traces = [_markers(
        n, data.candidates, "candidate", mode="markers", name=f"candidate (colour: {data.color_label.split(' (')[0]})",
        customdata=[p.ident for p in data.candidates],  # the candidate a click opens (serve's hull explorer)
        marker={
            "size": [14 if p.is_stable else 8 for p in data.candidates],
            "symbol": ["diamond" if p.is_stable else "circle" for p in data.candidates],
            "color": [float("nan") if v is None else v for v in data.color_values()],
            "colorscale": "Viridis", "cmin": 0.0, "cmax": color_max, "line": {"width": 0.5, "color": "#333"},
            "colorbar": {"title": {"text": data.color_label.replace(" (", "<br>(")}},
        },
    )]
    # rings as their own trace: 3D markers take no per-point outline widths
    if ringed := [p for p in data.candidates if p.is_stable_campaign]:
        traces.append(_markers(n, ringed, "candidate", mode="markers", name="candidate stable on the campaign hull",
                               marker={"size": 18, "symbol": "circle-open", "color": "red"}))
    return traces


def _layout(figure: go.Figure, data: HullData) -> None:
    """Axis titles (binaries), corner names (ternaries: the axes; quaternaries: annotations in the hidden 3D scene), title."""
    n = len(data.elements)
    if n == 2:
        figure.update_layout(xaxis_title=f"fraction of {data.elements[1]} in {data.elements[0]}-{data.elements[1]}",
                             yaxis_title="formation energy (eV/atom)")
    elif n == 3:
        figure.update_layout(ternary={"aaxis": {"title": {"text": data.elements[2]}},
                                      "baxis": {"title": {"text": data.elements[0]}},
                                      "caxis": {"title": {"text": data.elements[1]}}})
    else:
        hidden = {"visible": False}
        corner_xyz = _coords(n, _corners(n))
        annotations = [
            {"x": x, "y": y, "z": z, "text": f"<b>{el}</b>", "showarrow": False, "yshift": 14}
            for el, x, y, z in zip(data.elements, corner_xyz["x"], corner_xyz["y"], corner_xyz["z"], strict=True)
        ]
        figure.update_layout(
            scene={"xaxis": hidden, "yaxis": hidden, "zaxis": hidden, "aspectmode": "data", "annotations": annotations}
        )
    figure.update_layout(
        title=f"{data.chemsys}: {len(data.candidates)} candidates on the {data.hull_name}",
        legend={"orientation": "h", "y": -0.12}, template="plotly_white",
    )
