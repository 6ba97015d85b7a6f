"""Run, resume and inspect campaigns: the Python API behind the ``matris-flows`` CLI.

A campaign lives in one directory: ``spec.yaml`` (the spec as run), ``flow.json`` (the
Flow with its job uuids, so a rerun resumes the same jobs) and, with the embedded default
store, ``database/`` (montydb). Only this driver process writes to the store.
"""

import json
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

import yaml
from jobflow import Flow, JobStore, run_locally
from maggma.core import Store
from monty.json import MontyDecoder
from pydantic import BaseModel, Field

from matris_flows.campaign.flow import ScreeningMaker
from matris_flows.campaign.spec import CampaignSpec, SpecError, load_spec
from matris_flows.execution import JobEvent, open_client, run_on_dask
from matris_flows.stores import connect_job_store, make_candidates_store, make_job_store

SPEC_FILE, FLOW_FILE, MANIFEST_FILE = "spec.yaml", "flow.json", "campaign.json"


class CampaignSummary(BaseModel):
    """What a campaign produced."""

    name: str = Field(description="Campaign name.")
    directory: str = Field(description="Campaign directory.")
    generated: int = Field(0, description="Candidates accepted by generation.")
    rejected: int = Field(0, description="Structures filtered out during generation (with reasons).")
    duplicates: int = Field(0, description="Duplicates removed during generation.")
    candidates: int = Field(0, description="Candidate documents written.")
    relaxed: int = Field(0, description="Candidates with a relaxed energy.")
    failed: int = Field(0, description="Candidates that failed relaxation or had no usable hull.")
    stable: int = Field(0, description="Candidates with is_stable.")
    validated: int = Field(0, description="Candidates with a DFT validation document.")
    jobs_failed: int | None = Field(None, description="Jobs that raised (their dependants were skipped); not counted by run_locally.")
    wall_time_s: float = Field(0.0, description="Wall time of this run.")


def campaign_dir_for(spec: CampaignSpec, root: str | Path = "campaigns") -> Path:
    """Default directory of a campaign: ``campaigns/<name>``."""
    return Path(root) / spec.name


def _prepare(spec: CampaignSpec, directory: Path, spec_path: Path | None, fresh: bool) -> tuple[Flow, dict]:
    """Write the spec and the Flow once; reuse them on resume so job uuids stay the same."""
    directory.mkdir(parents=True, exist_ok=True)
    flow_file, manifest_file = directory / FLOW_FILE, directory / MANIFEST_FILE
    # The spec as run, with its store config inlined, so a resume needs nothing else.
    resolved = spec.model_copy(update={"store": spec.store_config(spec_path.parent if spec_path else None)})
    if not fresh and flow_file.exists():
        previous = load_spec(directory / SPEC_FILE)
        if previous.model_dump(mode="json") != resolved.model_dump(mode="json"):
            raise SpecError(
                f"campaign directory {str(directory)!r} was started with a different spec; "
                "resume it with its own spec.yaml, start over with --fresh, or use another --dir"
            )
    if fresh or not flow_file.exists():
        (directory / SPEC_FILE).write_text(yaml.safe_dump(resolved.model_dump(mode="json"), sort_keys=False))
        flow = ScreeningMaker.from_spec(spec, directory).make()
        stages = ("generation", "campaign_hull", "validation", "publish_validation")
        manifest = {"name": spec.name, **{key: job.uuid for key, job in zip(stages, flow.jobs, strict=False)}}
        flow_file.write_text(flow.to_json())
        manifest_file.write_text(json.dumps(manifest, indent=2))
    flow = json.loads(flow_file.read_text(), cls=MontyDecoder)
    return flow, json.loads(manifest_file.read_text())


