"""jobflow Makers for the hull stage.

``HullMaker`` assesses one relaxation chunk against the reference hull and publishes the
chunk's candidate documents right away; ``CampaignHullMaker`` runs once all chunks are in
and adds what needs the whole campaign (its hull, post-relaxation duplicates).
"""

from dataclasses import dataclass

from jobflow import Maker, job
from jobflow.core.job import JobConfig
from jobflow.core.reference import OnMissing

from matris_flows.core.publishing import CANDIDATES_STORE_NAME, REFERENCES_STORE_NAME, publish, write_only_config
from matris_flows.core.serialization import json_document
from matris_flows.generation.schemas import Provenance
from matris_flows.relax.schemas import RelaxationDocument
from matris_flows.thermo.assess import DocumentContext, assess_candidates, flatten_relaxations, single_convention
from matris_flows.thermo.consistent_references import consistent_provider
from matris_flows.thermo.elemental import campaign_references_from_relaxations
from matris_flows.thermo.hull import PATCH_ABOVE_N_ELEMENTS
from matris_flows.thermo.references import LocalFileReferences, ReferenceProvider
from matris_flows.thermo.schemas import CampaignHullOutput, HullOutput, ThermoStatus


@dataclass
class HullMaker(Maker):
    """Energies above the reference hull for one chunk of relaxed candidates.

    The candidate documents are published to the JobStore's ``candidates`` store as soon as
    the job finishes (so a running campaign can be queried); without such a store they are
    kept in the job's output. The hull including the other candidates of a campaign is
    :class:`CampaignHullMaker`'s, once every chunk is in; standalone (``campaign_hull``),
    this job computes it over its own input.

    Parameters
    ----------
    name
        Job name.
    references
        Reference provider for MP-compatible potentials (local MP files, the MP API with a
        maggma cache, or campaign-internal references). Default: the MP Li-Fe-O data shipped in
        the package (``default_reference_files``); other systems need explicit files or the MP API.
    stability_threshold
        ``is_stable`` means ``e_above_hull <= stability_threshold``, eV/atom (0 like Matbench
        Discovery; screens often use 0.05 or 0.1).
    raise_on_missing_reference
        Fail the job on a chemical system without references instead of writing
        ``no_reference`` documents.
    patch_above_n_elements
        Use a PatchedPhaseDiagram for systems with more elements than this.
    campaign
        Campaign name recorded on every document.
    campaign_hull
        Also compute ``e_above_hull_campaign`` over this job's own candidates (standalone
        use; a campaign leaves it to :class:`CampaignHullMaker`).
    allow_unconverged
        Let unconverged relaxations be ``is_stable`` (default False: they never are).
    match_references
        Compare every relaxed structure with the reference structures of its reduced
        formula and record the known phase it is in ``matches_reference``.
    """

    name: str = "hull"
    references: ReferenceProvider | None = None
    stability_threshold: float = 0.0
    raise_on_missing_reference: bool = False
    patch_above_n_elements: int = PATCH_ABOVE_N_ELEMENTS
    campaign: str | None = None
    campaign_hull: bool = True
    allow_unconverged: bool = False
    match_references: bool = True

    @job(output_schema=HullOutput, config=write_only_config())
    def make(
        self,
        relaxation_outputs: list,
        elemental_references: list[RelaxationDocument] | None = None,
        provenance: list[Provenance] | None = None,
        relax_job: str | None = None,
        consistent_references: object = None,
    ) -> HullOutput:
        """Assess ``relaxation_outputs`` and publish one CandidateDocument per relaxation.

        ``relaxation_outputs`` takes RelaxationDocument-s, RelaxBatchOutput-s or lists of
        them. ``elemental_references`` are relaxations of the elements with the campaign's
        potential (:func:`~matris_flows.thermo.elemental.relax_elemental_references`), used
        when its energies are not MP-compatible and no consistent reference set covers a system. ``provenance`` is the
        generation provenance of each relaxation, in order; ``relax_job`` the uuid of the
        relaxation job, recorded so the full relaxation record can be found.
        ``consistent_references`` is a ConsistentReferenceSet (MP phases relaxed with the same
        potential, :mod:`matris_flows.thermo.consistent_references`): the internal hull of the
        systems it covers, and its elemental corners (or ``elemental_references``) the others.
        """
        documents = flatten_relaxations(relaxation_outputs)

        elemental = None
        if elemental_references:
            potential = single_convention(documents)
            elemental = campaign_references_from_relaxations(
                flatten_relaxations(elemental_references), potential[0] if potential else None
            )

        by_id = None
        if provenance:
            by_id = {d.candidate_id: p for d, p in zip(documents, provenance, strict=False)}
        context = DocumentContext(
            stability_threshold=self.stability_threshold,
            campaign=self.campaign,
            relax_job=relax_job,
            provenance=by_id,
            allow_unconverged=self.allow_unconverged,
        )
        candidates = assess_candidates(
            documents,
            self.references or LocalFileReferences(),
            stability_threshold=self.stability_threshold,
            campaign_references=consistent_provider(consistent_references, elemental),
            raise_on_missing_reference=self.raise_on_missing_reference,
            patch_above_n_elements=self.patch_above_n_elements,
            campaign_hull=self.campaign_hull,
            context=context,
            match_references=self.match_references,
        )
        rows = [json_document(c) for c in candidates]
        published = publish(rows, CANDIDATES_STORE_NAME)
        n_ok = sum(c.thermo_status is ThermoStatus.OK for c in candidates)
        return HullOutput(
            candidate_ids=[c.candidate_id for c in candidates],
            n_ok=n_ok,
            n_stable=sum(bool(c.is_stable) for c in candidates),
            n_known_phases=sum(c.matches_reference is not None for c in candidates),
            n_failed=len(candidates) - n_ok,
            published=published,
            documents=None if published else candidates,
        )


