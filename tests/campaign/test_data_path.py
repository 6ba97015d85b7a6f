"""The campaign data path at scale: flat fan-out, streamed results, bounded documents (synthetic EMT campaigns)."""

import json

import pytest

from matris_flows.execution import run_on_dask
from matris_flows.generation.schemas import GenerationShard
from matris_flows.stores.backends import connect_job_store, make_candidates_store
from matris_flows.stores.config import StoreConfig
from matris_flows.testing.synthetic import synthetic_screening


@pytest.fixture(scope="module")
def client():
    from matris_flows.execution import ExecutionProfile, open_client

    with open_client(ExecutionProfile(n_workers=2, threads_per_worker=1)) as dask_client:
        yield dask_client


def _run(directory, maker, client, progress=None):
    store = connect_job_store(StoreConfig(), directory)
    events = []

    def record(event):
        events.append(event)
        if progress is not None:
            progress(event)

    run_on_dask(maker.make(), store, client, keep_responses=False, progress=record)
    return store, events


def _candidates(directory, campaign):
    store = make_candidates_store(StoreConfig(), directory)
    try:
        return list(store.query({"campaign": campaign}))
    finally:
        store.close()


def _largest_document_kb(store, directory) -> float:
    """Largest JSON document in the queryable collections: job outputs, journal and candidates."""
    largest = 0
    with store:
        for collection in (store.docs_store, store.additional_stores["journal"], store.additional_stores["candidates"]):
            for doc in collection.query({}):
                doc.pop("_id", None)
                largest = max(largest, len(json.dumps(doc, default=str)))
    return largest / 1024


@pytest.mark.slow
def test_campaign_of_300_chunks_runs_to_the_end(client, tmp_path):
    n = 600
    maker = synthetic_screening(n, chunk_size=2, parallelism=2, max_steps=1, name="three-hundred")
    store, events = _run(tmp_path, maker, client)
    relax_jobs = {e.uuid for e in events if "relax" in e.name and e.status == "completed"}
    assert len(relax_jobs) >= 300
    assert not [e for e in events if e.status == "failed"]
    docs = _candidates(tmp_path, "three-hundred")
    ids = [d["candidate_id"] for d in docs]
    assert len(ids) == len(set(ids)) == n  # every candidate exactly once
    assert all(d["thermo_status"] == "ok" for d in docs)
    # the campaign-wide step saw every candidate
    assert all(d["e_above_hull_campaign"] is not None and d["campaign_hull_fingerprint"] for d in docs)
    assert min(d["e_above_hull_campaign"] for d in docs) >= -1e-9  # nothing below a hull that contains it


def test_rejection_with_a_structure_in_a_non_last_chunk(client, tmp_path):
    # every 7th unit has two atoms 0.3 Å apart: rejected by the distance filter, structure attached
    maker = synthetic_screening(40, chunk_size=4, parallelism=2, bad_every=7, name="rejects")
    store, events = _run(tmp_path, maker, client)
    assert not [e for e in events if e.status == "failed"]
    with store:
        # the chunks live in the data store (a blob reference here); the report is what matters
        shards = [
            GenerationShard.model_validate({**doc["output"], "chunks": []})
            for doc in store.docs_store.query({"output.shard_index": {"$exists": True}}, properties=["output"])
        ]
    rejected = [(s.shard_index, r) for s in shards for r in s.report.rejected]
    assert len(rejected) == 5 and all(r.reason.value == "min_distance" and r.structure is not None for _, r in rejected)
    assert min(index for index, _ in rejected) < max(s.shard_index for s in shards)  # not only in the last shard
    for shard in shards:
        json.dumps(shard.report.model_dump(mode="json"))  # the failure of issue 9: a structure in a JSON dump
    assert len(_candidates(tmp_path, "rejects")) == 35


def test_largest_document_does_not_grow_with_the_campaign(client, tmp_path):
    sizes = {}
    for n in (40, 400):
        directory = tmp_path / str(n)
        store, _ = _run(directory, synthetic_screening(n, chunk_size=10, parallelism=2, name=f"size-{n}"), client)
        sizes[n] = _largest_document_kb(store, directory)
        assert len(_candidates(directory, f"size-{n}")) == n
    assert sizes[400] < 64, sizes
    assert sizes[400] <= 1.25 * sizes[40], sizes


def test_candidates_are_queryable_while_later_chunks_run(client, tmp_path):
    n, chunk = 24, 2
    seen = []

    def look(event):
        if "hull" in event.name and "campaign" not in event.name and event.status == "completed" and not seen:
            relaxed = sum(1 for e in events if "relax" in e.name and e.status == "completed")
            seen.append((len(_candidates(tmp_path, "streamed")), relaxed))

    events = []
    _, all_events = _run(tmp_path, synthetic_screening(n, chunk_size=chunk, parallelism=2, name="streamed"), client,
                         progress=lambda e: (events.append(e), look(e)))
    n_chunks = sum(1 for e in all_events if "relax" in e.name and e.status == "completed")
    (published, relaxed_then), = seen
    assert 0 < published < n  # the first chunk's documents were there, the campaign was not done
    assert relaxed_then < n_chunks  # later chunks had not been relaxed yet
    assert len(_candidates(tmp_path, "streamed")) == n