def run_campaign(
    spec: CampaignSpec | str | Path,
    directory: str | Path | None = None,
    *,
    manager: str = "dask",
    resume: bool = True,
    progress: Callable[[JobEvent], None] | None = None,
    client=None,
) -> CampaignSummary:
    """Run a campaign end to end and write one document per candidate to the candidates store.

    ``manager`` is ``dask`` (the spec's execution profile, or ``client``) or ``local``
    (jobflow's ``run_locally``, for debugging). With ``resume`` a rerun in the same
    directory skips finished jobs; without it the campaign starts over.
    """
    spec_path = None
    if not isinstance(spec, CampaignSpec):
        spec_path = Path(spec)
        spec = load_spec(spec_path)
    directory = Path(directory) if directory is not None else campaign_dir_for(spec)
    flow, manifest = _prepare(spec, directory, spec_path, fresh=not resume)
    store_config = spec.store_config(spec_path.parent if spec_path else None)
    job_store = connect_job_store(store_config, directory)

    failures = Counter()

    def on_event(event: JobEvent) -> None:
        failures[event.status] += event.status == "failed"
        if progress is not None:
            progress(event)

    start = time.perf_counter()
    if manager == "local":
        run_locally(flow, store=job_store, create_folders=False, log=False)
    else:
        # Workers write directly where the store takes concurrent writers (MongoDB), each
        # connecting from the store config and its own environment; else the driver writes.
        direct = partial(connect_job_store, store_config, directory) if store_config.concurrent_writers else False
        options = {"resume": resume, "progress": on_event, "keep_responses": False, "direct_writes": direct}
        if client is not None:
            run_on_dask(flow, job_store, client, **options)
        else:
            with open_client(spec.execution) as own_client:
                run_on_dask(flow, job_store, own_client, **options)
    wall = time.perf_counter() - start

    candidates_store = make_candidates_store(store_config, directory)
    try:
        summary = _collect(spec.name, directory, job_store, candidates_store)
    finally:
        candidates_store.close()
    summary.wall_time_s = wall
    summary.jobs_failed = None if manager == "local" else failures["failed"]
    return summary


def resume_campaign(directory: str | Path, **kwargs) -> CampaignSummary:
    """Rerun a campaign from its directory; finished jobs are skipped."""
    directory = Path(directory)
    return run_campaign(directory / SPEC_FILE, directory, resume=True, **kwargs)


def _collect(name: str, directory: Path, job_store: JobStore, candidates_store: Store) -> CampaignSummary:
    """Counts of a campaign, read from its stores (candidates are already published by the hull jobs)."""
    with job_store:
        report = generation_totals(job_store)
    campaign = {"campaign": name}
    n_candidates = candidates_store.count(campaign)
    return CampaignSummary(
        name=name,
        directory=str(directory),
        generated=report["n_accepted"],
        rejected=report["n_rejected"],
        duplicates=report["n_duplicates"],
        candidates=n_candidates,
        relaxed=candidates_store.count({**campaign, "relaxation.status": {"$in": ["converged", "not_converged"]}}),
        failed=n_candidates - candidates_store.count({**campaign, "thermo_status": "ok"}),
        stable=candidates_store.count({**campaign, "is_stable": True}),
        validated=candidates_store.count({**campaign, "validation": {"$ne": None}}),
    )


def generation_totals(job_store: JobStore) -> dict[str, int]:
    """Generation counts summed over the shard outputs (each shard reports only its own units)."""
    totals = {"n_accepted": 0, "n_rejected": 0, "n_duplicates": 0, "n_shards": 0}
    shards = job_store.docs_store.query(
        criteria={"output.shard_index": {"$exists": True}},
        properties=["output.report.n_accepted", "output.report.n_rejected", "output.report.rejected_counts"],
    )
    for doc in shards:
        report = doc["output"]["report"]
        totals["n_shards"] += 1
        totals["n_accepted"] += report.get("n_accepted", 0)
        totals["n_rejected"] += report.get("n_rejected", 0)
        totals["n_duplicates"] += sum(
            count for reason, count in (report.get("rejected_counts") or {}).items() if reason.startswith("duplicate")
        )
    return totals


def campaign_status(directory: str | Path) -> dict:
    """Jobs finished/expected and candidate counts of a campaign directory (read-only)."""
    directory = Path(directory)
    spec = load_spec(directory / SPEC_FILE)
    flow = json.loads((directory / FLOW_FILE).read_text(), cls=MontyDecoder)
    store_config = spec.store_config(directory)
    job_store = make_job_store(store_config, directory)
    with job_store:
        outputs = job_store.docs_store.query(properties=["name", "uuid", "index"])
        names = Counter(_stage(doc.get("name", "")) for doc in outputs)
        finished = job_store.docs_store.count()
    candidates_store = make_candidates_store(store_config, directory)
    try:
        n_candidates = candidates_store.count({"campaign": spec.name})
        n_stable = candidates_store.count({"campaign": spec.name, "is_stable": True})
    finally:
        candidates_store.close()
    return {
        "name": spec.name,
        "directory": str(directory),
        "jobs_in_initial_flow": len(flow.jobs),
        "jobs_finished": finished,
        "finished_by_stage": dict(names),
        "candidates": n_candidates,
        "stable": n_stable,
    }


def _stage(job_name: str) -> str:
    for stage in ("campaign hull", "generate", "relax", "hull", "validation", "DFT"):
        if stage in job_name:
            return stage
    return "other"
