"""jobflow Makers of the generation stage.

Source Makers (``SubstitutionMaker``, ``PrototypeMaker``, ``RandomSearchMaker``,
``FileSourceMaker``) each make one job that generates, filters and dedups their own
candidates, and can be combined: ``GenerationMaker(sources=[...])`` runs them as one
campaign, and ``ChunkedGenerationMaker`` streams the campaign in chunks, fanning out one
downstream job (relaxation) per chunk with ``Response(addition=...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from jobflow import Flow, Job, Maker, Response, job
from pymatgen.core import Structure

from matris_flows.generation.dedup import DedupIndex
from matris_flows.generation.filters import FilterSettings
from matris_flows.generation.files import expand_paths, iter_one_file
from matris_flows.generation.pipeline import (
    DedupSettings,
    Event,
    GenerationRun,
    generate_candidates,
    iter_events,
    normalise_references,
)
from matris_flows.generation.prototypes import iter_prototype_candidates, load_prototype_library
from matris_flows.generation.random_search import generate_random_structure, plan_random_search
from matris_flows.generation.schemas import GenerationChunk, GenerationOutput, GenerationReport
from matris_flows.generation.substitution import TemplateLike, iter_substitution_candidates, load_templates


@dataclass
class CandidateSourceMaker(Maker):
    """Base of the source Makers: work units, their events, and a job running them alone."""

    name: str = "candidate source"
    filters: FilterSettings = field(default_factory=FilterSettings)
    dedup: DedupSettings = field(default_factory=DedupSettings)

    def work_units(self) -> Sequence[Any]:
        """Deterministic list of independent units of work."""
        raise NotImplementedError

    def run_unit(self, unit: Any) -> Iterator[Event]:
        """Candidates and rejections of one unit."""
        raise NotImplementedError

    def iter_events(self) -> Iterator[Event]:
        """All unfiltered events of this source, in order."""
        for _, event in iter_events([self]):
            yield event

    @job(output_schema=GenerationOutput)
    def make(
        self,
        reference_structures: Sequence[Any] | None = None,
        supported_elements: Collection[str] | None = None,
    ) -> GenerationOutput:
        """Generate, filter and dedup this source's candidates (small campaigns: one output)."""
        return generate_candidates([self], self.filters, self.dedup, reference_structures, supported_elements)


@dataclass
class SubstitutionMaker(CandidateSourceMaker):
    """Hautier ionic substitution from templates (see :mod:`.substitution`).

    ``templates`` may be set here or passed to :meth:`make_from_templates` (e.g. the
    reference entries an upstream job loaded).
    """

    name: str = "substitution candidates"
    templates: list[TemplateLike] = field(default_factory=list)
    threshold: float = 1e-3
    max_substituted_species: int = 2
    allowed_elements: list[str] | None = None
    partial_fractions: tuple[float, ...] = ()
    max_partial_sites: int = 8
    n_orderings: int = 1
    max_per_template: int | None = None

    def _loaded(self) -> list[tuple[str, Structure]]:
        # Loading a 1000-entry chemsys file takes seconds: do it once per Maker instance.
        if getattr(self, "_templates_cache", None) is None:
            object.__setattr__(self, "_templates_cache", load_templates(self.templates))
        return self._templates_cache

    def work_units(self) -> Sequence[int]:
        """One unit per template."""
        return list(range(len(self._loaded())))

    def run_unit(self, unit: int) -> Iterator[Event]:
        """Substitutions of one template."""
        yield from iter_substitution_candidates(
            [self._loaded()[unit]], self.threshold, self.max_substituted_species, self.allowed_elements,
            self.partial_fractions, self.max_partial_sites, self.n_orderings, self.max_per_template,
        )

    def make_from_templates(
        self,
        templates: Sequence[TemplateLike],
        reference_structures: Sequence[Any] | None = None,
        supported_elements: Collection[str] | None = None,
    ) -> Job:
        """Job substituting ``templates`` (which may be an upstream job's output reference)."""
        return _substitute_templates(self, templates, reference_structures, supported_elements)


@job(output_schema=GenerationOutput)
def _substitute_templates(
    maker: SubstitutionMaker,
    templates: Sequence[TemplateLike],
    reference_structures: Sequence[Any] | None,
    supported_elements: Collection[str] | None,
) -> GenerationOutput:
    source = replace(maker, templates=list(templates))
    return generate_candidates([source], source.filters, source.dedup, reference_structures, supported_elements)


