import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from jobflow import JobStore
from maggma.stores import MemoryStore

from matris_flows.execution.clusters import ExecutionProfile, open_client

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(scope="session")
def dask_client():
    """Two worker processes (two task threads each, one torch thread), shared by the execution tests."""
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


_REPO = Path(__file__).resolve().parents[2]
_SLURM_STATE = Path(os.environ.get("MATRIS_FLOWS_SLURM_DIR", "/tmp/matris-flows-slurm"))


def _slurm_answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(state in states for state in ("idle", "mix", "alloc"))


@pytest.fixture(scope="session")
def slurm():
    """A responding one-node SLURM (.ci/slurm_up.sh); tests skip where there is none.

    Daemons already running (CI starts them in .ci/run) are used as they are; where SLURM is
    installed but not running, the daemons are started here and stopped at the end of the
    session, by the PIDs the script recorded. Nothing is installed from here.
    """
    started = False
    if not _slurm_answers():
        if shutil.which("slurmctld") is None or os.geteuid() != 0:
            pytest.skip("no SLURM here: run `bash .ci/slurm_up.sh` as root (CI does)")
        result = subprocess.run(
            ["bash", str(_REPO / ".ci/slurm_up.sh"), "--no-install"], capture_output=True, text=True, timeout=180
        )
        if result.returncode != 0 or not _slurm_answers():
            pytest.skip(f"SLURM could not be started: {(result.stderr or result.stdout).strip()[-300:]}")
        started = True
    pids = (_SLURM_STATE / "pids").read_text().split() if started else []
    yield
    if started:
        subprocess.run(["bash", str(_REPO / ".ci/slurm_down.sh")], timeout=60, check=False)
        for pid in pids:  # the script stopped these; make sure nothing it started lives on
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                continue
            raise AssertionError(f"SLURM daemon {pid} still running after slurm_down.sh")
