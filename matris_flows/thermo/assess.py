"""Turn relaxation documents into candidate documents with hull energies.

Candidates are grouped by the maximal chemical systems of the campaign (Li-O and
Fe-O candidates ride on the Li-Fe-O hull when Li-Fe-O candidates exist), so one
reference phase diagram and one campaign phase diagram are built per group and
reused for every candidate in it.
"""

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from pymatgen.entries import Entry
from pymatgen.entries.computed_entries import ComputedStructureEntry

from matris_flows.core.chemsys import chemsys_of, within
from matris_flows.core.symmetry import spacegroup_number
from matris_flows.generation.schemas import Provenance
from matris_flows.potentials.naming import EnergyConvention
from matris_flows.relax.schemas import RelaxationDocument, RelaxationSummary, RelaxStatus
from matris_flows.thermo.hull import PATCH_ABOVE_N_ELEMENTS, HullEnergy, HullIndex, energy_above_hull
from matris_flows.thermo.known_phases import match_known_phases
from matris_flows.thermo.mp_compat import build_computed_entry, correct_entry, uses_mp_hull
from matris_flows.thermo.references import MissingReferenceError, ReferenceProvider
from matris_flows.thermo.schemas import (
    CandidateDocument,
    DecompositionProduct,
    HullKind,
    ReferenceProvenance,
    ThermoStatus,
)

logger = logging.getLogger(__name__)


def flatten_relaxations(outputs: object) -> list[RelaxationDocument]:
    """RelaxationDocument-s from a document, a RelaxBatchOutput, dicts of either, or nested lists of these."""
    if outputs is None:
        return []
    if isinstance(outputs, RelaxationDocument):
        return [outputs]
    if hasattr(outputs, "documents"):  # RelaxBatchOutput
        return flatten_relaxations(outputs.documents)
    if isinstance(outputs, dict):
        if "documents" in outputs:
            return flatten_relaxations(outputs["documents"])
        return [RelaxationDocument.model_validate(outputs)]
    if isinstance(outputs, Iterable) and not isinstance(outputs, str | bytes):
        return [doc for item in outputs for doc in flatten_relaxations(item)]
    raise TypeError(f"Cannot read relaxation documents from {type(outputs).__name__}.")


def maximal_systems(systems: Iterable[frozenset[str]]) -> list[frozenset[str]]:
    """Systems not strictly contained in another one (largest first, then alphabetical)."""
    ordered = sorted(set(systems), key=lambda s: (-len(s), chemsys_of(s)))
    containing: dict[str, set[int]] = defaultdict(set)  # element -> maximal systems that have it
    maximal: list[frozenset[str]] = []
    for system in ordered:
        supersets = set.intersection(*(containing[el] for el in system)) if system else set()
        if not any(len(maximal[k]) > len(system) for k in supersets):
            for el in system:
                containing[el].add(len(maximal))
            maximal.append(system)
    return maximal


@dataclass(frozen=True)
class DocumentContext:
    """What a candidate document records besides its relaxation: campaign, threshold, provenance.

    ``allow_unconverged`` lets an unconverged relaxation be called stable (off by default:
    its energy is that of the last optimizer step, not of a minimum).
    """

    stability_threshold: float = 0.0
    campaign: str | None = None
    relax_job: str | None = None
    provenance: dict[str, Provenance | None] | None = None
    allow_unconverged: bool = False


def relaxation_converged(relaxation: RelaxationSummary | RelaxationDocument | dict | None) -> bool:
    """Whether a relaxation (model or stored dict) converged: its ``converged`` flag where it has one, else its status."""
    if relaxation is None:
        return False
    get = relaxation.get if isinstance(relaxation, dict) else lambda key: getattr(relaxation, key, None)
    flag = get("converged")
    if flag is not None:
        return bool(flag)
    status = get("status")
    return str(getattr(status, "value", status)) == RelaxStatus.CONVERGED.value


def stability_allowed(relaxation: RelaxationSummary | RelaxationDocument | dict | None, allow_unconverged: bool) -> bool:
    """Whether a candidate with this relaxation may be called stable at all (gate of ``is_stable*``)."""
    return allow_unconverged or relaxation_converged(relaxation)


