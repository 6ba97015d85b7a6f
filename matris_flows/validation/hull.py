"""DFT hulls and the validation documents built on them.

Two hulls exist. The offline backend's energies are on its own scale, so its hull is
*consistent*: elements, reference phases and candidates all computed with one code and
one set of settings. The VASP backend's MP-compatible energies go on the MP hull after
``MaterialsProject2020Compatibility``. Either way the verdict and the MLIP-vs-DFT
comparison are made by :func:`validation_document`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from jobflow import Maker, job
from jobflow.core.job import JobConfig
from jobflow.core.reference import OnMissing
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Structure
from pymatgen.entries.computed_entries import ComputedEntry

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

# The numerical noise of the default GpawSettings (PW 500 eV, k-point density 4.0/Å⁻¹,
# Fermi-Dirac 0.05 eV), measured on the Na-Cl test system of tests/validation (Na bcc
# a=4.20, Cl2 in a 7 Å box, rocksalt a=5.69 and CsCl-type a=3.40 NaCl; single points, PBE,
# GPAW 26.7). NaCl formation energy / CsCl − rocksalt energy, eV/atom:
#   cutoff (k 4.0):      400 eV −1.85357 / 0.17191; 500 eV −1.85341 / 0.17186;
#                        600 eV −1.85321 / 0.17190; 800 eV −1.85281 / 0.17192.
#   k density (500 eV):  3.0 −1.85521 / 0.17204; 4.0 −1.85341 / 0.17186; 5.0 −1.85454 / 0.17186;
#                        6.0 −1.85651 / 0.17186; 8.0 −1.85621 / 0.17186.
#   converged (800 eV, k 8.0): −1.85561 / 0.17191.
# The defaults are 2.2 meV/atom off the converged formation energy and scatter by 3.1 meV/atom
# over k ≥ 4, all of it from metallic Na (bcc Na alone moves 6.2 meV/atom between k 4 and 6);
# the insulator-insulator difference is converged to 0.05 meV/atom. So a distance to a hull
# with a metal among its vertices is known to ~3 meV/atom at these settings, and the old
# 1 meV/atom tolerance sat inside that noise. The tolerance is the largest measured deviation,
# 3.1 meV/atom, with a margin for the relaxations (fmax 0.05 eV/Å), rounded up: 5 meV/atom.
# Denser settings (kpoint_density ≥ 6) justify a tighter one (``stable_tolerance``).
DEFAULT_STABLE_TOLERANCE = 5e-3
DEFAULT_METASTABLE_THRESHOLD = 0.05


# kw_only: the thresholds come after each backend's own fields in its constructor, as they did
# before this base existed, so positional arguments keep their meaning.
@dataclass(kw_only=True)
class DftValidationMaker(Maker):
    """Base of the DFT validation backends: ``make(candidates, reference_entries)`` → a Flow of validation documents.

    Parameters
    ----------
    stable_tolerance, metastable_threshold
        DFT e_above_hull limits of 'confirmed_stable' and 'confirmed_metastable', eV/atom.
    """

    backend: ClassVar[str]
    """The backend's name in documents and reports ('gpaw', 'vasp')."""

    stable_tolerance: float = DEFAULT_STABLE_TOLERANCE
    metastable_threshold: float = DEFAULT_METASTABLE_THRESHOLD

    @staticmethod
    def entry_list(reference_entries: Sequence[ComputedEntry] | Mapping[str, ComputedEntry]) -> list[ComputedEntry]:
        """The reference entries as a list (callers may pass them keyed by id)."""
        return list(reference_entries.values()) if isinstance(reference_entries, Mapping) else list(reference_entries)


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
    status: ValidationStatus = ValidationStatus.VALIDATION_FAILED,
    calculation: DftCalculationDocument | None = None,
) -> ValidationDocument:
    """A document without a verdict: the candidate keeps its MLIP result and gains the reason.

    ``status`` is 'validation_failed' (the candidate's DFT failed) or 'validation_incomplete'
    (a phase of its hull failed). A successful ``calculation`` of the candidate is kept
    (energy, structure, residual forces), but no e_above_hull is derived from a partial hull.
    """
    structure = candidate_structure(candidate)
    dft: dict[str, Any] = {}
    if calculation is not None and calculation.succeeded:
        dft = {
            "dft_energy_per_atom": calculation.energy_per_atom,
            "dft_structure": calculation.structure,
            "dft_relax_converged": calculation.relax_converged,
            "residual_max_force_on_mlip_structure": calculation.initial_max_force,
            "residual_max_stress_on_mlip_structure": calculation.initial_max_stress,
            "dft_energy_per_atom_on_mlip_structure": calculation.initial_energy_per_atom,
        }
    return ValidationDocument(
        candidate_id=str(candidate_field(candidate, "candidate_id")),
        formula=structure.composition.reduced_formula,
        chemsys=candidate_chemsys(candidate),
        status=status,
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
        **dft,
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
    formation_energy_comparable: bool = False,
) -> ValidationDocument:
    """The validation document of one candidate: DFT result beside the MLIP prediction.

    ``dft_e_above_hull`` must be measured like the MLIP one (the candidate outside the hull
    of the reference phases, negative allowed), so that ``e_above_hull_error`` is unbiased.
    ``formation_energy_error`` is only filled when ``formation_energy_comparable``: the two
    formation energies are on one scale (MP2020-corrected DFT vs an MLIP on the MP hull).
    """
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
            None if not formation_energy_comparable or mlip_form is None or dft_formation_energy_per_atom is None
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


