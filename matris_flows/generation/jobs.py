"""jobflow Makers of the generation stage.

Source Makers (``SubstitutionMaker``, ``PrototypeMaker``, ``RandomSearchMaker``,
``FileSourceMaker``) each make one job that generates, filters and dedups their own
candidates; the settings a campaign spec can give take their defaults from
:mod:`.source_settings`. ``ShardedGenerationMaker`` combines the sources and runs a
campaign of any size as a flat, parallel fan-out: a planning job splits the sources' work
units into shards and adds one job per shard, holding that shard's own units (a file is
its path and content digest, not a place in a listing); each shard job generates and
deduplicates its units and is replaced by one downstream job (relaxation and hull) per
chunk of its candidates.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any

from jobflow import Flow, Job, Maker, OutputReference, Response, job
from pymatgen.core import Structure

from matris_flows.core.isolation import ItemFailure, map_isolated, sandbox, worker_memory_limit
from matris_flows.generation.files import FileUnit, iter_one_file, list_file_units
from matris_flows.generation.filters import FilterSettings
from matris_flows.generation.pipeline import (
    DedupSettings,
    Event,
    GenerationRun,
    ScreenedEvent,
    generate_candidates,
    iter_unit_range,
    normalise_references,
)
from matris_flows.generation.prototypes import iter_prototype_candidates, load_prototype_library
from matris_flows.generation.random_search import generate_random_structure, plan_random_search
from matris_flows.generation.schemas import (
    Candidate,
    CandidateChunk,
    GenerationOutput,
    GenerationPlan,
    GenerationShard,
    RejectedCandidate,
    RejectionReason,
)
from matris_flows.generation.source_settings import (
    FileSource,
    PrototypeSource,
    RandomSearchSource,
    SubstitutionSource,
    field_default,
)
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

    def unit_keys(self) -> list[Any]:
        """JSON-able identities of the work units, in order: what a planned shard hands its job.

        Positions by default, for sources whose units follow from their settings alone;
        a source whose units come from outside (files) names them by what they are.
        """
        return list(range(len(self.work_units())))

    def units_from_keys(self, keys: Sequence[Any]) -> list[Any]:
        """The work units that ``keys`` (from :meth:`unit_keys`) name, in order."""
        units = self.work_units()
        return [units[key] for key in keys]

    def iter_events(self) -> Iterator[Event]:
        """All unfiltered events of this source, in order."""
        yield from iter_unit_range([self])

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
    """Hautier ionic substitution from templates (see :mod:`.substitution`)."""

    name: str = "substitution candidates"
    templates: list[TemplateLike] = field(default_factory=list)
    threshold: float = field_default(SubstitutionSource, "threshold")
    max_substituted_species: int = field_default(SubstitutionSource, "max_substituted_species")
    allowed_elements: list[str] | None = field_default(SubstitutionSource, "allowed_elements")
    partial_fractions: tuple[float, ...] = tuple(field_default(SubstitutionSource, "partial_fractions"))
    max_partial_sites: int = 8
    n_orderings: int = 1
    max_per_template: int | None = field_default(SubstitutionSource, "max_per_template")
    max_templates: int | None = field_default(SubstitutionSource, "max_templates")
    max_template_atoms: int | None = field_default(SubstitutionSource, "max_template_atoms")

    def _loaded(self) -> list[tuple[str, Structure]]:
        # Loading a 1000-entry chemsys file takes seconds: once per Maker instance, and once
        # per process for file templates (every shard job of a campaign loads the same files).
        if getattr(self, "_templates_cache", None) is None:
            if all(isinstance(t, str) for t in self.templates):
                loaded = list(_load_template_files(tuple(self.templates)))
            else:
                loaded = load_templates(self.templates)
            object.__setattr__(self, "_templates_cache", select_templates(loaded, self.max_templates, self.max_template_atoms))
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


@lru_cache(maxsize=8)
def _load_template_files(paths: tuple[str, ...]) -> tuple[tuple[str, Structure], ...]:
    return tuple(load_templates(list(paths)))


def select_templates(
    templates: list[tuple[str, Structure]], max_templates: int | None, max_atoms: int | None
) -> list[tuple[str, Structure]]:
    """All templates, or, when capped, the smallest compounds (elements carry no oxidation states to substitute)."""
    if max_templates is None and max_atoms is None:
        return templates
    kept = [t for t in templates if len(t[1].composition.elements) > 1 and (max_atoms is None or len(t[1]) <= max_atoms)]
    kept.sort(key=lambda t: (len(t[1]), t[0]))
    return kept[:max_templates]


@dataclass
class PrototypeMaker(CandidateSourceMaker):
    """Decorate the shipped prototype library over element lists (see :mod:`.prototypes`).

    ``element_lists=[["Li", "Na", "K"], ["Cl", "Br"]]`` decorates every two-label
    prototype (rocksalt, CsCl, zincblende, ...); ``prototypes`` restricts the library.
    """

    name: str = "prototype candidates"
    element_lists: list[list[str]] = field(default_factory=list)
    prototypes: list[str] | None = field_default(PrototypeSource, "prototypes")
    charge_balanced: bool = field_default(PrototypeSource, "charge_balanced")
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
    space_groups: list[int] = field(default_factory=partial(field_default, RandomSearchSource, "space_groups"))
    formula_units: list[int] = field(default_factory=partial(field_default, RandomSearchSource, "formula_units"))
    n_seeds: int = field_default(RandomSearchSource, "n_seeds")
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
    order_disordered: bool = field_default(FileSource, "order_disordered")
    n_orderings: int = 1

    def work_units(self) -> Sequence[FileUnit]:
        """One unit per expanded file, ``(path, content digest, None)``, or per input that names nothing."""
        return list_file_units(self.paths)

    def unit_keys(self) -> list[Any]:
        """The units themselves: a file is its path and content digest, never its place in a folder listing."""
        return [list(unit) for unit in self.work_units()]

    def units_from_keys(self, keys: Sequence[Any]) -> list[FileUnit]:
        """The units of ``keys`` as they are: nothing is listed again, so deleted or added files shift nothing."""
        return [tuple(key) for key in keys]

    def run_unit(self, unit: FileUnit) -> Iterator[Event]:
        """Structures of one file; a rejection if it was deleted or changed since its digest was taken."""
        path, digest, problem = unit
        yield from iter_one_file(path, problem, self.order_disordered, self.n_orderings, digest)


CHUNK_METADATA = "generation_chunk"
"""Metadata key of every job built for a chunk: ``{"shard_job": <shard job uuid>, "chunk": <index>}``."""

ChunkMaker = Callable[..., Job | Flow] | Maker
"""Builds the downstream job(s) of one chunk from references to its structures and candidate ids
(and its generation provenance, when ``make`` takes a ``provenance`` argument)."""


def make_chunk_job(chunk_maker: ChunkMaker, chunk: Any) -> Job | Flow:
    """Build the downstream job of one chunk (a :class:`CandidateChunk` or a reference to one).

    A Maker's ``make(structures, candidate_ids[, provenance])`` or a callable with the same
    arguments.
    """
    make = chunk_maker.make if isinstance(chunk_maker, Maker) else chunk_maker
    if "provenance" in inspect.signature(make).parameters:
        return make(chunk.structures, chunk.candidate_ids, provenance=chunk.provenance)
    return make(chunk.structures, chunk.candidate_ids)


def shard_unit_events(source: CandidateSourceMaker, unit: Any) -> list[Event]:
    """Unfiltered candidates and rejections of one work unit: what a shard job generates at a time."""
    return list(source.run_unit(unit))


def screen_units(
    units: Sequence[tuple[CandidateSourceMaker, Any]],
    *,
    filters: FilterSettings,
    dedup: DedupSettings,
    supported_elements: Collection[str] | None,
) -> list[list[ScreenedEvent]]:
    """Generate each ``(source, unit)`` and screen its events (filters, dedup key): everything that runs native code.

    Stateless, so a shard job can run it in an isolated child process, a unit at a time
    after a crash; the dedup against earlier candidates stays in the job.
    """
    run = GenerationRun(filters=filters, index=dedup.new_index(), supported_elements=supported_elements)
    return [[run.screen(event) for event in shard_unit_events(source, unit)] for source, unit in units]


def unit_label(source: CandidateSourceMaker, unit: Any) -> str:
    """How a rejection names a work unit: a file by its path, other units by their source and key."""
    if isinstance(source, FileSourceMaker):
        return str(unit[0])
    return f"{source.name} unit {unit!r}"


def split_evenly(n: int, max_size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges covering ``n`` items in as few near-equal parts of at most ``max_size``."""
    if n <= 0:
        return []
    parts = math.ceil(n / max(1, max_size))
    bounds = [round(k * n / parts) for k in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


@dataclass
class ShardedGenerationMaker(Maker):
    """Generate a campaign of any size as a flat, parallel fan-out of shards.

    The planning job (``make``) lists the sources' work units and adds one job per shard
    of consecutive units, each with its own units as an argument (:meth:`plan`). A shard
    job generates, filters and deduplicates its units one at a time (:func:`shard_unit_events`),
    splits its candidates into chunks and is replaced by ``chunk_maker(structures, candidate_ids)``
    (e.g. relaxation + hull) for each chunk. Nesting depth is constant (plan → shard →
    chunk) whatever the campaign size, no job input or output holds more than one shard,
    and the candidates themselves go to the ``data`` store.

    Duplicates are removed within a shard; two structures of different reduced formulas
    are never duplicates, and what two shards both propose is caught after relaxation
    (per chemical system, by the campaign-wide steps).

    Parameters
    ----------
    sources
        The campaign's source Makers; their work units are numbered in this order.
    filters, dedup
        Sanity filters and duplicate detection applied to every shard.
    max_recorded_rejections
        Rejections kept with their details per shard (counts are always exact).
    chunk_size
        Largest number of candidates per chunk job.
    parallelism
        Workers the campaign runs on. Chunks are sized so that every worker gets about
        ``chunks_per_worker`` chunks: ``min(chunk_size, ceil(n / (chunks_per_worker * parallelism)))``.
    chunks_per_worker
        Target chunks per worker (more: better balance, more jobs).
    shards_per_worker
        Target generation shards per worker, so that generation runs in parallel too.
    isolate
        Generate and screen the units in a child process watched from outside
        (:mod:`matris_flows.core.isolation`): a unit that crashes native code, hangs or
        overfills memory becomes a ``crashed`` rejection naming it, and the rest of the
        shard goes on.
    unit_timeout_s
        Wall-time limit per work unit, s, when isolated.
    """

    name: str = "generate candidates"
    sources: list[CandidateSourceMaker] = field(default_factory=list)
    filters: FilterSettings = field(default_factory=FilterSettings)
    dedup: DedupSettings = field(default_factory=DedupSettings)
    max_recorded_rejections: int | None = 10
    chunk_size: int = 200
    parallelism: int = 1
    chunks_per_worker: int = 2
    shards_per_worker: int = 4
    isolate: bool = True
    unit_timeout_s: float = 600.0

    def plan(self) -> tuple[GenerationPlan, list[list[list[Any]]]]:
        """Split the sources' work units into shards: the plan, and each shard's ``[source index, unit key]`` pairs.

        Cheap: units are listed (files hashed), not run. The units are resolved here, once,
        and each shard job gets its own (:meth:`CandidateSourceMaker.unit_keys`): a shard
        job that runs again on resume processes exactly the units it was planned with, so
        files deleted, added or changed in between neither make it repeat a unit another
        shard did nor skip one.
        """
        keys = [source.unit_keys() for source in self.sources]
        units = [[index, key] for index, source_keys in enumerate(keys) for key in source_keys]
        total = len(units)
        # A shard holds at most chunk_size units, so that one shard is about one chunk for
        # sources with one structure per unit (files, pyxtal seeds) and no shard document grows.
        units_per_shard = min(max(1, math.ceil(total / (self.shards_per_worker * max(1, self.parallelism)))), self.chunk_size)
        plan = GenerationPlan(
            n_units=[len(source_keys) for source_keys in keys],
            n_shards=math.ceil(total / units_per_shard),
            units_per_shard=units_per_shard,
            chunk_size=self.chunk_size,
            parallelism=self.parallelism,
        )
        return plan, [units[start : start + units_per_shard] for start in range(0, total, units_per_shard)]

    def resolve_units(self, units: Sequence[Sequence[Any]]) -> list[tuple[CandidateSourceMaker, Any]]:
        """``(source, work unit)`` of each ``[source index, unit key]`` pair, in order (one lookup per source)."""
        keys: dict[int, list[Any]] = {}
        for index, key in units:
            keys.setdefault(index, []).append(key)
        resolved = {index: iter(self.sources[index].units_from_keys(source_keys)) for index, source_keys in keys.items()}
        return [(self.sources[index], next(resolved[index])) for index, _ in units]

    def _screen(
        self, items: list[tuple[CandidateSourceMaker, Any]], supported_elements: Collection[str] | None
    ) -> list[list[ScreenedEvent] | ItemFailure]:
        """:func:`screen_units` of each item, isolated unless ``isolate`` is off (all in one call, one by one after a crash)."""
        screen = partial(screen_units, filters=self.filters, dedup=self.dedup, supported_elements=supported_elements)
        if not self.isolate:
            return screen(items)
        with sandbox(worker_memory_limit()) as box:
            return map_isolated(box, screen, items, timeout_s=lambda some: self.unit_timeout_s * len(some), together=True)

    @job(output_schema=GenerationPlan)
    def make(
        self,
        chunk_maker: ChunkMaker | None = None,
        reference_structures: Sequence[Any] | None = None,
        supported_elements: Collection[str] | None = None,
    ) -> Response:
        """Plan the shards and add one generation job per shard, holding that shard's units."""
        plan, shard_units = self.plan()
        shards = []
        for index, units in enumerate(shard_units):
            shard = self.make_shard(plan, index, chunk_maker, reference_structures, supported_elements, units=units)
            shard.name = f"{self.name} shard {index}"
            shards.append(shard)
        if not shards:
            return Response(output=plan)
        return Response(output=plan, addition=Flow(shards, name=f"{self.name} shards"))

    @job(output_schema=GenerationShard, data="chunks")
    def make_shard(
        self,
        plan: GenerationPlan,
        shard_index: int,
        chunk_maker: ChunkMaker | None = None,
        reference_structures: Sequence[Any] | None = None,
        supported_elements: Collection[str] | None = None,
        units: Sequence[Sequence[Any]] | None = None,
    ) -> Response:
        """Generate shard ``shard_index`` of ``plan``; replace this job by one ``chunk_maker`` job per chunk.

        ``units`` are the shard's ``[source index, unit key]`` pairs from :meth:`plan`.
        """
        from jobflow import CURRENT_JOB

        start = shard_index * plan.units_per_shard
        stop = min(start + plan.units_per_shard, sum(plan.n_units))
        if units is None:  # a shard planned before shards carried their units: its place in today's listing
            units = [[i, key] for i, source in enumerate(self.sources) for key in source.unit_keys()][start:stop]
        run = GenerationRun(
            filters=self.filters, index=self.dedup.new_index(), supported_elements=supported_elements,
            max_recorded_rejections=self.max_recorded_rejections,
        )
        if self.dedup.against_references:
            run.index.add_references(normalise_references(reference_structures))
        candidates: list[Candidate] = []
        items = self.resolve_units(units)
        for (source, unit), screened in zip(items, self._screen(items, supported_elements), strict=True):
            if isinstance(screened, ItemFailure):
                label = unit_label(source, unit)
                message = f"{label}: {screened.reason} while generating and checking its structures"
                run.process(RejectedCandidate(reason=RejectionReason.CRASHED, message=message, input_name=label))
                continue
            candidates += [c for c in (run.process(event) for event in screened) if c is not None]

        # Size chunks on the campaign's expected total, estimated from this shard's yield.
        expected_total = len(candidates) * plan.n_shards
        per_chunk = min(plan.chunk_size, max(1, math.ceil(expected_total / (self.chunks_per_worker * max(1, plan.parallelism)))))
        chunks = [
            CandidateChunk(
                candidate_ids=[c.candidate_id for c in candidates[a:b]],
                structures=[c.structure for c in candidates[a:b]],
                provenance=[c.provenance for c in candidates[a:b]],
            )
            for a, b in split_evenly(len(candidates), per_chunk)
        ]
        output = GenerationShard(
            shard_index=shard_index, units=(start, stop), n_candidates=len(candidates), chunks=chunks, report=run.report
        )
        if not chunks or chunk_maker is None:
            return Response(output=output)
        own = OutputReference(CURRENT_JOB.job.uuid)
        jobs = []
        for k in range(len(chunks)):
            chunk_job = make_chunk_job(chunk_maker, own.chunks[k])
            chunk_job.name = f"{chunk_job.name} {shard_index}.{k}"
            # which chunk of which shard: how a failed chunk job's candidates are found (campaign/failed_chunks.py)
            chunk_job.update_metadata({CHUNK_METADATA: {"shard_job": own.uuid, "chunk": k}})
            jobs.append(chunk_job)
        # ``replace`` rather than ``addition``: jobflow refuses additions that reference the
        # adding job itself, and the chunks reference this job's stored output. The flow has
        # no output, so this output stays the job's latest.
        return Response(output=output, replace=Flow(jobs, name=f"shard {shard_index} chunks"))
