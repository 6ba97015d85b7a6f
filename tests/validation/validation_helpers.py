"""Helpers of the validation-stage tests: hull-stage stand-ins and the GPAW marker.

A uniquely named module (not conftest) so that test folders of other stages cannot shadow it.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
from pydantic import BaseModel, Field
from pymatgen.core import Structure


def _gpaw_available() -> bool:
    try:
        return importlib.util.find_spec("gpaw") is not None and importlib.util.find_spec("_gpaw") is not None
    except (ImportError, ValueError):
        return False


# CI sets MATRIS_FLOWS_REQUIRE_DFT=1 so that a broken GPAW install fails instead of skipping.
requires_gpaw = pytest.mark.skipif(
    not _gpaw_available() and os.environ.get("MATRIS_FLOWS_REQUIRE_DFT") != "1",
    reason="GPAW not installed (run .ci/install_dft.sh)",
)


class PotentialStandIn(BaseModel):
    """The part of the relax stage's PotentialInfo that validation reads."""

    name: str = Field(description="Potential name.")


class RelaxationStandIn(BaseModel):
    """The part of the relax stage's RelaxationDocument that validation reads."""

    potential: PotentialStandIn = Field(description="Potential provenance.")
    status: str = Field("converged", description="converged, not_converged or failed.")


class CandidateStandIn(BaseModel):
    """Stand-in for the hull stage's CandidateDocument (same field names)."""

    candidate_id: str = Field(description="Candidate id.")
    formula: str = Field(description="Reduced formula.")
    chemsys: str = Field(description="Chemical system.")
    structure: Structure = Field(description="MLIP-relaxed structure.")
    energy_per_atom: float | None = Field(None, description="Raw MLIP energy per atom.")
    corrected_energy_per_atom: float | None = Field(None, description="MP2020-corrected MLIP energy per atom.")
    formation_energy_per_atom: float | None = Field(None, description="MLIP formation energy per atom.")
    e_above_hull: float | None = Field(None, description="MLIP e_above_hull.")
    is_stable: bool | None = Field(None, description="On the MLIP hull.")
    hull_kind: str | None = Field(None, description="'mp' or 'campaign_internal'.")
    thermo_status: str = Field("ok", description="Hull-stage status.")
    relaxation: RelaxationStandIn | None = Field(None, description="Relaxation provenance.")
    validation: dict | None = Field(None, description="Joined validation document.")


def make_candidate(candidate_id: str, structure: Structure, e_above_hull: float | None, **kwargs) -> CandidateStandIn:
    """A hull-stage candidate stand-in around ``structure``."""
    return CandidateStandIn(
        candidate_id=candidate_id,
        formula=structure.composition.reduced_formula,
        chemsys=structure.composition.chemical_system,
        structure=structure,
        energy_per_atom=kwargs.pop("energy_per_atom", -3.2),
        formation_energy_per_atom=kwargs.pop("formation_energy_per_atom", -1.8),
        e_above_hull=e_above_hull,
        is_stable=e_above_hull == 0 if e_above_hull is not None else None,
        relaxation=RelaxationStandIn(
            potential=PotentialStandIn(name="matris-stand-in"), status=kwargs.pop("relax_status", "converged")
        ),
        **kwargs,
    )
