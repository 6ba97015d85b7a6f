"""DFT hulls and the validation documents built on them.

Two hulls exist. The offline backend's energies are on its own scale, so its hull is
*consistent*: elements, reference phases and candidates all computed with one code and
one set of settings. The VASP backend's MP-compatible energies go on the MP hull after
``MaterialsProject2020Compatibility``. Either way the verdict and the MLIP-vs-DFT
comparison are made by :func:`validation_document`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jobflow import job
from jobflow.core.job import JobConfig
from jobflow.core.reference import OnMissing
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Structure

from matris_flows.provenance import package_versions
from matris_flows.validation.schemas import (
    CalculationRole,
    DftCalculationDocument,
    ValidationDocument,
    ValidationReport,
    ValidationStatus,
)
from matris_flows.validation.utils import (
    CandidateLike,
    candidate_chemsys,
    candidate_field,
    candidate_potential_name,
    candidate_structure,
)

DEFAULT_STABLE_TOLERANCE = 1e-3
DEFAULT_METASTABLE_THRESHOLD = 0.05


def classify(dft_e_above_hull: float, stable_tolerance: float, metastable_threshold: float) -> ValidationStatus:
    """Verdict from the DFT energy above hull."""
    if dft_e_above_hull <= stable_tolerance:
        return ValidationStatus.CONFIRMED_STABLE
    if dft_e_above_hull <= metastable_threshold:
        return ValidationStatus.CONFIRMED_METASTABLE
    return ValidationStatus.NOT_CONFIRMED


def structure_rmsd(mlip_structure: Structure, dft_structure: Structure) -> tuple[float | None, float]:
    """(normalised StructureMatcher RMS distance or None if unmatched, relative volume change)."""
    # scale=False: a volume change is reported separately and must not be hidden by rescaling.
    rms = StructureMatcher(scale=False, primitive_cell=False).get_rms_dist(mlip_structure, dft_structure)
    volume_change = dft_structure.volume / len(dft_structure) / (mlip_structure.volume / len(mlip_structure)) - 1.0
    return (None if rms is None else float(rms[0])), float(volume_change)


def failed_validation_document(
    candidate: CandidateLike | Mapping[str, Any],
    reason: str,
    backend: str,
    code: str,
    code_version: str | None = None,
    settings: dict | None = None,
    stable_tolerance: float = DEFAULT_STABLE_TOLERANCE,
    metastable_threshold: float = DEFAULT_METASTABLE_THRESHOLD,
) -> ValidationDocument:
    """A 'validation_failed' document: the candidate keeps its MLIP result and gains the reason."""
    structure = candidate_structure(candidate)
    return ValidationDocument(
        candidate_id=str(candidate_field(candidate, "candidate_id")),
        formula=structure.composition.reduced_formula,
        chemsys=candidate_chemsys(candidate),
        status=ValidationStatus.VALIDATION_FAILED,
        validated=False,
        failure_reason=reason,
        backend=backend,
        code=code,
        code_version=code_version,
        settings=settings or {},
        package_versions=package_versions(("gpaw", "gpaw-data", "emmet-core", "custodian")),
        mlip_potential=candidate_potential_name(candidate),
        mlip_energy_per_atom=candidate_field(candidate, "energy_per_atom"),
        mlip_formation_energy_per_atom=candidate_field(candidate, "formation_energy_per_atom"),
        mlip_e_above_hull=candidate_field(candidate, "e_above_hull"),
        stable_tolerance=stable_tolerance,
        metastable_threshold=metastable_threshold,
    )


def validation_document(
    candidate: CandidateLike | Mapping[str, Any],
    *,
    backend: str,
    code: str,
    code_version: str | None,
    settings: dict,
    dft_energy_per_atom: float,
    dft_structure: Structure,
    dft_e_above_hull: float,
    dft_formation_energy_per_atom: float | None,
    hull_description: str,
    hull_phases: list[str],
    dft_decomposes_to: list[str] | None = None,
    dft_corrected_energy_per_atom: float | None = None,
    dft_relax_converged: bool | None = None,
    residual_max_force: float | None = None,
    residual_max_stress: float | None = None,
    dft_energy_per_atom_on_mlip_structure: float | None = None,
    stable_tolerance: float = DEFAULT_STABLE_TOLERANCE,
    metastable_threshold: float = DEFAULT_METASTABLE_THRESHOLD,
) -> ValidationDocument:
    """The validation document of one candidate: DFT result beside the MLIP prediction."""
    mlip_structure = candidate_structure(candidate)
    rmsd, volume_change = structure_rmsd(mlip_structure, dft_structure)
    mlip_e_hull = candidate_field(candidate, "e_above_hull")
    mlip_form = candidate_field(candidate, "formation_energy_per_atom")
    return ValidationDocument(
        candidate_id=str(candidate_field(candidate, "candidate_id")),
        formula=mlip_structure.composition.reduced_formula,
        chemsys=candidate_chemsys(candidate),
        status=classify(dft_e_above_hull, stable_tolerance, metastable_threshold),
        validated=True,
        backend=backend,
        code=code,
        code_version=code_version,
        settings=settings,
        package_versions=package_versions(("gpaw", "gpaw-data", "emmet-core", "custodian")),
        dft_energy_per_atom=dft_energy_per_atom,
        dft_corrected_energy_per_atom=dft_corrected_energy_per_atom,
        dft_formation_energy_per_atom=dft_formation_energy_per_atom,
        dft_structure=dft_structure,
        dft_relax_converged=dft_relax_converged,
        dft_e_above_hull=dft_e_above_hull,
        dft_decomposes_to=dft_decomposes_to,
        hull_description=hull_description,
        hull_phases=hull_phases,
        mlip_potential=candidate_potential_name(candidate),
        mlip_energy_per_atom=candidate_field(candidate, "energy_per_atom"),
        mlip_formation_energy_per_atom=mlip_form,
        mlip_e_above_hull=mlip_e_hull,
        e_above_hull_error=None if mlip_e_hull is None else mlip_e_hull - dft_e_above_hull,
        formation_energy_error=(
            None if mlip_form is None or dft_formation_energy_per_atom is None
            else mlip_form - dft_formation_energy_per_atom
        ),
        mlip_dft_rmsd=rmsd,
        mlip_dft_volume_change=volume_change,
        residual_max_force_on_mlip_structure=residual_max_force,
        residual_max_stress_on_mlip_structure=residual_max_stress,
        dft_energy_per_atom_on_mlip_structure=dft_energy_per_atom_on_mlip_structure,
        stable_tolerance=stable_tolerance,
        metastable_threshold=metastable_threshold,
    )


def consistent_hull_entries(calculations: Sequence[DftCalculationDocument]) -> list[PDEntry]:
    """PDEntries (named by label) of the successful calculations, for one consistent hull."""
    return [
        PDEntry(c.structure.composition if c.structure else c.input_structure.composition, c.energy, name=c.label)
        for c in calculations
        if c.succeeded and c.energy is not None
    ]


def build_consistent_hull_validations(
    candidates: Sequence[CandidateLike | Mapping[str, Any]],
    calculations: Sequence[DftCalculationDocument | None],
    stable_tolerance: float = DEFAULT_STABLE_TOLERANCE,
    metastable_threshold: float = DEFAULT_METASTABLE_THRESHOLD,
) -> list[ValidationDocument]:
    """Validation documents of one chemical system from its consistent DFT calculations.

    The hull holds every successful calculation: elements, reference phases and all
    candidates, so a candidate is judged against the other candidates too. A failed element
    fails every candidate (no hull without it); a failed reference phase is left out and
    named in ``hull_description``; a failed candidate fails alone.

    Args:
        candidates: The candidates of one chemical system (hull-stage documents).
        calculations: Their DFT calculations plus the elements' and references'; None for a
            job that did not return at all.
        stable_tolerance: DFT e_above_hull at or below which a candidate is confirmed stable.
        metastable_threshold: DFT e_above_hull at or below which it is confirmed metastable.

    Returns:
        One validation document per candidate, in input order.
    """
    calcs = [c for c in calculations if c is not None]
    by_label = {c.label: c for c in calcs if c.role is CalculationRole.CANDIDATE}
    # Settings are identical across the hull by construction; a crystal speaks for them (an
    # isolated molecule differs in k-points and, for triplet O2, spin).
    reference_calc = next((c for c in calcs if not c.molecule_in_box), calcs[0] if calcs else None)
    code = reference_calc.code if reference_calc else "GPAW"
    code_version = reference_calc.code_version if reference_calc else None
    settings = reference_calc.settings if reference_calc else {}
    thresholds = {"stable_tolerance": stable_tolerance, "metastable_threshold": metastable_threshold}

    def failed(candidate: Any, reason: str) -> ValidationDocument:
        return failed_validation_document(candidate, reason, "gpaw", code, code_version, settings, **thresholds)

    elements = {c.label: c for c in calcs if c.role is CalculationRole.ELEMENT}
    chemsys_elements = sorted({el for cand in candidates for el in candidate_chemsys(cand).split("-")})
    missing = [el for el in chemsys_elements if el not in elements]
    bad = [f"{el}: {elements[el].failure_reason}" for el in chemsys_elements if el in elements and not elements[el].succeeded]
    if missing or bad:
        reason = "element reference failed, no consistent hull (" + "; ".join(
            [f"{el}: not computed" for el in missing] + bad
        ) + ")"
        return [failed(c, reason) for c in candidates]

    entries = consistent_hull_entries(calcs)
    diagram = PhaseDiagram(entries)
    entry_by_name = {e.name: e for e in entries}
    left_out = [c.label for c in calcs if c.role is CalculationRole.REFERENCE and not c.succeeded]
    n_refs = sum(1 for c in calcs if c.role is CalculationRole.REFERENCE and c.succeeded)
    description = (
        f"consistent {code} {settings.get('xc', '')} hull of {'-'.join(chemsys_elements)}: "
        f"{len(elements)} elements, {n_refs} reference phases, "
        f"{sum(1 for c in calcs if c.role is CalculationRole.CANDIDATE and c.succeeded)} candidates; "
        f"PW {settings.get('ecut')} eV, k-point density {settings.get('kpoint_density')}/Å⁻¹, "
        f"{settings.get('smearing')} {settings.get('smearing_width')} eV, "
        f"spin {'on' if settings.get('spin_polarized') else 'off'}"
    )
    if left_out:
        description += f" (failed reference phases left out: {', '.join(left_out)})"

    documents = []
    for candidate in candidates:
        cid = str(candidate_field(candidate, "candidate_id"))
        calc = by_label.get(cid)
        if calc is None:
            documents.append(failed(candidate, "DFT job did not return (crashed or was cancelled)"))
            continue
        if not calc.succeeded:
            documents.append(failed(candidate, calc.failure_reason or "DFT calculation failed"))
            continue
        entry = entry_by_name[cid]
        decomposition, e_hull = diagram.get_decomp_and_e_above_hull(entry, allow_negative=True)
        documents.append(
            validation_document(
                candidate,
                backend="gpaw",
                code=calc.code,
                code_version=calc.code_version,
                settings=calc.settings,
                dft_energy_per_atom=calc.energy_per_atom,
                dft_structure=calc.structure,
                dft_e_above_hull=float(e_hull),
                dft_formation_energy_per_atom=float(diagram.get_form_energy_per_atom(entry)),
                hull_description=description,
                hull_phases=sorted(e.name for e in entries),
                dft_decomposes_to=sorted(e.name for e in decomposition),
                dft_relax_converged=calc.relax_converged,
                residual_max_force=calc.initial_max_force,
                residual_max_stress=calc.initial_max_stress,
                dft_energy_per_atom_on_mlip_structure=calc.initial_energy_per_atom,
                **thresholds,
            )
        )
    return documents


@job(config=JobConfig(on_missing_references=OnMissing.NONE))
def consistent_dft_hull(
    candidates: list[Any],
    calculations: list[DftCalculationDocument | None],
    stable_tolerance: float = DEFAULT_STABLE_TOLERANCE,
    metastable_threshold: float = DEFAULT_METASTABLE_THRESHOLD,
) -> list[ValidationDocument]:
    """Job: consistent DFT hull of one chemical system → validation documents.

    Runs even when DFT jobs upstream crashed (their outputs arrive as None), so a failure
    becomes 'validation_failed' on the candidate rather than a stopped campaign.
    """
    return build_consistent_hull_validations(candidates, calculations, stable_tolerance, metastable_threshold)


def direct_e_above_hull(
    energies_per_atom: Mapping[str, tuple[Composition | str, float]], label: str
) -> float:
    """e_above_hull of ``label`` from ``{label: (composition, energy per atom)}``: a plain PhaseDiagram.

    A small, independent check of the hull job (and a convenience for notebooks).
    """
    entries = [
        PDEntry(Composition(comp), energy * Composition(comp).num_atoms, name=name)
        for name, (comp, energy) in energies_per_atom.items()
    ]
    diagram = PhaseDiagram(entries)
    return float(diagram.get_e_above_hull(next(e for e in entries if e.name == label), allow_negative=True))


def summarize_validations(
    documents: Sequence[ValidationDocument], skipped: Mapping[str, str] | None = None
) -> ValidationReport:
    """The campaign-level MLIP-vs-DFT comparison over all validation documents."""
    validated = [d for d in documents if d.validated]

    def mae(values: list[float | None]) -> float | None:
        values = [abs(v) for v in values if v is not None]
        return sum(values) / len(values) if values else None

    forces = [d.residual_max_force_on_mlip_structure for d in validated if d.residual_max_force_on_mlip_structure is not None]
    return ValidationReport(
        documents=list(documents),
        n_selected=len(documents),
        n_validated=len(validated),
        n_failed=len(documents) - len(validated),
        n_confirmed_stable=sum(d.status is ValidationStatus.CONFIRMED_STABLE for d in documents),
        n_confirmed_metastable=sum(d.status is ValidationStatus.CONFIRMED_METASTABLE for d in documents),
        e_above_hull_mae=mae([d.e_above_hull_error for d in validated]),
        formation_energy_mae=mae([d.formation_energy_error for d in validated]),
        mean_residual_max_force=sum(forces) / len(forces) if forces else None,
        skipped=dict(skipped or {}),
    )
