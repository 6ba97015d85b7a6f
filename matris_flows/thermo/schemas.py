"""Output documents of the hull stage (emmet style: every field described).

Field names follow emmet's thermo documents where they overlap
(``formation_energy_per_atom``, ``decomposes_to``); ``e_above_hull`` keeps the
Matbench Discovery name because that is the number screens are compared on.
"""

from enum import StrEnum

from pydantic import BaseModel, Field

from matris_flows.core.serialization import JsonStructure
from matris_flows.generation.schemas import Provenance
from matris_flows.relax.schemas import RelaxationSummary


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
    JOB_FAILED = "job_failed"
    """The candidate's relaxation or hull job failed (reason in ``thermo_failure_reason``); ``resume`` reruns it."""


class ReferenceProvenance(BaseModel):
    """Where the reference entries of a hull came from."""

    provider: str = Field(description="Reference provider: 'local_files', 'mp_api' or 'campaign_internal'.")
    source: str = Field(description="Files, API endpoint/database version or potential the entries came from.")
    snapshot_date: str | None = Field(
        None, description="ISO date (YYYY-MM-DD) of the reference data snapshot, where known."
    )
    snapshot: str | None = Field(
        None,
        description="Identity of the one reference snapshot used (never a mix): each file with its SHA-256 prefix, or "
        "the MP database version and thermo type.",
    )
    n_entries: int = Field(0, description="Number of reference entries in the hull of this chemical system.")
    chemsys: str = Field(description="Chemical system the reference hull was built for (elements sorted, '-').")
    note: str | None = Field(None, description="Why this hull kind was used, when it is not the requested one.")
    reference_set: str | None = Field(
        None, description="Key of the consistent reference set (MP phases relaxed with the campaign's potential), if one was used."
    )


class DecompositionProduct(BaseModel):
    """One phase of the hull decomposition of a candidate."""

    formula: str = Field(description="Reduced formula of the product.")
    material_id: str | None = Field(None, description="MP material id (or campaign candidate id) of the product.")
    entry_id: str | None = Field(None, description="Entry id of the product in the reference data.")
    amount: float = Field(description="Fraction of the candidate's atoms that end up in this product.")