def _base_fields(doc: RelaxationDocument, context: DocumentContext) -> dict:
    structure = doc.structure
    return {
        "candidate_id": doc.candidate_id,
        "campaign": context.campaign,
        "formula": doc.formula,
        "chemsys": doc.chemsys,
        "elements": sorted(doc.chemsys.split("-")),
        "nsites": len(structure) if structure is not None else doc.nsites,
        "spacegroup": spacegroup_number(structure) if structure is not None else None,
        "structure": structure,
        "provenance": (context.provenance or {}).get(doc.candidate_id),
        "energy_per_atom": doc.energy_per_atom,
        "stability_threshold": context.stability_threshold,
        "relaxation": doc.summary(context.relax_job),
    }


def unassessed_candidate(
    doc: RelaxationDocument, context: DocumentContext, status: ThermoStatus, reason: str
) -> CandidateDocument:
    """The document of a candidate that got no hull energy (``status``), saying why."""
    return CandidateDocument(**_base_fields(doc, context), thermo_status=status, thermo_failure_reason=reason)


def _products(result: HullEnergy) -> list[DecompositionProduct]:
    products = []
    for entry, amount in sorted(result.decomposition, key=lambda pair: -pair[1]):
        data = getattr(entry, "data", {}) or {}
        products.append(
            DecompositionProduct(
                formula=entry.composition.reduced_formula,
                material_id=data.get("material_id") or data.get("candidate_id"),
                entry_id=entry.entry_id,
                amount=amount,
            )
        )
    return products


def single_convention(documents: Sequence[RelaxationDocument]) -> tuple[str, EnergyConvention] | None:
    """The one potential (and its convention) behind ``documents``; a hull must not mix potentials."""
    potentials = {(d.potential.name, d.potential.energy_convention) for d in documents if d.succeeded}
    if len(potentials) > 1:
        raise ValueError(
            "One hull job must not mix potentials (their energies are on different scales): "
            + ", ".join(sorted(f"{name} ({conv})" for name, conv in potentials))
        )
    return next(iter(potentials), None)


