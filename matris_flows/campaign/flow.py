"""``ScreeningMaker``: the campaign as one ordinary jobflow Flow.

plan → generation shards (in parallel) → per chunk: relaxation → reference hull, whose
candidate documents are published at once → campaign-wide hull and duplicates → optional
DFT validation. For potentials not on the MP energy scale a first job relaxes the MP phases
near the hull with the same potential (or reuses them from the store's cache), and every
hull job measures against them (:mod:`matris_flows.thermo.consistent_references`). The
fan-out is flat (plan → shard → chunk, whatever the campaign size) and no job's input or
output grows with the campaign. It runs with jobflow's
``run_locally``, on Dask through :func:`matris_flows.execution.run_on_dask`, or with any
other jobflow manager whose JobStore has a ``candidates`` additional store.
"""

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jobflow import Flow, Maker, OutputReference
from pymatgen.core import Composition

from matris_flows.campaign.directory import campaign_dir_for
from matris_flows.campaign.spec import CampaignSpec
from matris_flows.consensus.jobs import ConsensusMaker
from matris_flows.consensus.scoring import opinion_relax_settings
from matris_flows.generation.jobs import (
    CandidateSourceMaker,
    FileSourceMaker,
    PrototypeMaker,
    RandomSearchMaker,
    ShardedGenerationMaker,
    SubstitutionMaker,
)
from matris_flows.potentials.naming import parse_potential
from matris_flows.relax.jobs import RelaxMaker
from matris_flows.stores.campaign_store import CampaignStore
from matris_flows.thermo.consistent_references import CACHE_COLLECTION as CONSISTENT_CACHE_COLLECTION
from matris_flows.thermo.consistent_references import ConsistentReferencesMaker, copy_relax_maker
from matris_flows.thermo.jobs import CampaignHullMaker, HullMaker
from matris_flows.thermo.mp_compat import uses_mp_hull
from matris_flows.thermo.references import LocalFileReferences, MPApiReferences
from matris_flows.validation.jobs import publish_validation, validate_best

MP_CACHE_COLLECTION = "mp_reference_cache"


@dataclass
class ScreenChunkMaker(Maker):
    """What each generation chunk becomes: its relaxation, then its reference hull (published at once)."""

    name: str = "chunk"
    relax: RelaxMaker = field(default_factory=RelaxMaker)
    hull: HullMaker = field(default_factory=HullMaker)
    references_uuid: str | None = None
    """uuid of the consistent-references job whose output each hull job reads (None: no such job)."""
    references_ready: Any = None
    """A reference to that job's ``set_key``: makes the job that builds the chunks wait for it (a string once resolved)."""

    def make(self, structures: Any, candidate_ids: Any, provenance: Any = None) -> Flow:
        """Relax ``structures`` and assess them (arguments are usually references to a shard's output)."""
        relax = self.relax.make(structures, candidate_ids)
        kwargs: dict[str, Any] = {}
        if self.references_uuid is not None:
            # a reference, resolved when the hull job runs: no chunk or shard document holds the set
            kwargs["consistent_references"] = OutputReference(self.references_uuid)
        hull = self.hull.make(relax.output, provenance=provenance, relax_job=relax.uuid, **kwargs)
        return Flow([relax, hull], name=self.name)


