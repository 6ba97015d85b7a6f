"""Output documents of the DFT-validation stage (emmet style: every field described)."""

from enum import StrEnum

from pydantic import BaseModel, Field

from matris_flows.core.serialization import JsonStructure


class ValidationStatus(StrEnum):
    """Verdict of DFT on one MLIP candidate."""

    CONFIRMED_STABLE = "confirmed_stable"
    CONFIRMED_METASTABLE = "confirmed_metastable"
    NOT_CONFIRMED = "not_confirmed"
    VALIDATION_FAILED = "validation_failed"
    """The candidate's own DFT calculation failed."""
    VALIDATION_INCOMPLETE = "validation_incomplete"
    """An element or reference phase of the DFT hull failed: no verdict on a partial hull."""


class CalculationRole(StrEnum):
    """Why a structure is computed in a consistent DFT hull."""

    ELEMENT = "element"
    REFERENCE = "reference"
    CANDIDATE = "candidate"


class DftCalculationDocument(BaseModel):
    """One DFT relaxation of the offline backend: a candidate, an element or a reference phase."""

    label: str = Field(description="Candidate id, element symbol or reference-phase label.")
    role: CalculationRole = Field(description="element, reference or candidate.")
    formula: str = Field(description="Reduced formula of the structure.")
    succeeded: bool = Field(description="True when the DFT calculation produced an energy.")
    failure_reason: str | None = Field(None, description="Why the calculation failed (SCF, code missing, ...).")
    input_structure: JsonStructure = Field(description="Structure the relaxation started from.")
    structure: JsonStructure | None = Field(None, description="DFT-relaxed structure.")
    energy: float | None = Field(None, description="Total energy of the relaxed structure, eV (code scale).")
    energy_per_atom: float | None = Field(None, description="Energy per atom of the relaxed structure, eV/atom.")
    initial_energy_per_atom: float | None = Field(
        None, description="Energy per atom of the input structure (first ionic step), eV/atom."
    )
    initial_max_force: float | None = Field(
        None, description="Largest atomic force norm on the input structure, eV/Å (residual DFT force)."
    )
    initial_max_stress: float | None = Field(
        None, description="Largest absolute stress component on the input structure, GPa (None for molecules)."
    )
    final_max_force: float | None = Field(None, description="Largest atomic force norm after relaxation, eV/Å.")
    relax_converged: bool | None = Field(None, description="Whether the optimizer reached fmax within max steps.")
    n_steps: int | None = Field(None, description="Ionic steps taken (frames in the trajectory).")
    molecule_in_box: bool = Field(False, description="Isolated molecule in a box: Γ point, fixed cell.")
    code: str = Field(description="DFT code that ran the calculation.")
    code_version: str | None = Field(None, description="Version of the DFT code, None if not importable.")
    settings: dict = Field(description="Calculator and relaxation settings, identical across one hull.")
    elapsed_time_s: float | None = Field(None, description="Wall time of the calculation, s.")


