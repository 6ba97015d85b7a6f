"""Campaign specs for the tests: the small EMT screening campaigns that many tests run.

A spec is built as a dict and written as YAML, so that each test states only what makes
its campaign its own (name, elements, relaxation steps, references, store, execution)
and the common part (EMT on the CPU, L1_2 prototypes of metals) is written once.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

EMT = "ase.calculators.emt:EMT"
"""ASE's EMT calculator: fast, and built in, so a campaign needs no weights."""

FCC = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
"""Fractional positions of the conventional 4-atom fcc cell."""


def prototype_generation(elements: Sequence[str] = ("Cu", "Ni"), chunk_size: int | None = 1) -> dict[str, Any]:
    """Generation section: the L1_2 (A3B) decorations of ``elements``, not charge balanced (they are metals).

    ``chunk_size`` None leaves the spec's default.
    """
    # Two separate lists: one list object twice would be written as a YAML anchor and alias.
    prototypes = {"element_lists": [list(elements), list(elements)], "prototypes": ["l12"], "charge_balanced": False}
    generation: dict[str, Any] = {"prototypes": prototypes}
    if chunk_size is not None:
        generation["chunk_size"] = chunk_size
    return generation


def emt_spec(
    name: str,
    generation: Mapping[str, Any],
    *,
    relax: Mapping[str, Any],
    potential: str = EMT,
    allow_import: bool | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """A campaign spec that relaxes the candidates of ``generation`` with ``potential`` (EMT by default) on the CPU.

    Args:
        name: Campaign name.
        generation: The generation section (e.g. :func:`prototype_generation`).
        relax: The relax section.
        potential: The potential's name (an ASE calculator import path, a checkpoint path, ...).
        allow_import: Written as ``potential.allow_import`` when given.
        sections: Further top-level sections (hull, store, execution), in the order given.
    """
    potential_section: dict[str, Any] = {"name": potential, "device": "cpu"}
    if allow_import is not None:
        potential_section["allow_import"] = allow_import
    return {"name": name, "generation": dict(generation), "potential": potential_section, "relax": dict(relax), **sections}


def spec_yaml(spec: Mapping[str, Any]) -> str:
    """``spec`` as the YAML text of a spec file, sections in the order given."""
    return yaml.safe_dump(dict(spec), sort_keys=False)


def write_spec_file(path: Path, spec: Mapping[str, Any], extra: str = "") -> Path:
    """Write ``spec`` to ``path`` as YAML, followed by the YAML text ``extra`` (dedented); return ``path``."""
    path.write_text(spec_yaml(spec) + textwrap.dedent(extra))
    return path


def write_fcc_references(path: Path) -> Path:
    """Write hand-made references to ``path`` (pymatgen JSON) and return it: fcc Cu, Ni and Pd, 4-atom cells, GGA.

    A consistent (EMT) hull of Cu-Ni-Pd relaxes exactly these three phases.
    """
    from monty.serialization import dumpfn
    from pymatgen.core import Lattice, Structure
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    references = [
        ComputedStructureEntry(Structure(Lattice.cubic(a), [el] * 4, FCC), energy, entry_id=f"ref-{el}", parameters={"run_type": "GGA"})
        for el, a, energy in (("Cu", 3.61, -4 * 4.1), ("Ni", 3.52, -4 * 5.8), ("Pd", 3.89, -4 * 5.2))
    ]
    dumpfn(references, path)
    return path
