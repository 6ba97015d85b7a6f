"""The validation stage as one job: select candidates, then expand into the backend's DFT flow."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jobflow import Flow, Maker, Response, job
from jobflow.core.job import JobConfig
from jobflow.core.reference import OnMissing
from pymatgen.entries.computed_entries import ComputedEntry

from matris_flows.core.publishing import CANDIDATES_STORE_NAME
from matris_flows.thermo.references import MissingReferenceError
from matris_flows.validation.flows import GpawHullValidationMaker
from matris_flows.validation.hull import failed_validation_document, summarize_validations
from matris_flows.validation.schemas import ValidationDocument, ValidationReport
from matris_flows.validation.selection import SelectionSettings, select_for_validation
from matris_flows.validation.utils import slim_candidate


def _flatten(outputs: Any) -> list[ValidationDocument]:
    """Validation documents from nested backend outputs (per system lists, Nones for crashed jobs)."""
    if outputs is None:
        return []
    if isinstance(outputs, ValidationDocument):
        return [outputs]
    if isinstance(outputs, dict):
        return [ValidationDocument.model_validate(outputs)]
    return [doc for item in outputs for doc in _flatten(item)]


@job(output_schema=ValidationReport, config=JobConfig(on_missing_references=OnMissing.NONE))
def collect_validations(
    outputs: list[Any],
    selected: list[dict],
    skipped: dict[str, str],
    backend: str,
    reasons: dict[str, str] | None = None,
) -> ValidationReport:
    """Job: gather the backend's documents into one report.

    A selected candidate with no document (its hull or validation job crashed outright)
    gets a 'validation_failed' document here, so every selected candidate has a verdict.
    """
    documents = {doc.candidate_id: doc for doc in _flatten(outputs)}
    ordered = [
        documents.get(c["candidate_id"])
        or failed_validation_document(c, "validation job crashed before reporting", backend, backend.upper())
        for c in selected
    ]
    for doc in ordered:
        doc.selected_by = (reasons or {}).get(doc.candidate_id, doc.selected_by)
    return summarize_validations(ordered, skipped)


@dataclass
class ValidationMaker(Maker):
    """Optional last stage: confirm the most promising candidates with DFT.

    Parameters
    ----------
    name
        Job name.
    selection
        Which candidates go to DFT (top-k per system, e_above_hull threshold, budget).
    backend_maker
        Builds the DFT flow: :class:`GpawHullValidationMaker` (offline, consistent hull) or
        :class:`~matris_flows.validation.vasp.VaspValidationMaker` (MP settings, MP hull).
        Its ``make(candidates, reference_entries)`` returns a Flow of validation documents.
    """

    name: str = "DFT validation"
    selection: SelectionSettings = field(default_factory=SelectionSettings)
    backend_maker: Maker = field(default_factory=GpawHullValidationMaker)

    @job
    def make(
        self,
        candidates: list[Any],
        reference_entries: Sequence[ComputedEntry] | None = None,
    ) -> Response | ValidationReport:
        """Select candidates and replace this job with the backend's DFT flow.

        Args:
            candidates: Hull-stage candidate documents (objects or dicts).
            reference_entries: MP reference entries (with structures) of the candidates'
                systems: deduplication targets, and the hull (VASP) or the phases to
                recompute (GPAW).

        Returns:
            A Response replacing this job by the DFT flow, whose output is a
            :class:`ValidationReport`; the empty report directly when nothing is selected.
        """
        references = list(reference_entries or [])
        selection = select_for_validation(candidates, self.selection, references)
        if not selection.selected:
            return summarize_validations([], selection.skipped)
        selected = [slim_candidate(c) for c in selection.selected]
        backend_flow = self.backend_maker.make(selected, references)
        backend = getattr(self.backend_maker, "backend", "dft")
        collect = collect_validations(backend_flow.output, selected, selection.skipped, backend, selection.reasons)
        collect.name = f"{self.name} report"
        return Response(replace=Flow([backend_flow, collect], output=collect.output, name=self.name))


_POOL_PER_SYSTEM = 4  # candidates read per system and top_k slot: room for selection's own dedup


@job(config=JobConfig(expose_store=True, on_missing_references=OnMissing.NONE))
def validate_best(after: Any, validation_maker: Maker, references, campaign: str | None = None) -> Response:
    """Select the best candidates from the candidates store and replace this job by their DFT validation.

    Reads a bounded pool per chemical system (never the whole campaign). The reference
    entries of the selected candidates' systems serve as deduplication targets and as
    the reference phases of the DFT hull.
    """
    from jobflow import CURRENT_JOB

    store = CURRENT_JOB.store.additional_stores[CANDIDATES_STORE_NAME]
    selection = validation_maker.selection
    criteria: dict[str, Any] = {"thermo_status": "ok"}
    if campaign is not None:
        criteria["campaign"] = campaign
    # a pool per system for each ordering the selection may use, as (field within the window, sort):
    # by the primary; by the consensus, which may bring back what the primary put above the window; by the spread
    orders = [("e_above_hull", {"e_above_hull": 1})]
    if selection.acquisition == "consensus":
        orders.append(("e_above_hull_consensus", {"e_above_hull_consensus": 1}))
    if selection.explore_fraction > 0:
        orders.append(("e_above_hull", {"consensus_spread": -1}))
    windows = {value: {**criteria, value: {"$lte": selection.max_e_above_hull}} for value, _ in orders}
    systems = {chemsys for window in windows.values() for chemsys in store.distinct("chemsys", window)}
    pool: dict[str, dict] = {}
    for chemsys in sorted(systems):
        for value, sort in orders:
            for doc in store.query({**windows[value], "chemsys": chemsys}, sort=sort, limit=selection.top_k * _POOL_PER_SYSTEM):
                doc.pop("_id", None)
                pool.setdefault(doc["candidate_id"], doc)
    pool = list(pool.values())
    entries = []
    for chemsys in sorted({doc["chemsys"] for doc in pool}):
        try:
            entries.extend(references.get_entries(chemsys))
        except MissingReferenceError:  # a system without references is still validated against its elements
            continue
    return Response(replace=validation_maker.make(pool, entries))


@job(config=JobConfig(expose_store=True, on_missing_references=OnMissing.NONE))
def publish_validation(report: Any) -> int:
    """Write each validation document into its candidate document; returns how many were joined."""
    from jobflow import CURRENT_JOB

    from matris_flows.validation.join import update_candidate_store

    if report is None:
        return 0
    report = report if isinstance(report, ValidationReport) else ValidationReport.model_validate(report)
    return update_candidate_store(CURRENT_JOB.store.additional_stores[CANDIDATES_STORE_NAME], report.documents)
