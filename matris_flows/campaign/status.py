"""Where a campaign stands (``matris-flows status``): jobs finished and failed, candidates, whether a driver runs it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matris_flows.campaign.directory import FLOW_FILE, LOG_FILE, campaign_spec_file, driver_alive, lock_holder, read_failures
from matris_flows.campaign.spec import CampaignSpec, load_spec
from matris_flows.stores.backends import make_collection_store

if TYPE_CHECKING:
    from maggma.core import Store


@dataclass
class CampaignStores:
    """The collections of a campaign that its readers (``status``, ``serve``) use, opened read-only."""

    spec: CampaignSpec
    directory: Path
    candidates: Store
    references: Store
    docs: Store

    def scope(self) -> dict[str, Any]:
        """Criteria selecting this campaign's documents: none when its candidates are all the collection holds.

        A campaign's embedded store holds that campaign alone, and then the ``campaign`` criterion
        only costs: SQLite, without statistics, may read a selective query through the index on
        ``campaign`` (every row) instead of the selective one (0.8 s instead of 0.01 s on 10⁵
        candidates). A shared database (MongoDB, or one SQLite file named by several campaigns) keeps it.
        """
        others = [name for name in self.candidates.distinct("campaign") if name != self.spec.name]
        return {"campaign": self.spec.name} if others else {}

    def close(self) -> None:
        """Close every collection."""
        for store in (self.candidates, self.references, self.docs):
            store.close()


def open_campaign_stores(directory: str | Path) -> CampaignStores:
    """The campaign's candidates, references and job-output collections, connected read-only.

    Nothing is created, indexed or written (a reader beside the running driver). Raises
    SpecError when ``directory`` holds no campaign, and the store's own errors (a missing or
    damaged database, an unreachable server) as they come.
    """
    directory = Path(directory)
    spec = load_spec(campaign_spec_file(directory))
    config = spec.store_config(directory)
    opened: list[Store] = []
    try:
        for collection, key in ((config.candidates_collection, "candidate_id"),
                                (config.references_collection, "reference_id"), (config.docs_collection, "uuid")):
            store = make_collection_store(config, directory, collection, read_only=True)
            store.key = key
            store.connect()
            opened.append(store)
    except BaseException:
        for store in opened:
            store.close()
        raise
    return CampaignStores(spec, directory, *opened)


@contextmanager
def campaign_stores(directory: str | Path) -> Iterator[CampaignStores]:
    """:func:`open_campaign_stores`, closed afterwards."""
    stores = open_campaign_stores(directory)
    try:
        yield stores
    finally:
        stores.close()


def campaign_status(directory: str | Path) -> dict[str, Any]:
    """Jobs finished/expected, failed jobs with their errors and candidate counts of a campaign directory.

    Read-only and light: no jobflow or Dask import, the Flow is read as plain JSON.
    """
    with campaign_stores(directory) as stores:
        return status_of(stores)


def status_of(stores: CampaignStores) -> dict[str, Any]:
    """:func:`campaign_status` of opened stores (``serve`` keeps them open between calls)."""
    spec, directory = stores.spec, stores.directory
    flow = json.loads((directory / FLOW_FILE).read_text()) if (directory / FLOW_FILE).is_file() else {}
    # one count per job: a replaced job's output is stored again under its uuid by jobflow's
    # ``store_inputs`` job (a later index), which belongs to the stage of the job it replaced
    stages: dict[str, str] = {}
    for doc in stores.docs.query(properties=["name", "uuid", "index"], sort={"index": 1}):
        stages.setdefault(doc.get("uuid", ""), _stage(doc.get("name", ""), spec.name))
    names = Counter(stages.values())
    finished = stores.docs.count()
    candidates, campaign = stores.candidates, stores.scope()
    n_candidates = candidates.count(campaign)
    by_status = {status: candidates.count({**campaign, "thermo_status": status})
                 for status in ("ok", "rejected", "relax_failed", "no_reference", "job_failed")}
    consensus = {
        "second_opinions": candidates.count({**campaign, "consensus": {"$ne": None}}),
        "stable_consensus": candidates.count({**campaign, "is_stable_consensus": True}),
        "model_failed": candidates.count({**campaign, "consensus.status": {"$in": ["partial", "failed"]}}),
    } if spec.consensus is not None else None
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
        "generated": generation_totals(stores.docs)["n_accepted"],
        # job_failed placeholders are not screened: their rerun counts them
        "screened": n_candidates - by_status["job_failed"],
        "candidates": n_candidates,
        "candidates_by_status": by_status,
        "stable": candidates.count({**campaign, "is_stable": True}),
        "stable_campaign": candidates.count({**campaign, "is_stable_campaign": True}),
        "consensus": consensus,
        "log_file": str(directory / LOG_FILE),
    }


def generation_totals(docs_store: Store) -> dict[str, int]:
    """Generation counts summed over the shard outputs in the job-output collection (each shard reports only its own units)."""
    totals = {"n_accepted": 0, "n_rejected": 0, "n_duplicates": 0, "n_shards": 0}
    shards = docs_store.query(
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