@dataclass
class PrototypeMaker(CandidateSourceMaker):
    """Decorate the shipped prototype library over element lists (see :mod:`.prototypes`).

    ``element_lists=[["Li", "Na", "K"], ["Cl", "Br"]]`` decorates every two-label
    prototype (rocksalt, CsCl, zincblende, ...); ``prototypes`` restricts the library.
    """

    name: str = "prototype candidates"
    element_lists: list[list[str]] = field(default_factory=list)
    prototypes: list[str] | None = None
    charge_balanced: bool = True
    charge_balance_method: str = "pymatgen"
    permute_lists: bool = True

    def work_units(self) -> Sequence[str]:
        """One unit per prototype; an unusable input still gets one unit to report it."""
        names = self.prototypes if self.prototypes is not None else list(load_prototype_library())
        return list(names) or ["<none>"]

    def run_unit(self, unit: str) -> Iterator[Event]:
        """Decorations of one prototype."""
        yield from iter_prototype_candidates(
            self.element_lists, [unit], self.charge_balanced, self.charge_balance_method, self.permute_lists
        )


@dataclass
class RandomSearchMaker(CandidateSourceMaker):
    """pyxtal random symmetric crystals (see :mod:`.random_search`).

    ``n_seeds`` structures per composition, formula-unit count and compatible space group.
    """

    name: str = "random search candidates"
    compositions: list[str] = field(default_factory=list)
    space_groups: list[int] = field(default_factory=lambda: list(range(2, 231)))
    formula_units: list[int] = field(default_factory=lambda: [1, 2, 4])
    n_seeds: int = 1
    seed: int = 0
    volume_factor: float = 1.1

    def work_units(self) -> Sequence[Any]:
        """Rejections for impossible inputs first, then one unit per pyxtal structure."""
        units, rejected = plan_random_search(self.compositions, self.space_groups, self.formula_units, self.n_seeds)
        return [("rejected", r) for r in rejected] + [("random", u) for u in units]

    def run_unit(self, unit: Any) -> Iterator[Event]:
        """One pyxtal structure, or the rejection of an input."""
        kind, payload = unit
        yield payload if kind == "rejected" else generate_random_structure(payload, self.seed, self.volume_factor)


@dataclass
class FileSourceMaker(CandidateSourceMaker):
    """Structures from files, folders and globs (CIF, POSCAR, extxyz, ASE db, pymatgen JSON)."""

    name: str = "file candidates"
    paths: list[str] = field(default_factory=list)
    order_disordered: bool = False
    n_orderings: int = 1

    def work_units(self) -> Sequence[tuple[str, str | None]]:
        """One unit per expanded file (or per input that names nothing)."""
        return expand_paths(self.paths)

    def run_unit(self, unit: tuple[str, str | None]) -> Iterator[Event]:
        """Structures of one file."""
        path, problem = unit
        yield from iter_one_file(path, problem, self.order_disordered, self.n_orderings)


@dataclass
class GenerationMaker(Maker):
    """All sources of a campaign in one job: filtered, deduplicated, one output document."""

    name: str = "generate candidates"
    sources: list[CandidateSourceMaker] = field(default_factory=list)
    filters: FilterSettings = field(default_factory=FilterSettings)
    dedup: DedupSettings = field(default_factory=DedupSettings)
    max_recorded_rejections: int | None = 1000

    @job(output_schema=GenerationOutput)
    def make(
        self,
        reference_structures: Sequence[Any] | None = None,
        supported_elements: Collection[str] | None = None,
    ) -> GenerationOutput:
        """Generate the campaign's candidates.

        Args:
            reference_structures: known phases (MP entries, structures, or JSON files of
                them); candidates matching one are dropped as ``duplicate_of_reference``.
            supported_elements: elements the chosen potential supports (None = no filter).
        """
        return generate_candidates(
            self.sources, self.filters, self.dedup, reference_structures, supported_elements,
            self.max_recorded_rejections,
        )


ChunkMaker = Callable[[list[Structure], list[str]], Job | Flow] | Maker


def make_chunk_job(chunk_maker: ChunkMaker, structures: list[Structure], candidate_ids: list[str]) -> Job | Flow:
    """Build the downstream job of one chunk from a Maker (``.make(structures, ids)``) or a callable."""
    if isinstance(chunk_maker, Maker):
        return chunk_maker.make(structures, candidate_ids)
    return chunk_maker(structures, candidate_ids)


