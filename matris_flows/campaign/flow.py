"""``ScreeningMaker``: the campaign as one ordinary jobflow Flow.

generation (streamed in chunks; each chunk fans out one relaxation job) → hull →
optional DFT validation. It runs with jobflow's ``run_locally``, on Dask through
:func:`matris_flows.execution.run_on_dask`, or with any other jobflow manager.
"""

from dataclasses import dataclass, field, replace
from pathlib import Path

from jobflow import Flow, Maker, Response, job

from matris_flows.campaign.spec import CampaignSpec
from matris_flows.generation.jobs import (
    CandidateSourceMaker,
    ChunkedGenerationMaker,
    FileSourceMaker,
    PrototypeMaker,
    RandomSearchMaker,
    SubstitutionMaker,
)
from matris_flows.relax.jobs import RelaxMaker
from matris_flows.shared_data import shared_data_dir
from matris_flows.stores import make_collection_store
from matris_flows.thermo.jobs import HullMaker
from matris_flows.thermo.references import LocalFileReferences, MissingReferenceError, MPApiReferences

MP_CACHE_COLLECTION = "mp_reference_cache"


@job
def validate_best(candidates: list, validation_maker: Maker, references) -> Response:
    """Select the best candidates and replace this job by their DFT validation flow.

    The reference entries of the candidates' chemical systems serve as deduplication
    targets and as the reference phases of the DFT hull.
    """
    systems = sorted({c["chemsys"] if isinstance(c, dict) else c.chemsys for c in candidates})
    entries = []
    for chemsys in systems:
        try:
            entries.extend(references.get_entries(chemsys))
        except MissingReferenceError:  # a system without references is still validated against its elements
            continue
    return Response(replace=validation_maker.make(candidates, entries))


@dataclass
class ScreeningMaker(Maker):
    """Build the screening Flow: generation → relaxation per chunk → hull → validation."""

    name: str = "screening"
    generation: ChunkedGenerationMaker = field(default_factory=ChunkedGenerationMaker)
    relax: RelaxMaker = field(default_factory=RelaxMaker)
    hull: HullMaker = field(default_factory=HullMaker)
    validation: Maker | None = None

    def make(self) -> Flow:
        """The campaign Flow; its output is ``{"candidates": [...], "validation": report or None}``."""
        generation = replace(self.generation, collect_outputs=True).make(chunk_maker=self.relax)
        hull = self.hull.make(generation.output)
        jobs = [generation, hull]
        validation_output = None
        if self.validation is not None:
            validation = validate_best(hull.output, self.validation, self.hull.references or LocalFileReferences())
            validation.name = "DFT validation"
            jobs.append(validation)
            validation_output = validation.output
        return Flow(jobs, output={"candidates": hull.output, "validation": validation_output}, name=self.name)

    @classmethod
    def from_spec(cls, spec: CampaignSpec, campaign_dir: str | Path | None = None) -> "ScreeningMaker":
        """Translate a validated campaign spec into Makers."""
        generation = ChunkedGenerationMaker(
            name=f"{spec.name}: generate",
            sources=_sources(spec),
            filters=spec.generation.filters,
            dedup=spec.generation.dedup,
            chunk_size=spec.generation.chunk_size,
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
            elemental_relax_settings=spec.relax,
            device=spec.potential.device,
        )
        return cls(name=spec.name, generation=generation, relax=relax, hull=hull, validation=_validation(spec))


def _sources(spec: CampaignSpec) -> list[CandidateSourceMaker]:
    g = spec.generation
    common = {"filters": g.filters, "dedup": g.dedup}
    sources: list[CandidateSourceMaker] = []
    if g.substitution:
        s = g.substitution
        sources.append(
            SubstitutionMaker(
                templates=_templates(s.templates, s.max_templates, s.max_template_atoms),
                threshold=s.threshold,
                max_substituted_species=s.max_substituted_species,
                allowed_elements=s.allowed_elements,
                max_per_template=s.max_per_template,
                partial_fractions=tuple(s.partial_fractions),
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


def _templates(paths: list[str], max_templates: int | None, max_atoms: int | None) -> list:
    """Template files, or — when the spec caps them — the selected (smallest) templates themselves.

    Templates stay entries/structures as loaded, so MP ids survive as parent template ids.
    """
    paths = [resolve_data_path(p) for p in paths]
    if max_templates is None and max_atoms is None:
        return paths
    from monty.serialization import loadfn

    templates = []
    for path in paths:
        loaded = loadfn(path) if ".json" in Path(path).name else [path]
        templates.extend(loaded if isinstance(loaded, list) else [loaded])

    def size(template) -> int:
        structure = getattr(template, "structure", template)
        return len(structure) if hasattr(structure, "composition") else 0

    def is_compound(template) -> bool:  # elements carry no oxidation states to substitute
        structure = getattr(template, "structure", template)
        return hasattr(structure, "composition") and len(structure.composition.elements) > 1

    kept = [t for t in templates if is_compound(t) and (max_atoms is None or size(t) <= max_atoms)]
    kept.sort(key=lambda t: (size(t), str(getattr(t, "entry_id", ""))))
    return kept[:max_templates]


def resolve_data_path(path: str) -> str:
    """``shared:<file>`` names a file in the shared reference data folder."""
    if path.startswith("shared:"):
        return str(shared_data_dir() / path.removeprefix("shared:"))
    return path


def _references(spec: CampaignSpec, campaign_dir: str | Path | None):
    refs = spec.hull.references
    if refs.provider == "mp_api":
        cache = make_collection_store(spec.store_config(), campaign_dir, MP_CACHE_COLLECTION)
        return MPApiReferences(cache_store=cache)
    paths = [resolve_data_path(p) for p in refs.paths] if refs.paths else None
    return LocalFileReferences(paths=paths, snapshot_date=refs.snapshot_date)


def _validation(spec: CampaignSpec) -> Maker | None:
    v = spec.validation
    if not v.enabled:
        return None
    from matris_flows.validation import GpawHullValidationMaker, SelectionSettings, ValidationMaker, VaspValidationMaker

    backend = GpawHullValidationMaker() if v.backend == "gpaw" else VaspValidationMaker()
    selection = SelectionSettings(top_k=v.top_k, max_e_above_hull=v.max_e_above_hull, budget=v.budget)
    return ValidationMaker(selection=selection, backend_maker=backend)