@dataclass
class CampaignHullMaker(Maker):
    """Campaign-wide step, once all chunks are in: the campaign hull and post-relaxation dedup.

    Reads the ``candidates`` store (maggma Builder style, one chemical-system group at a
    time) and writes ``e_above_hull_campaign``, ``is_stable_campaign`` and ``duplicate_of``.
    Groups whose members did not change since the last run are skipped, so a resumed
    campaign only recomputes what its new chunks touched. Runs where the store is (the
    Dask driver, for an embedded store). Unconverged relaxations are never
    ``is_stable_campaign`` unless ``allow_unconverged``.
    """

    name: str = "campaign hull"
    campaign: str | None = None
    references: ReferenceProvider | None = None
    stability_threshold: float = 0.0
    patch_above_n_elements: int = PATCH_ABOVE_N_ELEMENTS
    allow_unconverged: bool = False
    needs_consistent_references: bool = False
    """The chunks were assessed against a consistent-references job's set: without it nothing can be."""

    @job(output_schema=CampaignHullOutput, config=JobConfig(expose_store=True, on_missing_references=OnMissing.NONE))
    def make(self, after: object = None, consistent_references: object = None) -> CampaignHullOutput:
        """Run the campaign-wide step; ``after`` only orders this job after the whole fan-out.

        ``consistent_references``: the ConsistentReferenceSet the chunks' internal hulls used.
        """
        from jobflow import CURRENT_JOB

        from matris_flows.thermo.campaign_hull import CampaignHullBuilder

        # This job runs whatever failed before it (a failed chunk must not hide the others), so it
        # says when what it depends on as a whole failed, instead of reporting an empty campaign.
        if after is None:
            raise RuntimeError("the generation stage failed (its planning job did not finish): no candidate was screened")
        if self.needs_consistent_references and consistent_references is None:
            raise RuntimeError("the consistent-references job failed: no candidate could be put on the campaign's hull")
        store = CURRENT_JOB.store.additional_stores[CANDIDATES_STORE_NAME]
        builder = CampaignHullBuilder(
            references_store=CURRENT_JOB.store.additional_stores.get(REFERENCES_STORE_NAME),
            candidates=store,
            references=consistent_provider(consistent_references) or self.references or LocalFileReferences(),
            campaign=self.campaign,
            stability_threshold=self.stability_threshold,
            patch_above_n_elements=self.patch_above_n_elements,
            allow_unconverged=self.allow_unconverged,
        )
        return builder.build()
