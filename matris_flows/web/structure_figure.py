"""A crystal structure in 3D as a plotly figure: atoms, the unit cell and bonds, turned and zoomed in the browser.

Crystal Toolkit's structure component is the field's own viewer, but the current release
(2026.7) does not start with this pymatgen (``StructureGraph.with_empty_graph`` is gone), so the
picture is drawn with plotly, which ships in Dash's wheel: Jmol colours, atoms sized by their
covalent radius, bonds between atoms closer than the sum of their covalent radii (+15 %).
"""

from __future__ import annotations

from functools import cache
from itertools import product
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from pymatgen.core import Structure

BOND_TOLERANCE = 1.15
"""A bond joins two atoms closer than this times the sum of their covalent radii."""

MAX_BONDED_SITES = 400
"""Cells with more sites are drawn without bonds (the neighbour search and the picture would be slow)."""


@cache
def _jmol_colors() -> dict[str, tuple[int, int, int]]:
    import pymatgen.vis
    import yaml

    with open(Path(pymatgen.vis.__file__).parent / "ElementColorSchemes.yaml") as handle:
        return {el: tuple(rgb) for el, rgb in yaml.safe_load(handle)["Jmol"].items()}


def _color(symbol: str) -> str:
    red, green, blue = _jmol_colors().get(symbol, (200, 200, 200))
    return f"rgb({red},{green},{blue})"


def _covalent_radius(symbol: str) -> float:
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius

    return CovalentRadius.radius.get(symbol, 1.5)


ANIONS = frozenset({"N", "P", "As", "O", "S", "Se", "Te", "F", "Cl", "Br", "I"})
"""Where any of these is present, bonds join an anion to a cation only (no metal-metal or anion-anion sticks)."""


def structure_figure(structure: Structure, height: int = 520) -> go.Figure:
    """The picture of ``structure``: one trace per element (the legend names them), the cell edges and the bonds.

    Atoms on the cell's faces, edges and corners are repeated on the opposite side, as crystal
    viewers do; a bond that leaves the cell ends at its neighbour, drawn smaller and faded.
    """
    figure = go.Figure()
    _add_cell(figure, structure)
    inside = _cell_atoms(structure)
    outside: list[tuple[str, np.ndarray]] = []
    if len(structure) <= MAX_BONDED_SITES:
        outside = _add_bonds(figure, structure, inside)
    order = sorted({site.specie.symbol for site in structure}, key=lambda s: structure.composition.get(s, 0))
    for symbol in order:
        atoms = [(frac, xyz) for sym, frac, xyz in inside if sym == symbol]
        xyz = np.array([c for _, c in atoms])
        figure.add_trace(go.Scatter3d(
            x=xyz[:, 0].tolist(), y=xyz[:, 1].tolist(), z=xyz[:, 2].tolist(), mode="markers", name=symbol, legendgroup=symbol,
            marker={"size": 8 + 8 * _covalent_radius(symbol), "color": _color(symbol), "opacity": 1.0,
                    "line": {"color": "#333", "width": 1}},
            hovertext=[f"{symbol} ({f[0]:.3f}, {f[1]:.3f}, {f[2]:.3f})" for f, _ in atoms], hoverinfo="text",
        ))
        if beyond := [c for sym, c in outside if sym == symbol]:
            xyz = np.array(beyond)
            figure.add_trace(go.Scatter3d(
                x=xyz[:, 0].tolist(), y=xyz[:, 1].tolist(), z=xyz[:, 2].tolist(), mode="markers",
                name=f"{symbol} (next cell)", legendgroup=symbol,
                showlegend=False, hoverinfo="skip",
                marker={"size": 4 + 5 * _covalent_radius(symbol), "color": _color(symbol), "opacity": 0.45},
            ))
    hidden = {"visible": False, "showbackground": False}
    figure.update_layout(
        height=height, margin={"l": 0, "r": 0, "t": 0, "b": 0}, showlegend=True,
        legend={"title": {"text": "element"}, "x": 0, "y": 1},
        scene={"xaxis": hidden, "yaxis": hidden, "zaxis": hidden, "aspectmode": "data",
               "camera": {"eye": {"x": 1.4, "y": 1.1, "z": 0.9}}},
        uirevision="structure",  # keep the user's rotation when the page updates
        paper_bgcolor="white",
    )
    return figure


def _segments(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, list]:
    """Line segments as one trace's coordinates, separated by gaps."""
    coords: dict[str, list] = {"x": [], "y": [], "z": []}
    for start, end in pairs:
        for axis, key in enumerate("xyz"):
            coords[key] += [float(start[axis]), float(end[axis]), None]
    return coords


def _add_cell(figure: go.Figure, structure: Structure) -> None:
    matrix = structure.lattice.matrix
    corners = {corner: np.array(corner) @ matrix for corner in product((0, 1), repeat=3)}
    edges = [(corners[a], corners[b]) for a in corners for b in corners
             if a < b and sum(x != y for x, y in zip(a, b, strict=True)) == 1]
    figure.add_trace(go.Scatter3d(mode="lines", name="unit cell", hoverinfo="skip", line={"color": "black", "width": 3},
                                  **_segments(edges)))


EDGE = 0.02
"""Fractional distance from a face within which an atom is repeated on the opposite face."""


def _cell_atoms(structure: Structure) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(element, fractional, Cartesian coordinates) of the atoms drawn in the cell, face/edge/corner repeats included."""
    atoms = []
    for site in structure:
        frac = np.mod(site.frac_coords, 1.0)
        frac[frac > 1 - EDGE] -= 1.0  # 0.999 is drawn at 0 (and repeated at 1)
        shifts = [(0.0, 1.0) if abs(f) < EDGE else (0.0,) for f in frac]
        for shift in product(*shifts):
            moved = frac + np.array(shift)
            atoms.append((site.specie.symbol, moved, structure.lattice.get_cartesian_coords(moved)))
    return atoms


def _add_bonds(figure: go.Figure, structure: Structure, inside: list[tuple[str, np.ndarray, np.ndarray]]) -> list:
    """Draw the bonds of the drawn atoms; return the neighbours outside the cell that bonds end at."""
    symbols = {site.specie.symbol for site in structure}
    anions = symbols & ANIONS
    radii = {s: _covalent_radius(s) for s in symbols}
    cutoff = BOND_TOLERANCE * 2 * max(radii.values())
    drawn = {tuple(np.round(frac, 3)) for _, frac, _ in inside}
    pairs, outside = [], {}
    for symbol, _, xyz in inside:
        for neighbour in structure.get_sites_in_sphere(xyz, cutoff):
            other = neighbour.specie.symbol
            if anions and (symbol in anions) == (other in anions):
                continue  # anion-anion or cation-cation
            distance = float(np.linalg.norm(neighbour.coords - xyz))
            if distance < 1e-3 or distance > BOND_TOLERANCE * (radii[symbol] + radii[other]):
                continue
            pairs.append((xyz, neighbour.coords))
            key = tuple(np.round(neighbour.frac_coords, 3))
            if key not in drawn:
                outside[key] = (other, neighbour.coords)
    if pairs:
        figure.add_trace(go.Scatter3d(mode="lines", name="bonds", hoverinfo="skip",
                                      line={"color": "#888", "width": 5}, **_segments(pairs)))
    return list(outside.values())