def assess_candidates(
    relaxations: object,
    references: ReferenceProvider,
    stability_threshold: float = 0.0,
    campaign_references: Callable[[], ReferenceProvider] | ReferenceProvider | None = None,
    raise_on_missing_reference: bool = False,
    patch_above_n_elements: int = PATCH_ABOVE_N_ELEMENTS,
    campaign_hull: bool = True,
    context: DocumentContext | None = None,
    match_references: bool = True,
) -> list[CandidateDocument]:
    """Hull energies for relaxed candidates, one CandidateDocument per relaxation, in input order.

    Args:
        relaxations: RelaxationDocument-s, RelaxBatchOutput-s or (nested) lists of them.
        references: Reference provider for potentials whose energies are MP-compatible.
        stability_threshold: ``is_stable`` means ``e_above_hull <= stability_threshold`` (eV/atom).
        campaign_references: Provider (or a zero-argument factory of one, called only when
            needed) of campaign-internal references, used when the potential's energies are
            not MP-compatible but ``references`` is an MP hull.
        raise_on_missing_reference: Raise MissingReferenceError instead of writing
            ``no_reference`` documents.
        patch_above_n_elements: Use a PatchedPhaseDiagram above this many elements.
        campaign_hull: Also compute ``e_above_hull_campaign`` against the references plus
            all of ``relaxations`` (standalone use). A campaign computes it once for all its
            candidates instead (:mod:`matris_flows.thermo.campaign_hull`), so its per-chunk
            hull jobs turn this off.
        context: Campaign name, relaxation job, generation provenance and ``allow_unconverged``.
            Unconverged relaxations are never ``is_stable``/``is_stable_campaign`` unless
            ``context.allow_unconverged``.
        match_references: Compare each relaxed structure with the structures of
            ``references`` of its reduced formula and record the match in
            ``matches_reference`` (known phases are not discoveries).
    """
    context = context or DocumentContext(stability_threshold=stability_threshold)
    if context.stability_threshold != stability_threshold:
        context = replace(context, stability_threshold=stability_threshold)
    documents = flatten_relaxations(relaxations)
    out: list[CandidateDocument | None] = [None] * len(documents)
    potential = single_convention(documents)

    provider, note = references, None
    if potential is not None:
        name, convention = potential
        if references.hull_kind is HullKind.MP and not uses_mp_hull(convention):
            if campaign_references is None:
                raise ValueError(
                    f"Energies of {name} are {convention.value}: they cannot be compared with MP entries. "
                    "Give a consistent reference set (ConsistentReferencesMaker, as a campaign does) or elemental_references "
                    "(relax_elemental_references)."
                )
            provider = campaign_references if hasattr(campaign_references, "get_entries") else campaign_references()
            note = f"{name} energies are {convention.value}: only a campaign-internal hull is valid."
    hull_kind = provider.hull_kind

    # 1. entries on the reference's energy scale; failures and rejections become documents now
    entries: dict[int, ComputedStructureEntry] = {}
    for i, doc in enumerate(documents):
        if not doc.succeeded:
            reason = f"relaxation {doc.status.value}: {doc.failure_reason or 'no energy'}"
            out[i] = unassessed_candidate(doc, context, ThermoStatus.RELAX_FAILED, reason)
            continue
        base = _base_fields(doc, context)
        entry = build_computed_entry(doc.structure, doc.energy, doc.candidate_id, {"candidate_id": doc.candidate_id})
        corrected = correct_entry(entry, doc.potential.energy_convention)
        if not corrected.ok:
            out[i] = CandidateDocument(
                **base,
                hull_kind=hull_kind,
                thermo_status=ThermoStatus.REJECTED,
                thermo_failure_reason=corrected.rejected_reason,
            )
            continue
        entries[i] = corrected.entry

    # 2. one reference and one campaign hull per maximal chemical system
    ids = list(entries)
    results = assess_entries(
        [entries[i] for i in ids], provider, raise_on_missing_reference, patch_above_n_elements, campaign_hull
    )
    for i, result in zip(ids, results, strict=True):
        base = _base_fields(documents[i], context)
        if result.error is not None:
            out[i] = CandidateDocument(
                **base,
                hull_kind=hull_kind,
                thermo_status=ThermoStatus.NO_REFERENCE,
                thermo_failure_reason=str(result.error),
            )
            continue
        provenance = result.provenance.model_copy(update={"note": note}) if note else result.provenance
        allowed = stability_allowed(documents[i], context.allow_unconverged)
        out[i] = _candidate(base, entries[i], result, stability_threshold if allowed else None, hull_kind, provenance)

    # 3. known phases: the relaxed structure against the reference structures of its formula
    if match_references:
        relaxed = [(d.candidate_id, d.structure) for d in documents if d.succeeded and d.structure is not None]
        # the generated structure too: an input that is a reference phase is known wherever the model relaxes it
        matches = match_known_phases(relaxed, references, generated={d.candidate_id: d.input_structure for d in documents})
        for doc in out:
            doc.matches_reference = matches.get(doc.candidate_id)  # type: ignore[union-attr]
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class HullAssessment:
    """Hull energies of one entry against the reference and the campaign hull, or why there are none."""

    reference: HullEnergy | None = None
    campaign: HullEnergy | None = None
    provenance: ReferenceProvenance | None = None
    error: MissingReferenceError | None = None


_HULL_CACHE: dict[tuple, tuple[HullIndex, list[Entry]]] = {}
_HULL_CACHE_SIZE = 256  # reference hulls kept per process: a worker's chunks share their systems


def reference_hull(
    references: ReferenceProvider, system: frozenset[str], patch_above_n_elements: int = PATCH_ABOVE_N_ELEMENTS
) -> tuple[HullIndex, list[Entry]]:
    """The reference hull of ``system`` and its entries, cached per process for cacheable providers.

    Raises MissingReferenceError like the provider.
    """
    cache_key = getattr(references, "cache_key", None)
    key = None if cache_key is None else (cache_key, system, patch_above_n_elements)
    if key is not None and key in _HULL_CACHE:
        return _HULL_CACHE[key]
    ref_entries = references.get_entries(chemsys_of(system))
    result = HullIndex.from_entries(ref_entries, sorted(system), patch_above_n_elements), ref_entries
    if key is not None:
        if len(_HULL_CACHE) >= _HULL_CACHE_SIZE:
            _HULL_CACHE.pop(next(iter(_HULL_CACHE)))
        _HULL_CACHE[key] = result
    return result