@dataclass
class ChunkedGenerationMaker(GenerationMaker):
    """Stream a campaign in chunks of ``chunk_size`` candidates.

    Each job generates one chunk, then adds (``Response(addition=...)``) the chunk's
    downstream job, built by ``chunk_maker(structures, candidate_ids)`` (e.g.
    ``RelaxMaker()``), and the job for the next chunk, which resumes the sources at the
    saved cursor with the dedup index of everything accepted so far. No job holds more
    than one chunk of structures, and relaxation of chunk k runs while chunk k+1 is being
    generated. The output of every job is a :class:`GenerationChunk`; its report is
    cumulative, so the last chunk's report covers the campaign.
    """

    name: str = "generate candidates (chunked)"
    chunk_size: int = 500
    collect_outputs: bool = False
    """Replace each chunk job by (chunk job, next chunk) instead of adding them, so that a
    downstream job that references this job's output waits for the whole stream and gets
    ``{"chunk": <chunk job output>, "report": ..., "next": <next level or None>}``
    (see :func:`iter_stream_outputs`)."""

    # No output_schema: with collect_outputs the replacement flow's output (a stream dict)
    # becomes this job's output, and jobflow would validate it against the chunk schema.
    @job
    def make(
        self,
        chunk_maker: ChunkMaker | None = None,
        reference_structures: Sequence[Any] | None = None,
        supported_elements: Collection[str] | None = None,
        cursor: tuple[int, int, int] | list[int] = (0, 0, 0),
        state: dict[str, Any] | None = None,
        chunk_index: int = 0,
    ) -> Response:
        """Generate chunk ``chunk_index`` from ``cursor`` and add the follow-up jobs.

        ``cursor``, ``state`` and ``chunk_index`` are set by the previous chunk's job;
        callers start a campaign with the defaults.
        """
        index = DedupIndex.from_state(state["index"]) if state else self.dedup.new_index()
        report = GenerationReport.model_validate(state["report"]) if state else GenerationReport()
        if self.dedup.against_references:
            index.add_references(normalise_references(reference_structures))
        run = GenerationRun(
            filters=self.filters, index=index, report=report, supported_elements=supported_elements,
            max_recorded_rejections=self.max_recorded_rejections,
        )
        chunk = []
        position = tuple(cursor)
        exhausted = True
        for position, event in iter_events(self.sources, position):
            candidate = run.process(event)
            if candidate is not None:
                chunk.append(candidate)
                if len(chunk) >= self.chunk_size:
                    exhausted = False
                    break
        # A chunk filled by the very last event looks unfinished; the next job then finds
        # nothing and ends the stream with an empty last chunk, which is harmless.
        ids = [c.candidate_id for c in chunk]
        output = GenerationChunk(
            chunk_index=chunk_index, candidates=chunk, candidate_ids=ids, is_last=exhausted, report=run.report
        )
        additions: list[Job | Flow] = []
        if chunk and chunk_maker is not None:
            additions.append(make_chunk_job(chunk_maker, [c.structure for c in chunk], ids))
        if not exhausted:
            next_job = self.make(
                chunk_maker, reference_structures, supported_elements, cursor=list(position),
                state={"index": index.to_state(), "report": run.report.model_dump(mode="json")},
                chunk_index=chunk_index + 1,
            )
            next_job.name = f"{self.name} {chunk_index + 1}"
            additions.append(next_job)
        if not additions:
            return Response(output=output)
        follow_up = f"{self.name} after chunk {chunk_index}"
        if self.collect_outputs:
            chunk_output = additions[0].output if chunk and chunk_maker is not None else None
            stream = {
                "chunk": chunk_output,
                "report": output.report,
                "next": next_job.output if not exhausted else None,
            }
            return Response(output=output, replace=Flow(additions, output=stream, name=follow_up))
        return Response(output=output, addition=Flow(additions, name=follow_up))


def iter_stream_outputs(stream: dict[str, Any] | GenerationChunk | None) -> Iterator[tuple[Any, GenerationReport | None]]:
    """Walk a collected stream (see ``ChunkedGenerationMaker.collect_outputs``) iteratively.

    Yields ``(chunk job output, cumulative report)`` per chunk, in chunk order; the last
    report covers the whole campaign. A stream that produced no candidates is a bare
    :class:`GenerationChunk`, yielded as ``(None, report)``.
    """
    while stream is not None:
        if isinstance(stream, GenerationChunk) or (isinstance(stream, dict) and "chunk_index" in stream):
            chunk = stream if isinstance(stream, GenerationChunk) else GenerationChunk.model_validate(stream)
            yield None, chunk.report
            return
        report = stream["report"]
        yield stream["chunk"], report if isinstance(report, GenerationReport) else GenerationReport.model_validate(report)
        stream = stream["next"]