def _hull_problems(calcs: Sequence[DftCalculationDocument], chemsys_elements: list[str]) -> list[str]:
    """Why the hull of elements and reference phases is incomplete (empty when it is complete)."""
    elements = {c.label: c for c in calcs if c.role is CalculationRole.ELEMENT}
    problems = [f"element reference failed: {el}: not computed" for el in chemsys_elements if el not in elements]
    problems += [
        f"element reference failed: {el}: {elements[el].failure_reason}"
        for el in chemsys_elements if el in elements and not elements[el].succeeded
    ]
    problems += [
        f"reference phase failed: {c.label}: {c.failure_reason}"
        for c in calcs if c.role is CalculationRole.REFERENCE and not c.succeeded
    ]
    return problems


def build_consistent_hull_validations(
    candidates: Sequence[CandidateLike | Mapping[str, Any]],
    calculations: Sequence[DftCalculationDocument | None],
    stable_tolerance: float = DEFAULT_STABLE_TOLERANCE,
    metastable_threshold: float = DEFAULT_METASTABLE_THRESHOLD,
    expected_references: Sequence[str] = (),
) -> list[ValidationDocument]:
    """Validation documents of one chemical system from its consistent DFT calculations.

    The hull holds the elements and the reference phases only; each candidate is placed
    against it from outside, with negative values allowed: the same measure as the MLIP
    e_above_hull, so the MLIP-vs-DFT difference carries no bias (a candidate inside the hull
    would read 0 instead of its negative distance, and one candidate would shadow another).

    A verdict needs the whole hull. If an element or a reference phase failed (or its job
    never returned), every candidate of the system is 'validation_incomplete' with the
    reasons, and keeps its own DFT result; a failed candidate is 'validation_failed'.

    Args:
        candidates: The candidates of one chemical system (hull-stage documents).
        calculations: Their DFT calculations plus the elements' and references'; None for a
            job that did not return at all.
        stable_tolerance: DFT e_above_hull at or below which a candidate is confirmed stable.
        metastable_threshold: DFT e_above_hull at or below which it is confirmed metastable.
        expected_references: Labels of the reference phases that were submitted; one without
            a calculation (its job crashed) makes the hull incomplete.

    Returns:
        One validation document per candidate, in input order.
    """
    calcs = [c for c in calculations if c is not None]
    by_label = {c.label: c for c in calcs if c.role is CalculationRole.CANDIDATE}
    # Settings are identical across the hull by construction; a crystal speaks for them (an
    # isolated molecule differs in k-points).
    reference_calc = next((c for c in calcs if not c.molecule_in_box), calcs[0] if calcs else None)
    code = reference_calc.code if reference_calc else "GPAW"
    code_version = reference_calc.code_version if reference_calc else None
    settings = reference_calc.settings if reference_calc else {}
    thresholds = {"stable_tolerance": stable_tolerance, "metastable_threshold": metastable_threshold}

    def no_verdict(candidate: Any, reason: str, status: ValidationStatus, calc: DftCalculationDocument | None = None):
        return failed_validation_document(
            candidate, reason, "gpaw", code, code_version, settings, status=status, calculation=calc, **thresholds
        )

    chemsys_elements = sorted({el for cand in candidates for el in candidate_chemsys(cand).split("-")})
    computed = {c.label for c in calcs}
    problems = _hull_problems(calcs, chemsys_elements)
    problems += [f"reference phase failed: {label}: job did not return" for label in expected_references if label not in computed]
    hull_calcs = [c for c in calcs if c.role is not CalculationRole.CANDIDATE]
    entries = consistent_hull_entries(hull_calcs)
    n_refs = sum(1 for c in hull_calcs if c.role is CalculationRole.REFERENCE and c.succeeded)
    description = (
        f"consistent {code} {settings.get('xc', '')} hull of {'-'.join(chemsys_elements)}: "
        f"{sum(1 for c in hull_calcs if c.role is CalculationRole.ELEMENT and c.succeeded)} elements, "
        f"{n_refs} reference phases (candidates placed outside it); "
        f"PW {settings.get('ecut')} eV, k-point density {settings.get('kpoint_density')}/Å⁻¹, "
        f"{settings.get('smearing')} {settings.get('smearing_width')} eV, "
        f"spin {'on' if settings.get('spin_polarized') else 'off'}"
    )
    diagram = None if problems else PhaseDiagram(entries)

    documents = []
    for candidate in candidates:
        cid = str(candidate_field(candidate, "candidate_id"))
        calc = by_label.get(cid)
        own = None
        if calc is None:
            own = "DFT job did not return (crashed or was cancelled)"
        elif not calc.succeeded:
            own = calc.failure_reason or "DFT calculation failed"
        if own is not None:
            reason = own + (f"; hull incomplete ({'; '.join(problems)})" if problems else "")
            documents.append(no_verdict(candidate, reason, ValidationStatus.VALIDATION_FAILED))
            continue
        if diagram is None:
            reason = f"hull incomplete, no verdict: {'; '.join(problems)}"
            documents.append(no_verdict(candidate, reason, ValidationStatus.VALIDATION_INCOMPLETE, calc))
            continue
        entry = PDEntry(calc.structure.composition, calc.energy, name=cid)
        decomposition, e_hull = diagram.get_decomp_and_e_above_hull(entry, allow_negative=True, check_stable=False)
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
                # Raw PBE with molecular gas references vs MP2020-corrected (or model-internal) MLIP
                # formation energies: different scales, so no formation-energy error is reported.
                formation_energy_comparable=False,
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
    expected_references: list[str] | None = None,
) -> list[ValidationDocument]:
    """Job: consistent DFT hull of one chemical system → validation documents.

    Runs even when DFT jobs upstream crashed (their outputs arrive as None), so a failure
    becomes 'validation_failed' or 'validation_incomplete' rather than a stopped campaign.
    """
    return build_consistent_hull_validations(
        candidates, calculations, stable_tolerance, metastable_threshold, expected_references or ()
    )