@dataclass
class ScreeningMaker(Maker):
    """Build the screening Flow: plan → shards → per chunk (relaxation → hull) → campaign hull → validation."""

    name: str = "screening"
    generation: ShardedGenerationMaker = field(default_factory=ShardedGenerationMaker)
    relax: RelaxMaker = field(default_factory=RelaxMaker)
    hull: HullMaker = field(default_factory=HullMaker)
    validation: Maker | None = None
    consistent_references: ConsistentReferencesMaker | None = None
    """Relaxes the MP phases near the hull with the campaign's potential (potentials not on the MP scale)."""
    consensus: ConsensusMaker | None = None
    """Second opinions on the shortlist between the campaign hull and validation."""
    opinion_references: dict[str, ConsistentReferencesMaker] = field(default_factory=dict)
    """Per second-opinion model not on the MP scale, the job relaxing its consistent reference phases."""

    def make(self) -> Flow:
        """The campaign Flow; its output holds the plan, the campaign-wide summary and the validation report.

        Candidate documents are in the JobStore's ``candidates`` store (one per candidate).
        """
        hull = replace(self.hull, campaign=self.hull.campaign or self.name, campaign_hull=False)
        chunk = ScreenChunkMaker(name=f"{self.name}: chunk", relax=self.relax, hull=hull)
        jobs: list = []
        references_output = None
        if self.consistent_references is not None:
            # One visible job (replaced by relaxation jobs on a cache miss) before the generation
            # fan-out; every chunk's hull job reads its output.
            references_job = self.consistent_references.make()
            references_output = references_job.output
            chunk = replace(chunk, references_uuid=references_job.uuid, references_ready=references_job.output.set_key)
            jobs.append(references_job)
        generation = self.generation.make(chunk_maker=chunk)
        campaign_hull = CampaignHullMaker(
            name=f"{self.name}: campaign hull",
            campaign=hull.campaign,
            references=hull.references,
            stability_threshold=hull.stability_threshold,
            patch_above_n_elements=hull.patch_above_n_elements,
            allow_unconverged=hull.allow_unconverged,
            needs_consistent_references=references_output is not None,
        ).make(generation.output, consistent_references=references_output)
        jobs += [generation, campaign_hull]
        output: dict[str, Any] = {
            "generation": generation.output, "campaign_hull": campaign_hull.output, "consensus": None, "validation": None,
        }
        before_validation = campaign_hull.output
        if self.consensus is not None:
            opinion_jobs = {label: maker.make() for label, maker in self.opinion_references.items()}
            jobs.extend(opinion_jobs.values())
            stage = replace(
                self.consensus, name=f"{self.name}: consensus", campaign=hull.campaign,
                references=self.consensus.references or hull.references,
                references_uuids={label: j.uuid for label, j in opinion_jobs.items()},
            ).make(campaign_hull.output, references_ready=[j.output.set_key for j in opinion_jobs.values()])
            jobs.append(stage)
            output["consensus"] = before_validation = stage.output
        if self.validation is not None:
            references = hull.references or LocalFileReferences()
            validation = validate_best(before_validation, self.validation, references, hull.campaign)
            validation.name = f"{self.name}: DFT validation"
            joined = publish_validation(validation.output)
            joined.name = f"{self.name}: publish validation"
            jobs.extend([validation, joined])
            output["validation"] = validation.output
        return Flow(jobs, output=output, name=self.name)

    @classmethod
    def from_spec(cls, spec: CampaignSpec, campaign_dir: str | Path | None = None) -> "ScreeningMaker":
        """Translate a validated campaign spec into Makers.

        ``campaign_dir`` is where an embedded store with a relative path lives (the caches the
        jobs keep there: MP API answers, consistent references); by default ``campaigns/<name>``
        under the working directory, as for ``matris-flows screen``.
        """
        if campaign_dir is None:
            campaign_dir = campaign_dir_for(spec).resolve()
        generation = ShardedGenerationMaker(
            name=f"{spec.name}: generate",
            sources=_sources(spec),
            filters=spec.generation.filters,
            dedup=spec.generation.dedup,
            chunk_size=spec.generation.chunk_size,
            parallelism=spec.execution.parallelism,
        )
        relax = RelaxMaker(
            name=f"{spec.name}: relax",
            potential=spec.potential.name,
            settings=spec.relax,
            device=spec.potential.device,
            potential_options=spec.potential.options,
        )
        hull = HullMaker(
            name=f"{spec.name}: hull",
            references=_references(spec, campaign_dir),
            stability_threshold=spec.hull.stability_threshold,
            allow_unconverged=spec.hull.allow_unconverged,
            campaign=spec.name,
        )
        consensus, opinion_references = _consensus(spec, campaign_dir, hull)
        return cls(
            name=spec.name, generation=generation, relax=relax, hull=hull, validation=_validation(spec),
            consistent_references=_consistent_references(spec, campaign_dir, hull.references, relax),
            consensus=consensus, opinion_references=opinion_references,
        )


def _sources(spec: CampaignSpec) -> list[CandidateSourceMaker]:
    g = spec.generation
    common = {"filters": g.filters, "dedup": g.dedup}
    sources: list[CandidateSourceMaker] = []
    if g.substitution:
        s = g.substitution
        sources.append(
            SubstitutionMaker(
                templates=list(s.templates),  # package: names resolve in the job
                threshold=s.threshold,
                max_substituted_species=s.max_substituted_species,
                allowed_elements=s.allowed_elements,
                max_per_template=s.max_per_template,
                partial_fractions=tuple(s.partial_fractions),
                max_templates=s.max_templates,
                max_template_atoms=s.max_template_atoms,
                **common,
            )
        )
    if g.prototypes:
        p = g.prototypes
        sources.append(PrototypeMaker(element_lists=p.element_lists, prototypes=p.prototypes, charge_balanced=p.charge_balanced, **common))
    if g.random_search:
        r = g.random_search
        sources.append(
            RandomSearchMaker(
                compositions=r.compositions, space_groups=r.space_groups, formula_units=r.formula_units, n_seeds=r.n_seeds, **common
            )
        )
    if g.files:
        sources.append(FileSourceMaker(paths=g.files.paths, order_disordered=g.files.order_disordered, **common))
    return sources


