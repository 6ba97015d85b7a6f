import json
import re

import pytest
from jobflow import JobStore
from maggma.stores import MemoryStore

from matris_flows.execution.clusters import ExecutionProfile, open_client

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(scope="session")
def dask_client():
    """Two single-threaded worker processes, shared by the execution tests."""
    profile = ExecutionProfile(n_workers=2, torch_threads=1)
    with open_client(profile) as client:
        yield client


def memory_job_store() -> JobStore:
    return JobStore(
        MemoryStore(), additional_stores={"data": MemoryStore(), "journal": MemoryStore()}
    )


def normalized_contents(store: JobStore) -> dict[str, list]:
    """Store contents comparable across managers.

    Timestamps are dropped; uuids of jobs are replaced by the job's name (dynamic jobs
    get fresh uuids on each run), other uuids (dynamic flows, blobs) by a placeholder.
    """
    docs = sorted(
        store.query({}, properties=["uuid", "index", "name", "output", "hosts"]),
        key=lambda d: d["index"],
    )
    names: dict[str, str] = {}
    for doc in docs:
        names.setdefault(doc["uuid"], doc["name"])

    def normalize(obj) -> str:
        text = json.dumps(obj, sort_keys=True, default=str)
        return _UUID.sub(lambda m: f"<{names.get(m.group(0), 'uuid')}>", text)

    outputs = sorted(
        normalize({k: d[k] for k in ("uuid", "index", "name", "output", "hosts")})
        for d in docs
    )
    blobs = sorted(
        normalize({k: b[k] for k in ("data", "job_uuid", "job_index")})
        for b in store.additional_stores["data"].query({})
    )
    return {"outputs": outputs, "data": blobs}


@pytest.fixture
def new_job_store():
    return memory_job_store


@pytest.fixture
def store_contents():
    return normalized_contents
