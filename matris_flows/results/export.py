"""Relaxed candidate structures written to files, one per candidate."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pymatgen.core import Structure

from matris_flows.results.formatting import get_path

logger = logging.getLogger(__name__)

StructureFormat = Literal["cif", "poscar", "extxyz", "json"]

EXTENSIONS: dict[str, str] = {"cif": "cif", "poscar": "vasp", "extxyz": "extxyz", "json": "json"}
"""File extension per export format (POSCARs get '.vasp', which ASE and VESTA recognise)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def structure_of(doc: Mapping[str, Any]) -> Structure | None:
    """The relaxed structure of a candidate document (dict or Structure field), None when it has none."""
    value = doc.get("structure")
    if value is None or isinstance(value, Structure):
        return value
    return Structure.from_dict(value)


def structure_filename(doc: Mapping[str, Any], fmt: StructureFormat) -> str:
    """``<formula>_<candidate_id>.<ext>``, with characters unsafe in file names replaced by '_'."""
    stem = f"{doc['formula']}_{doc['candidate_id']}"
    return f"{_UNSAFE.sub('_', stem)}.{EXTENSIONS[fmt]}"


def _write_extxyz(structure: Structure, doc: Mapping[str, Any], path: Path) -> None:
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    natoms = len(structure)
    info = {
        "candidate_id": doc["candidate_id"],
        "formula": doc["formula"],
        # total energies (ASE's convention), eV; per-atom values as stored
        "energy": None if doc.get("energy_per_atom") is None else doc["energy_per_atom"] * natoms,
        "corrected_energy": None
        if doc.get("corrected_energy_per_atom") is None
        else doc["corrected_energy_per_atom"] * natoms,
        "energy_per_atom": doc.get("energy_per_atom"),
        "e_above_hull": doc.get("e_above_hull"),
        "e_above_hull_campaign": doc.get("e_above_hull_campaign"),
        "matches_reference": doc.get("matches_reference"),  # known phase: the reference's material id
        "source": get_path(doc, "provenance.source"),
    }
    atoms.info.update({k: v for k, v in info.items() if v is not None})
    write(path, atoms, format="extxyz")


def export_structures(
    docs: Iterable[Mapping[str, Any]], directory: str | Path, fmt: StructureFormat = "cif"
) -> list[Path]:
    """Write each candidate's relaxed structure to ``directory/<formula>_<candidate_id>.<ext>``.

    Candidates without a relaxed structure (failed relaxations) are skipped and
    named in a warning; the input structure is never written in their place, so
    every file holds a structure whose energy was computed. extxyz files carry
    the total model energy (``energy``), ``corrected_energy``, ``e_above_hull``,
    ``e_above_hull_campaign``, the known phase it matches (``matches_reference``), its
    generation ``source`` and the candidate id in the frame's info.

    Args:
        docs: Candidate documents as stored (structures as pymatgen dicts).
        directory: Output folder, created if needed.
        fmt: 'cif', 'poscar', 'extxyz' or 'json' (pymatgen's Structure dict).

    Returns:
        The files written, in the order of ``docs``.
    """
    if fmt not in EXTENSIONS:
        raise ValueError(f"unknown structure format {fmt!r}: use one of {sorted(EXTENSIONS)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    skipped: list[str] = []
    for doc in docs:
        structure = structure_of(doc)
        if structure is None:
            skipped.append(str(doc.get("candidate_id")))
            continue
        path = directory / structure_filename(doc, fmt)
        if fmt == "extxyz":
            _write_extxyz(structure, doc, path)
        else:
            structure.to(filename=str(path), fmt=fmt)
        written.append(path)
    if skipped:
        logger.warning(f"no relaxed structure, not exported: {', '.join(skipped)}")
    return written