def _references(spec: CampaignSpec, campaign_dir: str | Path | None):
    refs = spec.hull.references
    if refs.provider == "mp_api":
        # by name: the Flow, the journal and every hull task carry the config, never a credentialed store
        cache = CampaignStore(spec.store_config(), MP_CACHE_COLLECTION, campaign_dir)
        return MPApiReferences(cache_store=cache)
    paths = list(refs.paths) if refs.paths else None  # package: names resolve in the job
    return LocalFileReferences(paths=paths, snapshot_date=refs.snapshot_date)


def _campaign_elements(spec: CampaignSpec) -> set[str] | None:
    """Elements the candidates can have, when the sources declare them (None: files and substitutions can bring any)."""
    g = spec.generation
    if g.files or g.substitution:
        return None
    elements: set[str] = set()
    if g.prototypes:
        elements.update(el for group in g.prototypes.element_lists for el in group)
    if g.random_search:
        elements.update(el.symbol for formula in g.random_search.compositions for el in Composition(formula).elements)
    return elements


def _consistent_references(
    spec: CampaignSpec, campaign_dir: str | Path | None, references, relax: RelaxMaker
) -> ConsistentReferencesMaker | None:
    """The consistent-hull job of a potential whose energies are not on the MP scale (None for MP-scale ones)."""
    if uses_mp_hull(parse_potential(relax.potential, relax.potential_options).energy_convention):
        return None
    refs = spec.hull.references
    cache = CampaignStore(spec.store_config(), CONSISTENT_CACHE_COLLECTION, campaign_dir) if refs.internal_cache else None
    return ConsistentReferencesMaker(
        name=f"{relax.name.removesuffix(': relax')}: consistent references",
        references=references,
        relax=copy_relax_maker(relax, f"{relax.name.removesuffix(': relax')}: consistent references relax"),
        chemsys=refs.internal_chemsys,
        elements=None if (elements := _campaign_elements(spec)) is None else sorted(elements),
        window_ev=refs.internal_window_ev,
        cache_store=cache,
        chunk_size=spec.generation.chunk_size,
    )


def _consensus(
    spec: CampaignSpec, campaign_dir: str | Path | None, hull: HullMaker
) -> tuple[ConsensusMaker | None, dict[str, ConsistentReferencesMaker]]:
    """The consensus stage, and the consistent-references job of each opinion not on the MP scale."""
    if spec.consensus is None:
        return None, {}
    opinion_references = {}
    for opinion in spec.consensus.potentials:
        relax = RelaxMaker(
            name=f"{spec.name} {opinion.label}: relax", potential=opinion.name,
            settings=opinion_relax_settings(spec.relax, opinion.name), device=opinion.device, potential_options=opinion.options,
        )
        # None for a model on the MP scale (MP2020 puts it on the MP hull)
        if (maker := _consistent_references(spec, campaign_dir, hull.references, relax)) is not None:
            opinion_references[opinion.label] = maker
    maker = ConsensusMaker(
        name=f"{spec.name}: consensus", settings=spec.consensus, references=hull.references, primary=spec.potential.name,
        campaign=spec.name, relax=spec.relax, stability_threshold=spec.hull.stability_threshold,
        allow_unconverged=spec.hull.allow_unconverged,
    )
    return maker, opinion_references


def _validation(spec: CampaignSpec) -> Maker | None:
    v = spec.validation
    if not v.enabled:
        return None
    from matris_flows.validation import GpawHullValidationMaker, SelectionSettings, ValidationMaker, VaspValidationMaker

    if v.backend == "gpaw":
        backend = GpawHullValidationMaker(reference_window=v.reference_window, stable_tolerance=v.stable_tolerance)
    else:
        backend = VaspValidationMaker()
    selection = SelectionSettings(
        top_k=v.top_k, max_e_above_hull=v.max_e_above_hull, budget=v.budget, allow_unconverged=v.allow_unconverged,
        acquisition=v.acquisition, explore_fraction=v.explore_fraction,
    )
    return ValidationMaker(selection=selection, backend_maker=backend)