class ValidationDocument(BaseModel):
    """DFT verdict on one candidate, joined into the candidate document as ``validation``."""

    candidate_id: str = Field(description="Id of the validated candidate (join key).")
    formula: str = Field(description="Reduced formula of the candidate.")
    chemsys: str = Field(description="Chemical system, elements sorted and joined by '-'.")
    status: ValidationStatus = Field(
        description="confirmed_stable, confirmed_metastable, not_confirmed, validation_failed (the candidate's DFT "
        "failed) or validation_incomplete (a hull phase failed, so no verdict)."
    )
    validated: bool = Field(description="True when DFT produced a verdict (not validation_failed/validation_incomplete).")
    failure_reason: str | None = Field(None, description="Why validation failed or is incomplete, when it is.")
    backend: str = Field(description="Validation backend: 'gpaw' (consistent offline hull) or 'vasp' (MP hull).")
    code: str = Field(description="DFT code used (GPAW, VASP).")
    code_version: str | None = Field(None, description="Version of the DFT code.")
    settings: dict = Field(default_factory=dict, description="DFT settings shared by every calculation of the hull.")
    package_versions: dict[str, str] = Field(default_factory=dict, description="Versions of the packages involved.")
    dft_energy_per_atom: float | None = Field(
        None, description="Energy per atom of the DFT-relaxed candidate, eV/atom (code scale, uncorrected)."
    )
    dft_corrected_energy_per_atom: float | None = Field(
        None, description="MP2020-corrected energy per atom (VASP backend only), eV/atom."
    )
    dft_formation_energy_per_atom: float | None = Field(
        None, description="DFT formation energy per atom relative to the hull's elemental references, eV/atom."
    )
    dft_structure: JsonStructure | None = Field(None, description="DFT-relaxed structure of the candidate.")
    dft_relax_converged: bool | None = Field(None, description="Whether the DFT relaxation met its force criterion.")
    dft_e_above_hull: float | None = Field(
        None,
        description="DFT energy above the hull of the reference phases named in hull_description, eV/atom: the "
        "candidate is not part of that hull and the value may be negative (below it), as the MLIP e_above_hull.",
    )
    dft_decomposes_to: list[str] | None = Field(
        None, description="Labels of the hull phases the candidate decomposes to (itself when on the hull)."
    )
    hull_description: str | None = Field(None, description="Which hull the DFT e_above_hull refers to.")
    hull_phases: list[str] = Field(default_factory=list, description="Labels of all phases in that hull.")
    mlip_potential: str | None = Field(None, description="Name of the MLIP that predicted the candidate.")
    mlip_energy_per_atom: float | None = Field(None, description="Raw MLIP energy per atom, eV/atom.")
    mlip_formation_energy_per_atom: float | None = Field(
        None, description="MLIP formation energy per atom from the hull stage, eV/atom."
    )
    mlip_e_above_hull: float | None = Field(
        None, description="MLIP energy above the reference hull from the hull stage (unclipped), eV/atom."
    )
    e_above_hull_error: float | None = Field(None, description="mlip_e_above_hull minus dft_e_above_hull, eV/atom.")
    formation_energy_error: float | None = Field(
        None,
        description="mlip_formation_energy_per_atom minus dft_formation_energy_per_atom, eV/atom, only when both are "
        "on one energy scale (VASP backend, MP2020-corrected, and a candidate on the MP hull); None otherwise "
        "(the GPAW hull is raw PBE with molecular references, not comparable with MP2020-corrected values).",
    )
    mlip_dft_rmsd: float | None = Field(
        None,
        description=(
            "StructureMatcher RMS displacement between MLIP- and DFT-relaxed structures, normalised by "
            "(V/N)^(1/3) as pymatgen defines it; None when they no longer match."
        ),
    )
    mlip_dft_volume_change: float | None = Field(
        None, description="DFT volume over MLIP volume minus one (relative volume change on DFT relaxation)."
    )
    residual_max_force_on_mlip_structure: float | None = Field(
        None, description="Largest DFT atomic force norm on the MLIP-relaxed structure, eV/Å."
    )
    residual_max_stress_on_mlip_structure: float | None = Field(
        None, description="Largest absolute DFT stress component on the MLIP-relaxed cell, GPa."
    )
    dft_energy_per_atom_on_mlip_structure: float | None = Field(
        None, description="DFT energy per atom of the MLIP-relaxed structure (before DFT relaxation), eV/atom."
    )
    selected_by: str | None = Field(
        None, description="Why this candidate was picked: the acquisition rule and its number (rank by a value, or uncertainty)."
    )
    stable_tolerance: float = Field(description="DFT e_above_hull at or below which a candidate is confirmed stable, eV/atom.")
    metastable_threshold: float = Field(
        description="DFT e_above_hull at or below which a candidate is confirmed metastable, eV/atom."
    )


class ValidationReport(BaseModel):
    """All validation documents of a campaign and the MLIP-vs-DFT comparison over them."""

    documents: list[ValidationDocument] = Field(description="One document per validated candidate.")
    n_selected: int = Field(description="Candidates sent to DFT.")
    n_validated: int = Field(description="Candidates that DFT produced a verdict for.")
    n_failed: int = Field(description="Candidates without a verdict (validation_failed or validation_incomplete).")
    n_incomplete: int = Field(0, description="Candidates without a verdict because a hull phase failed (validation_incomplete).")
    n_confirmed_stable: int = Field(description="Candidates DFT confirms on the hull.")
    n_confirmed_metastable: int = Field(description="Candidates DFT places within the metastability window.")
    e_above_hull_mae: float | None = Field(None, description="Mean |MLIP - DFT| e_above_hull over validated candidates, eV/atom.")
    formation_energy_mae: float | None = Field(
        None, description="Mean |MLIP - DFT| formation energy over candidates where both are on one scale, eV/atom."
    )
    mean_residual_max_force: float | None = Field(
        None, description="Mean of the largest residual DFT force on MLIP structures, eV/Å."
    )
    skipped: dict[str, str] = Field(default_factory=dict, description="Candidate id -> why it was not sent to DFT.")
    by_rule: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="Per acquisition rule (primary, consensus, uncertainty): picks, validated and confirmed stable or "
        "metastable, so a user sees whether the second opinion paid.",
    )
