"""The generation pipeline: sources -> sanity filters -> dedup -> candidates, as an iterator.

Sources expose deterministic *work units* (a template, a prototype, a pyxtal seed, a
file), numbered globally across a campaign's sources. A shard of consecutive units is
generated, filtered and deduplicated on its own, which is what lets a campaign generate
in parallel without any job holding campaign-sized state.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field
from pymatgen.core import Structure

from matris_flows.generation.dedup import DedupIndex
from matris_flows.generation.filters import FilterSettings, check_structure
from matris_flows.generation.schemas import (
    Candidate,
    GenerationOutput,
    GenerationReport,
    RejectedCandidate,
    RejectionReason,
)

Event = Candidate | RejectedCandidate


class CandidateSource(Protocol):
    """What the pipeline needs from a source Maker."""

    def work_units(self) -> Sequence[Any]:
        """Deterministic, cheap list of independent units of work."""

    def run_unit(self, unit: Any) -> Iterator[Event]:
        """Candidates and rejections of one unit, in a fixed order."""


class DedupSettings(BaseModel):
    """How duplicates are found (see :mod:`matris_flows.generation.dedup`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_mode: str = Field("spacegroup", description="Bucket key: 'spacegroup' (formula|sg|primitive size) or 'formula'.")
    symprec: float = Field(0.1, gt=0, description="spglib tolerance for the bucket key, Å.")
    ltol: float = Field(0.2, gt=0, description="StructureMatcher fractional length tolerance.")
    stol: float = Field(0.3, gt=0, description="StructureMatcher site tolerance.")
    angle_tol: float = Field(5.0, gt=0, description="StructureMatcher angle tolerance, degrees.")
    against_references: bool = Field(True, description="Also drop candidates matching a reference entry.")

    def new_index(self) -> DedupIndex:
        """An empty index with these settings."""
        return DedupIndex(
            key_mode=self.key_mode, symprec=self.symprec, ltol=self.ltol, stol=self.stol, angle_tol=self.angle_tol
        )


def count_units(sources: Sequence[CandidateSource]) -> list[int]:
    """Number of work units of each source; a campaign's units are numbered globally in this order."""
    return [len(source.work_units()) for source in sources]


def iter_unit_range(
    sources: Sequence[CandidateSource], start: int = 0, stop: int | None = None
) -> Iterator[Event]:
    """Events of the global work units ``[start, stop)`` (all units when ``stop`` is None)."""
    offset = 0
    for source in sources:
        units = source.work_units()
        lo, hi = max(start - offset, 0), len(units) if stop is None else min(stop - offset, len(units))
        for unit in units[lo:hi] if lo < hi else ():
            yield from source.run_unit(unit)
        offset += len(units)
        if stop is not None and offset >= stop:
            return


def normalise_references(references: Iterable[Any] | None) -> list[tuple[str, Structure]]:
    """``(id, structure)`` pairs from entries, structures, their dicts or JSON files."""
    if not references:
        return []
    from matris_flows.generation.substitution import load_templates

    return load_templates(list(references))


@dataclass
class ScreenedEvent:
    """An event with its filter verdict and dedup key worked out: the part of processing that runs native code.

    Made by :meth:`GenerationRun.screen`, which may run in an isolated child process
    (spglib and neighbour searches crash on input they cannot handle); the dedup itself
    (:meth:`GenerationRun.process`) then needs no native call but the structure matcher.
    """

    event: Event
    problem: tuple[RejectionReason, str] | None = None
    key: str | None = None


@dataclass
class GenerationRun:
    """Filters and dedups a stream of events, keeping the report; one per (streamed) job."""

    filters: FilterSettings = field(default_factory=FilterSettings)
    index: DedupIndex = field(default_factory=DedupIndex)
    report: GenerationReport = field(default_factory=GenerationReport)
    supported_elements: Collection[str] | None = None
    max_recorded_rejections: int | None = 1000

    def _reject(self, rejection: RejectedCandidate) -> None:
        self.report.record(rejection, self.max_recorded_rejections)

    def screen(self, event: Event) -> ScreenedEvent:
        """The filter verdict and dedup key of ``event`` (no state read or written: safe to run elsewhere)."""
        if isinstance(event, RejectedCandidate):
            return ScreenedEvent(event)
        problem = check_structure(event.structure, self.filters, self.supported_elements)
        return ScreenedEvent(event, problem, None if problem is not None else self.index.key(event.structure))

    def process(self, event: Event | ScreenedEvent) -> Candidate | None:
        """Return the candidate if it passes filters and is new, else record why not.

        ``event`` may come screened already (:meth:`screen`), e.g. in an isolated process.
        """
        screened = event if isinstance(event, ScreenedEvent) else self.screen(event)
        event, problem, key = screened.event, screened.problem, screened.key
        if isinstance(event, RejectedCandidate):
            self._reject(event)
            return None
        label = f"{event.candidate_id} ({event.formula}, from {event.provenance.parent_id})"
        if problem is not None:
            reason, message = problem
            self._reject(
                RejectedCandidate(
                    reason=reason, message=f"{label}: {message}", input_name=event.provenance.parent_id,
                    candidate_id=event.candidate_id, formula=event.formula, provenance=event.provenance,
                    # an invalid structure (NaN, a singular cell) is not kept: nothing downstream could read it
                    structure=None if reason is RejectionReason.INVALID_STRUCTURE else event.structure,
                )
            )
            return None
        match, is_reference = self.index.find(event.structure, key)
        if match is not None:
            reason = RejectionReason.DUPLICATE_OF_REFERENCE if is_reference else RejectionReason.DUPLICATE
            what = "reference entry" if is_reference else "candidate"
            self._reject(
                RejectedCandidate(
                    reason=reason, message=f"{label}: matches {what} {match}", input_name=event.provenance.parent_id,
                    candidate_id=event.candidate_id, formula=event.formula, duplicate_of=match,
                    provenance=event.provenance,
                )
            )
            return None
        self.index.add(event.structure, event.candidate_id, key)
        self.report.accept(event)
        return event


def iter_generation(
    sources: Sequence[CandidateSource],
    filters: FilterSettings | None = None,
    dedup: DedupSettings | None = None,
    reference_structures: Iterable[Any] | None = None,
    supported_elements: Collection[str] | None = None,
    run: GenerationRun | None = None,
) -> Iterator[Candidate]:
    """Accepted candidates, lazily, in campaign order; ``run.report`` holds the rejections."""
    dedup = dedup or DedupSettings()
    if run is None:
        run = GenerationRun(filters=filters or FilterSettings(), index=dedup.new_index(), supported_elements=supported_elements)
    if dedup.against_references:
        run.index.add_references(normalise_references(reference_structures))
    for event in iter_unit_range(sources):
        candidate = run.process(event)
        if candidate is not None:
            yield candidate


def generate_candidates(
    sources: Sequence[CandidateSource],
    filters: FilterSettings | None = None,
    dedup: DedupSettings | None = None,
    reference_structures: Iterable[Any] | None = None,
    supported_elements: Collection[str] | None = None,
    max_recorded_rejections: int | None = None,
) -> GenerationOutput:
    """Run the whole pipeline and return every candidate with the report (small campaigns)."""
    dedup = dedup or DedupSettings()
    run = GenerationRun(
        filters=filters or FilterSettings(), index=dedup.new_index(), supported_elements=supported_elements,
        max_recorded_rejections=max_recorded_rejections,
    )
    candidates = list(iter_generation(sources, dedup=dedup, reference_structures=reference_structures, run=run))
    return GenerationOutput(candidates=candidates, report=run.report)