class CandidateDocument(BaseModel):
    """A relaxed candidate with its thermodynamic stability: what a screener decides on.

    Two hulls are reported:

    - *reference hull* (``e_above_hull``, ``is_stable``, ``formation_energy_per_atom``,
      ``decomposes_to``): the reference phases only (MP, or the campaign-internal
      references for potentials off the MP scale), computed per candidate right after
      its relaxation chunk. Two competing candidates can both be below it.
    - *campaign hull* (``e_above_hull_campaign``, ``is_stable_campaign``): the reference
      phases plus every other candidate of the campaign, computed by the campaign-wide
      step once all chunks are relaxed (None before). Of two competing candidates only
      the lower one is on it.

    Neither hull calls an unconverged relaxation stable unless the campaign allows it
    (``allow_unconverged``). A new material is one that is stable, ``matches_reference``
    None (not a known phase) and ``duplicate_of`` None (``query --novel``).
    """

    candidate_id: str = Field(description="Stable id of the candidate (the key all stages join on).")
    campaign: str | None = Field(None, description="Name of the campaign that screened it.")
    formula: str = Field(description="Reduced formula.")
    chemsys: str = Field(description="Chemical system, elements sorted and joined by '-'.")
    elements: list[str] = Field(default_factory=list, description="Element symbols, sorted.")
    nsites: int | None = Field(None, description="Sites in the relaxed cell.")
    spacegroup: int | None = Field(None, description="Space group number of the relaxed structure (symprec 0.1 Å).")
    structure: JsonStructure | None = Field(None, description="Relaxed structure, None when the relaxation failed.")
    provenance: Provenance | None = Field(
        None,
        description="Generation provenance: source (substitution, prototype, random_search, file), parent template "
        "id, substitution, prototype, file path and index, seed. Queryable (query --source, --parent, --where).",
    )
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
    decomposes_to: list[DecompositionProduct] | None = Field(
        None, description="Reference-hull phases the candidate decomposes to, with atom fractions."
    )
    is_stable: bool | None = Field(
        None,
        description="Reference hull: e_above_hull <= stability_threshold and the relaxation converged (unless "
        "allow_unconverged). Says nothing about competing candidates: see is_stable_campaign.",
    )
    e_above_hull_campaign: float | None = Field(
        None,
        description="Energy above the hull of the references plus all other campaign candidates, eV/atom, unclipped "
        "(0 for a candidate on that hull). None until the campaign-wide step ran.",
    )
    is_stable_campaign: bool | None = Field(
        None,
        description="Campaign hull: e_above_hull_campaign <= stability_threshold, not a duplicate, and the relaxation "
        "converged (unless allow_unconverged). None until the campaign-wide step ran.",
    )
    matches_reference: str | None = Field(
        None,
        description="Material id of the reference phase (e.g. MP) whose structure the relaxed candidate matches "
        "(StructureMatcher against the references of its reduced formula), else whose structure it was generated as: "
        "a known phase, not a discovery. None when no reference structure matches (or the relaxation failed).",
    )
    duplicate_of: str | None = Field(
        None, description="candidate_id of a lower-energy candidate with the same relaxed structure (campaign-wide step)."
    )
    campaign_hull_fingerprint: str | None = Field(
        None, description="Fingerprint of the campaign hull group last used (lets a resumed campaign skip unchanged systems)."
    )
    stability_threshold: float = Field(0.0, description="Threshold used for is_stable and is_stable_campaign, eV/atom.")
    hull_kind: HullKind | None = Field(None, description="'mp' or 'campaign_internal'.")
    thermo_status: ThermoStatus = Field(description="ok, rejected, relax_failed, no_reference or job_failed.")
    thermo_failure_reason: str | None = Field(None, description="Why no hull energy was computed.")
    reference: ReferenceProvenance | None = Field(None, description="Provenance of the reference hull.")
    relaxation: RelaxationSummary = Field(description="The relaxation this document was computed from (no arrays).")
    validation: dict | None = Field(None, description="DFT validation results, filled in by the validation stage.")
    consensus: dict | None = Field(
        None,
        description="Second opinions (consensus stage, a ConsensusRecord): every model's e_above_hull on its reference and "
        "campaign hull, versions and checkpoint hashes, the statistic and rule. None when not shortlisted or no stage ran.",
    )
    e_above_hull_consensus: float | None = Field(
        None, description="Consensus (median by default) of the models' e_above_hull on their reference hulls, eV/atom."
    )
    e_above_hull_campaign_consensus: float | None = Field(
        None, description="The same statistic of the models' e_above_hull on their campaign hulls, eV/atom."
    )
    consensus_spread: float | None = Field(
        None, description="Largest minus smallest of the models' e_above_hull, eV/atom: how much they disagree."
    )
    is_stable_consensus: bool | None = Field(
        None,
        description="The consensus rule (consensus value, or every model, at most the threshold) and a converged primary "
        "relaxation (unless allow_unconverged). None when no second opinion was had.",
    )


class HullOutput(BaseModel):
    """Output of one hull job (one relaxation chunk)."""

    candidate_ids: list[str] = Field(description="Candidates assessed, in chunk order.")
    n_ok: int = Field(0, description="Candidates with a hull energy.")
    n_stable: int = Field(0, description="Candidates with is_stable (reference hull).")
    n_known_phases: int = Field(
        0, description="Candidates that are a reference phase (matches_reference: relaxed structure, else as generated)."
    )
    n_failed: int = Field(0, description="Candidates without a hull energy (relaxation failed, rejected, no reference).")
    published: bool = Field(
        False, description="The documents went to the candidates store (then 'documents' is None)."
    )
    documents: list[CandidateDocument] | None = Field(
        None, description="The candidate documents, only when there was no candidates store to publish them to."
    )


class CampaignHullOutput(BaseModel):
    """Output of the campaign-wide step (campaign hull and post-relaxation dedup)."""

    n_candidates: int = Field(0, description="Candidate documents of the campaign.")
    n_systems: int = Field(0, description="Maximal chemical systems (hull groups).")
    n_systems_updated: int = Field(0, description="Groups recomputed this run (the others were unchanged).")
    n_duplicates: int = Field(0, description="Candidates marked duplicate_of another one.")
    n_stable_campaign: int = Field(0, description="Candidates with is_stable_campaign.")
    n_known_phases: int = Field(
        0, description="Candidates that are a reference phase (matches_reference: relaxed structure, else as generated)."
    )
    n_new_stable: int = Field(
        0, description="Candidates with is_stable_campaign that are no known phase (and, by then, no duplicate)."
    )
