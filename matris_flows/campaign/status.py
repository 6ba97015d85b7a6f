"""Where a campaign stands (``matris-flows status``): jobs finished and failed, candidates, whether a driver runs it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from matris_flows.campaign.directory import FLOW_FILE, LOG_FILE, campaign_spec_file, driver_alive, lock_holder, read_failures
from matris_flows.campaign.spec import load_spec
from matris_flows.stores.backends import make_candidates_store, make_collection_store


def campaign_status(directory: str | Path) -> dict[str, Any]:
    """Jobs finished/expected, failed jobs with their errors and candidate counts of a campaign directory.

    Read-only and light: no jobflow or Dask import, the Flow is read as plain JSON.
    """
    directory = Path(directory)
    spec = load_spec(campaign_spec_file(directory))
    flow = json.loads((directory / FLOW_FILE).read_text()) if (directory / FLOW_FILE).is_file() else {}
    store_config = spec.store_config(directory)
    docs_store = make_collection_store(store_config, directory, store_config.docs_collection)
    docs_store.connect()
    try:
        # one count per job: a replaced job's output is stored again under its uuid by jobflow's
        # ``store_inputs`` job (a later index), which belongs to the stage of the job it replaced
        stages: dict[str, str] = {}
        for doc in docs_store.query(properties=["name", "uuid", "index"], sort={"index": 1}):
            stages.setdefault(doc.get("uuid", ""), _stage(doc.get("name", ""), spec.name))
        names = Counter(stages.values())
        finished = docs_store.count()
    finally:
        docs_store.close()
    candidates_store = make_candidates_store(store_config, directory)
    try:
        n_candidates = candidates_store.count({"campaign": spec.name})
        n_stable = candidates_store.count({"campaign": spec.name, "is_stable": True})
        consensus = {
            "second_opinions": candidates_store.count({"campaign": spec.name, "consensus": {"$ne": None}}),
            "stable_consensus": candidates_store.count({"campaign": spec.name, "is_stable_consensus": True}),
            "model_failed": candidates_store.count({"campaign": spec.name, "consensus.status": {"$in": ["partial", "failed"]}}),
        } if spec.consensus is not None else None
    finally:
        candidates_store.close()
    holder = lock_holder(directory)
    failures = read_failures(directory)
    return {
        "name": spec.name,
        "directory": str(directory),
        "running": holder is not None and driver_alive(*holder),
        "driver_pid": holder[0] if holder is not None else None,
        "jobs_in_initial_flow": len(flow.get("jobs", [])),
        "jobs_finished": finished,
        "finished_by_stage": dict(names),
        "jobs_failed": len(failures),
        "failed_jobs": [failure.model_dump() for failure in failures],
        "candidates": n_candidates,
        "stable": n_stable,
        "consensus": consensus,
        "log_file": str(directory / LOG_FILE),
    }


def _stage(job_name: str, campaign: str) -> str:
    """The pipeline stage a job belongs to, from its name (``other`` when none matches).

    Job names are ``<campaign>: <stage> ...``; the campaign's name is not read (a campaign
    called ``relax-test`` does not make every job a relaxation).
    """
    stage_part = job_name.removeprefix(f"{campaign}: ")
    for stage in ("consistent references", "campaign hull", "consensus", "generate", "relax", "hull", "validation", "DFT"):
        if stage in stage_part:
            return stage
    return "other"
