"""Output documents of the hull stage (emmet style: every field described).

Field names follow emmet's thermo documents where they overlap
(``formation_energy_per_atom``, ``decomposes_to``); ``e_above_hull`` keeps the
Matbench Discovery name because that is the number screens are compared on.
"""

from enum import StrEnum

from pydantic import BaseModel, Field
from pymatgen.core import Structure

from matris_flows.relax.schemas import RelaxationDocument


class HullKind(StrEnum):
    """Which hull a candidate's ``e_above_hull`` was measured against."""

    MP = "mp"
    """Materials Project reference entries (MP2020-compatible energies)."""
    CAMPAIGN_INTERNAL = "campaign_internal"
    """Elemental references relaxed with the campaign's potential plus the campaign's own entries."""


class ThermoStatus(StrEnum):
    """Outcome of the hull stage for one candidate."""

    OK = "ok"
    REJECTED = "rejected"
    """The energy correction scheme rejected the entry (reason in ``thermo_failure_reason``)."""
    RELAX_FAILED = "relax_failed"
    """The relaxation produced no energy, so there is nothing to put on a hull."""
    NO_REFERENCE = "no_reference"
    """No reference data for the candidate's chemical system."""


class ReferenceProvenance(BaseModel):
    """Where the reference entries of a hull came from."""

    provider: str = Field(description="Reference provider: 'local_files', 'mp_api' or 'campaign_internal'.")
    source: str = Field(description="Files, API endpoint/database version or potential the entries came from.")
    snapshot_date: str | None = Field(
        None, description="ISO date (YYYY-MM-DD) of the reference data snapshot, where known."
    )
    n_entries: int = Field(0, description="Number of reference entries in the hull of this chemical system.")
    chemsys: str = Field(description="Chemical system the reference hull was built for (elements sorted, '-').")
    note: str | None = Field(None, description="Why this hull kind was used, when it is not the requested one.")


class DecompositionProduct(BaseModel):
    """One phase of the hull decomposition of a candidate."""

    formula: str = Field(description="Reduced formula of the product.")
    material_id: str | None = Field(None, description="MP material id (or campaign candidate id) of the product.")
    entry_id: str | None = Field(None, description="Entry id of the product in the reference data.")
    amount: float = Field(description="Fraction of the candidate's atoms that end up in this product.")


class CandidateDocument(BaseModel):
    """A relaxed candidate with its thermodynamic stability: what a screener decides on."""

    candidate_id: str = Field(description="Stable id of the candidate (the key all stages join on).")
    formula: str = Field(description="Reduced formula.")
    chemsys: str = Field(description="Chemical system, elements sorted and joined by '-'.")
    structure: Structure | None = Field(None, description="Relaxed structure, None when the relaxation failed.")
    energy_per_atom: float | None = Field(None, description="Raw model energy per atom, eV/atom (model convention).")
    corrected_energy_per_atom: float | None = Field(
        None, description="Energy per atom on the reference hull's scale (MP2020-corrected where that applies), eV/atom."
    )
    energy_correction_per_atom: float | None = Field(
        None, description="Energy correction added to the raw energy, eV/atom (0 when none applies)."
    )
    formation_energy_per_atom: float | None = Field(
        None, description="Formation energy per atom from the hull's elemental references, eV/atom."
    )
    e_above_hull: float | None = Field(
        None, description="Energy above the reference hull, eV/atom (negative: below the known hull)."
    )
    e_above_hull_campaign: float | None = Field(
        None, description="Energy above the hull of the references plus all campaign candidates, eV/atom (>= 0)."
    )
    decomposes_to: list[DecompositionProduct] | None = Field(
        None, description="Reference-hull phases the candidate decomposes to, with atom fractions."
    )
    is_stable: bool | None = Field(None, description="e_above_hull <= stability_threshold.")
    stability_threshold: float = Field(0.0, description="Threshold used for is_stable, eV/atom.")
    hull_kind: HullKind | None = Field(None, description="'mp' or 'campaign_internal'.")
    thermo_status: ThermoStatus = Field(description="ok, rejected, relax_failed or no_reference.")
    thermo_failure_reason: str | None = Field(None, description="Why no hull energy was computed.")
    reference: ReferenceProvenance | None = Field(None, description="Provenance of the reference hull.")
    relaxation: RelaxationDocument = Field(description="The relaxation this document was computed from.")
    validation: dict | None = Field(None, description="DFT validation results, filled in by the validation stage.")
