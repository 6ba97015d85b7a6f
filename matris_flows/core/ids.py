"""Stable candidate ids: the later stages join on them, so they must not drift.

An id hashes a canonical text form of the structure (lattice and wrapped fractional
coordinates rounded to 1e-4, sites sorted) together with the provenance. Rounding and
sorting make it independent of site order, float noise and platform; provenance is part
of it so the same structure proposed by two routes keeps two traceable ids until dedup.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
from pymatgen.core import Structure

ID_PREFIX = "cand-"
_DECIMALS = 4


def _fmt(values: np.ndarray) -> list[str]:
    # "%.4f" of -0.0 is "-0.0000": normalise so the sign of zero cannot change an id.
    return [s if s != "-0.0000" else "0.0000" for s in (f"{v:.{_DECIMALS}f}" for v in values.ravel())]


def canonical_structure_text(structure: Structure) -> str:
    """Return a rounded, site-order independent text form of ``structure``."""
    lattice = _fmt(np.asarray(structure.lattice.matrix))
    frac = np.round(np.mod(structure.frac_coords, 1.0), _DECIMALS) % 1.0
    sites = sorted(
        (site.species_string, *_fmt(coords)) for site, coords in zip(structure, frac, strict=True)
    )
    return json.dumps({"lattice": lattice, "sites": sites}, separators=(",", ":"))


def candidate_id(structure: Structure, provenance: dict[str, Any] | None = None, length: int = 16) -> str:
    """Return ``cand-<hex>``: the first ``length`` hex digits of SHA-256(structure + provenance)."""
    prov = json.dumps(provenance or {}, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(f"{canonical_structure_text(structure)}|{prov}".encode()).hexdigest()
    return ID_PREFIX + digest[:length]