def direct_e_above_hull(
    energies_per_atom: Mapping[str, tuple[Composition | str, float]], label: str
) -> float:
    """e_above_hull of ``label`` from ``{label: (composition, energy per atom)}``: a plain PhaseDiagram.

    ``label`` is placed against the hull of all the others, negative allowed (the measure of
    the hull job). A small, independent check of the hull job (and a convenience for notebooks).
    """
    entries = {
        name: PDEntry(Composition(comp), energy * Composition(comp).num_atoms, name=name)
        for name, (comp, energy) in energies_per_atom.items()
    }
    diagram = PhaseDiagram([e for name, e in entries.items() if name != label])
    return float(diagram.get_e_above_hull(entries[label], allow_negative=True))


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
        n_incomplete=sum(d.status is ValidationStatus.VALIDATION_INCOMPLETE for d in documents),
        n_confirmed_stable=sum(d.status is ValidationStatus.CONFIRMED_STABLE for d in documents),
        n_confirmed_metastable=sum(d.status is ValidationStatus.CONFIRMED_METASTABLE for d in documents),
        e_above_hull_mae=mae([d.e_above_hull_error for d in validated]),
        formation_energy_mae=mae([d.formation_energy_error for d in validated]),  # None where scales differ
        mean_residual_max_force=sum(forces) / len(forces) if forces else None,
        skipped=dict(skipped or {}),
        by_rule=_by_rule(documents),
    )


def _by_rule(documents: Sequence[ValidationDocument]) -> dict[str, dict[str, int]]:
    """Picks, verdicts and confirmations per acquisition rule (the part of ``selected_by`` before the colon)."""
    rules: dict[str, dict[str, int]] = {}
    for doc in documents:
        rule = (doc.selected_by or "primary").split(":")[0]
        row = rules.setdefault(rule, {"selected": 0, "validated": 0, "confirmed_stable": 0, "confirmed_metastable": 0})
        row["selected"] += 1
        row["validated"] += int(doc.validated)
        row["confirmed_stable"] += int(doc.status is ValidationStatus.CONFIRMED_STABLE)
        row["confirmed_metastable"] += int(doc.status is ValidationStatus.CONFIRMED_METASTABLE)
    return rules
