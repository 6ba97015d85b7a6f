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


def _color(symbol: str, pale: bool = False) -> str:
    """The element's Jmol colour; ``pale``: halfway to white (atoms of the next cell)."""
    rgb = _jmol_colors().get(symbol, (200, 200, 200))
    if pale:
        rgb = tuple(round((c + 255) / 2) for c in rgb)
    return f"rgb({rgb[0]},{rgb[1]},{rgb[2]})"


def _covalent_radius(symbol: str) -> float:
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius

    return CovalentRadius.radius.get(symbol, 1.5)


ANIONS = frozenset({"N", "P", "As", "O", "S", "Se", "Te", "F", "Cl", "Br", "I"})
"""Where any of these is present, bonds join an anion to a cation only (no metal-metal or anion-anion sticks)."""


def structure_figure(structure: Structure, height: int = 520) -> go.Figure:
    """The picture of ``structure``: its atoms, the cell edges and the bonds, in two WebGL traces.

    Atoms on the cell's faces, edges and corners are repeated on the opposite side, as crystal
    viewers do; a bond that leaves the cell ends at its neighbour, drawn smaller and paler. Two
    traces rather than one per element: each 3D trace costs its own WebGL set-up (about 0.1 s in
    a browser without a GPU), so the element legend is the page's (:func:`element_colors`).
    """
    inside = _cell_atoms(structure)
    pairs, outside = _bonds(structure, inside) if len(structure) <= MAX_BONDED_SITES else ([], [])
    edges = _cell_edges(structure)
    atoms = [(symbol, xyz, f"{symbol} ({frac[0]:.3f}, {frac[1]:.3f}, {frac[2]:.3f})", 1.0) for symbol, frac, xyz in inside]
    atoms += [(symbol, xyz, f"{symbol} (next cell)", 0.6) for symbol, xyz in outside]
    xyz = np.array([atom[1] for atom in atoms])
    lines = _segments(edges + pairs)
    # per vertex (two and a gap per segment): the cell's edges black, the bonds grey
    line_colors = ["black"] * (3 * len(edges)) + ["#8c8c8c"] * (3 * len(pairs))
    figure = go.Figure([
        go.Scatter3d(mode="lines", name="cell and bonds", hoverinfo="skip", showlegend=False,
                     line={"color": line_colors, "width": 4}, **lines),
        go.Scatter3d(
            x=xyz[:, 0].tolist(), y=xyz[:, 1].tolist(), z=xyz[:, 2].tolist(), mode="markers", name="atoms", showlegend=False,
            marker={"size": [scale * (10 + 10 * _covalent_radius(symbol)) for symbol, _, _, scale in atoms],
                    "color": [_color(symbol, pale=scale < 1) for symbol, _, _, scale in atoms], "opacity": 1.0,
                    "line": {"color": "#333", "width": 1}},
            hovertext=[text for _, _, text, _ in atoms], hoverinfo="text",
        ),
    ])
    hidden = {"visible": False, "showbackground": False}
    figure.update_layout(
        height=height, margin={"l": 0, "r": 0, "t": 0, "b": 0},
        scene={"xaxis": hidden, "yaxis": hidden, "zaxis": hidden, "aspectmode": "data",
               "camera": {"eye": {"x": 1.4, "y": 1.1, "z": 0.9}}},
        uirevision="structure",  # keep the user's rotation when the page updates
        paper_bgcolor="white",
    )
    return figure


def element_colors(structure: Structure) -> list[tuple[str, str]]:
    """(element, CSS colour) of the picture's atoms, for the page's legend."""
    return [(symbol, _color(symbol)) for symbol in sorted({site.specie.symbol for site in structure})]


def _segments(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, list]:
    """Line segments as one trace's coordinates, separated by gaps."""
    coords: dict[str, list] = {"x": [], "y": [], "z": []}
    for start, end in pairs:
        for axis, key in enumerate("xyz"):
            coords[key] += [float(start[axis]), float(end[axis]), None]
    return coords


def _cell_edges(structure: Structure) -> list[tuple[np.ndarray, np.ndarray]]:
    matrix = structure.lattice.matrix
    corners = {corner: np.array(corner) @ matrix for corner in product((0, 1), repeat=3)}
    return [(corners[a], corners[b]) for a in corners for b in corners
            if a < b and sum(x != y for x, y in zip(a, b, strict=True)) == 1]


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


def _bonds(structure: Structure, inside: list[tuple[str, np.ndarray, np.ndarray]]) -> tuple[list, list]:
    """The bonds of the drawn atoms (segment ends) and the neighbours outside the cell that bonds end at."""
    symbols = {site.specie.symbol for site in structure}
    anions = symbols & ANIONS
    radii = {s: _covalent_radius(s) for s in symbols}
    cutoff = BOND_TOLERANCE * 2 * max(radii.values())
    drawn = {tuple(np.round(frac, 3)) for _, frac, _ in inside}
    pairs, outside, seen = [], {}, set()
    for symbol, _, xyz in inside:
        for neighbour in structure.get_sites_in_sphere(xyz, cutoff):
            other = neighbour.specie.symbol
            if anions and (symbol in anions) == (other in anions):
                continue  # anion-anion or cation-cation
            distance = float(np.linalg.norm(neighbour.coords - xyz))
            if distance < 1e-3 or distance > BOND_TOLERANCE * (radii[symbol] + radii[other]):
                continue
            ends = frozenset((tuple(np.round(xyz, 3)), tuple(np.round(neighbour.coords, 3))))
            if ends in seen:  # a bond between two drawn atoms is found from both ends: once is enough
                continue
            seen.add(ends)
            pairs.append((xyz, neighbour.coords))
            key = tuple(np.round(neighbour.frac_coords, 3))
            if key not in drawn:
                outside[key] = (other, neighbour.coords)
    return pairs, list(outside.values())