def assess_entries(
    entries: Sequence[Entry],
    references: ReferenceProvider,
    raise_on_missing_reference: bool = False,
    patch_above_n_elements: int = PATCH_ABOVE_N_ELEMENTS,
    campaign_hull: bool = True,
) -> list[HullAssessment]:
    """Energies above the reference hull and (``campaign_hull``) the hull of references + all ``entries``.

    Entries must already be on the references' energy scale. One phase diagram pair
    is built per maximal chemical system and reused for all entries in it; entries of
    a system without references fall back to their own, smaller system before they
    are reported as missing.
    """
    by_system: dict[frozenset[str], list[int]] = defaultdict(list)
    for i, entry in enumerate(entries):
        by_system[frozenset(el.symbol for el in entry.elements)].append(i)
    out: list[HullAssessment | None] = [None] * len(entries)
    failed: dict[frozenset[str], MissingReferenceError] = {}

    def hull_group(system: frozenset[str]) -> None:
        members = within(by_system, system)
        todo = [i for i in members if out[i] is None]
        if not todo:
            return
        chemsys = chemsys_of(system)
        try:
            ref_hull, ref_entries = reference_hull(references, system, patch_above_n_elements)
        except MissingReferenceError as exc:
            if raise_on_missing_reference:
                raise
            logger.warning("%s", exc)
            failed[system] = exc
            return
        todo_entries = [entries[i] for i in todo]
        vs_reference = energy_above_hull(ref_hull, todo_entries)
        vs_campaign: list[HullEnergy | None] = [None] * len(todo)
        if campaign_hull:
            with_candidates = HullIndex.from_entries(
                [*ref_entries, *(entries[i] for i in members)], sorted(system), patch_above_n_elements
            )
            vs_campaign = energy_above_hull(with_candidates, todo_entries, with_decomposition=False)
        provenance = references.provenance(chemsys, len(ref_entries))
        for i, ref, camp in zip(todo, vs_reference, vs_campaign, strict=True):
            out[i] = HullAssessment(ref, camp, provenance)

    for system in maximal_systems(by_system):
        hull_group(system)
    remaining = [s for s, idxs in by_system.items() if any(out[i] is None for i in idxs)]
    for system in sorted(remaining, key=lambda s: (-len(s), chemsys_of(s))):
        if system not in failed:
            hull_group(system)
    for system, idxs in by_system.items():
        for i in idxs:
            if out[i] is None:
                error = failed.get(system) or next(e for s, e in failed.items() if system <= s)
                out[i] = HullAssessment(error=error)
    return out  # type: ignore[return-value]


def _candidate(
    base: dict,
    entry: ComputedStructureEntry,
    result: HullAssessment,
    threshold: float | None,
    hull_kind: HullKind,
    provenance: ReferenceProvenance,
) -> CandidateDocument:
    """The document of an assessed candidate; ``threshold`` None: never stable (e.g. unconverged)."""
    ref, camp = result.reference, result.campaign

    def stable(e_above_hull: float) -> bool:
        return threshold is not None and e_above_hull <= threshold

    return CandidateDocument(
        **base,
        corrected_energy_per_atom=entry.energy_per_atom,
        energy_correction_per_atom=entry.correction_per_atom,
        formation_energy_per_atom=ref.formation_energy_per_atom,
        e_above_hull=ref.e_above_hull,
        e_above_hull_campaign=None if camp is None else camp.e_above_hull,
        is_stable_campaign=None if camp is None else stable(camp.e_above_hull),
        decomposes_to=_products(ref),
        is_stable=stable(ref.e_above_hull),
        hull_kind=hull_kind,
        thermo_status=ThermoStatus.OK,
        reference=provenance,
    )
