"""The Python API for submission scripts: build a campaign, run it, read its results.

Every CLI command is one of these calls (the CLI calls them, with the same arguments and the
same errors), so a script and ``matris-flows`` give the same campaign::

    from matris_flows.api import CandidateQuery, candidates_dataframe, run_campaign

    summary = run_campaign("workflows/demo_li_fe_o.yaml")       # matris-flows screen
    table = candidates_dataframe(summary.directory, CandidateQuery(stable_campaign_only=True))

**Build.** A spec from a YAML file (:func:`load_spec`), from a dict with the file's keys
(:func:`spec_from_dict`), or from the typed sections (:class:`CampaignSpec`,
:class:`GenerationSpec`, :class:`SubstitutionSource`, :class:`RelaxSettings`, ...): the same
validation and messages (:class:`SpecError` names each bad key). ``ScreeningMaker.from_spec(spec)``
turns a spec into Makers; Makers composed by hand (``ScreeningMaker(generation=..., relax=RelaxMaker(...))``)
make an ordinary jobflow Flow too.

**Run.** :func:`run_campaign` / :func:`resume_campaign` run a spec on the Dask cluster of its
``execution`` profile (local, SLURM, PBS) or with ``manager="local"`` (``run_locally``), resuming
an existing directory; ``progress`` takes :class:`ScreeningProgress` or any callable of a
``JobEvent``. With plain jobflow, :func:`campaign_job_store` gives the JobStore the Flow needs:
``run_locally(flow, store=campaign_job_store(spec), ensure_success=True)``.

**Read.** :func:`campaign_status`, :func:`query_campaign` (documents), :func:`candidates_dataframe`
(pandas), :func:`relaxed_structures` (pymatgen), :func:`export_campaign`, :func:`plot_campaign`,
filtered by a :class:`CandidateQuery` (the ``query`` command's options). :func:`serve` is the
``serve`` command (the web app; ``pip install "matris-flows[web]"``).

Names are imported on first use (PEP 562): importing this module starts neither jobflow, Dask nor torch.
"""

from __future__ import annotations

from matris_flows.core.lazy import lazy_exports

_EXPORTS = {
    # build
    "CampaignSpec": "matris_flows.campaign.spec",
    "GenerationSpec": "matris_flows.campaign.spec",
    "PotentialSpecModel": "matris_flows.campaign.spec",
    "HullSpec": "matris_flows.campaign.spec",
    "ReferenceSpec": "matris_flows.campaign.spec",
    "ValidationSpec": "matris_flows.campaign.spec",
    "ConsensusSettings": "matris_flows.consensus.settings",
    "OpinionPotential": "matris_flows.consensus.settings",
    "ConsensusMaker": "matris_flows.consensus.jobs",
    "SpecError": "matris_flows.campaign.spec",
    "load_spec": "matris_flows.campaign.spec",
    "spec_from_dict": "matris_flows.campaign.spec",
    "SubstitutionSource": "matris_flows.generation.source_settings",
    "PrototypeSource": "matris_flows.generation.source_settings",
    "RandomSearchSource": "matris_flows.generation.source_settings",
    "FileSource": "matris_flows.generation.source_settings",
    "FilterSettings": "matris_flows.generation.filters",
    "DedupSettings": "matris_flows.generation.pipeline",
    "RelaxSettings": "matris_flows.relax.schemas",
    "StoreConfig": "matris_flows.stores.config",
    "ExecutionProfile": "matris_flows.execution.profile",
    "ScreeningMaker": "matris_flows.campaign.flow",
    # run
    "run_campaign": "matris_flows.campaign.runner",
    "resume_campaign": "matris_flows.campaign.runner",
    "CampaignSummary": "matris_flows.campaign.runner",
    "ScreeningProgress": "matris_flows.campaign.progress",
    "campaign_job_store": "matris_flows.campaign.job_store",
    "make_job_store": "matris_flows.stores.backends",
    # read
    "campaign_status": "matris_flows.campaign.status",
    "query_campaign": "matris_flows.campaign.reading",
    "candidates_dataframe": "matris_flows.campaign.reading",
    "relaxed_structures": "matris_flows.campaign.reading",
    "export_campaign": "matris_flows.campaign.reading",
    "plot_campaign": "matris_flows.campaign.reading",
    "CandidateQuery": "matris_flows.results.query",
    # browse (needs the web extra)
    "serve": "matris_flows.web.server",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return __all__
