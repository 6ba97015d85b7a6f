"""Campaigns on a real one-node SLURM (bash .ci/slurm_up.sh): worker jobs, an sbatch'ed driver, scancel, walltime.

Each campaign is the synthetic EMT screening (no reference data, no weights) or, for the
driver submitted with ``sbatch``, an EMT prototype spec run by the CLI. Every test checks
by candidate id that nothing was lost, that no candidate was relaxed twice (across every
relaxation output in the store) and that the results equal an uninterrupted ``run_locally``.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from campaign_specs import emt_spec, prototype_generation, spec_yaml, write_spec_file

from matris_flows.execution import ExecutionProfile, open_client, run_on_dask
from matris_flows.execution.events import StalledError
from matris_flows.stores.backends import connect_job_store, make_candidates_store
from matris_flows.stores.config import StoreConfig
from matris_flows.testing.synthetic import synthetic_screening
from matris_flows.thermo.elemental import ELEMENTAL_ID_PREFIX as CORNER

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]

REPO = Path(__file__).resolve().parents[2]
N_CANDIDATES, CHUNK, STEPS = 24, 3, 20
WORKER_JOB = "dask-worker"  # dask-jobqueue's job name


class SqueueWatch:
    """Polls ``squeue`` in the background: which jobs of a name were seen running, and when."""

    def __init__(self, name: str = WORKER_JOB, interval: float = 0.5):
        self.name, self.interval = name, interval
        self.running: dict[str, list[float]] = {}  # job id -> [first, last] time seen running
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.is_set():
            for job_id in running_jobs(self.name):
                now = time.monotonic()
                self.running.setdefault(job_id, [now, now])[1] = now
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class Pace:
    """A progress callback that holds the driver so the k-th relaxation is taken in no sooner than k * ``interval`` s.

    The campaign then lasts at least ``n_chunks * interval`` however fast the machine is,
    long enough for worker jobs to come and go during it; on a busy machine it adds nothing.
    """

    def __init__(self, interval: float, then=None):
        self.interval, self.then = interval, then
        self.start = time.monotonic()
        self.relaxed = 0

    def __call__(self, event, client):
        if "relax" in event.name and event.status == "completed":
            self.relaxed += 1
            time.sleep(max(0.0, self.start + self.relaxed * self.interval - time.monotonic()))
        if self.then is not None:
            self.then(event, client)


def running_jobs(name: str = WORKER_JOB) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", name, "-t", "R", "-o", "%i"], capture_output=True, text=True, timeout=10)
    return out.stdout.split()


def slurm_profile(**options) -> ExecutionProfile:
    settings = {"kind": "slurm", "n_workers": 2, "cores": 1, "memory": "2GB", "walltime": "00:10:00",
                "local_directory": "/tmp", "stall_timeout": 180}
    return ExecutionProfile(**{**settings, **options})


def run_synthetic(directory: Path, profile: ExecutionProfile, progress=None, n: int = N_CANDIDATES) -> list:
    """The synthetic campaign on SLURM workers; returns its progress events."""
    events = []

    def record(event):
        events.append(event)
        if progress is not None:
            progress(event, client)

    store = connect_job_store(StoreConfig(), directory)
    with open_client(profile) as client:
        assert client.scheduler.address.startswith("tls://")  # TLS by default off the local machine
        maker = synthetic_screening(n, chunk_size=CHUNK, max_steps=STEPS, name="slurm")
        run_on_dask(maker.make(), store, client, keep_responses=False, progress=record, stall_timeout=profile.stall_timeout)
    return events


def candidates(directory: Path, campaign: str) -> dict[str, dict]:
    store = make_candidates_store(StoreConfig(), directory)
    try:
        docs = list(store.query({"campaign": campaign}))
    finally:
        store.close()
    ids = [doc["candidate_id"] for doc in docs]
    assert len(ids) == len(set(ids)), "a candidate published twice"
    return {doc["candidate_id"]: doc for doc in docs}


def relaxed_counts(directory: Path) -> collections.Counter:
    """How often each candidate id occurs across the candidates' relaxation outputs in the store.

    The elemental corners relaxed by the consistent-references job (``elemental-ref-<El>``) are
    references, not candidates: they are left out.
    """
    store = connect_job_store(StoreConfig(), directory)
    counts: collections.Counter = collections.Counter()
    with store:
        for doc in store.query({"output.@class": "RelaxBatchOutput"}, properties=["output"], load=True):
            counts.update(d["candidate_id"] for d in doc["output"]["documents"] if not d["candidate_id"].startswith(CORNER))
    return counts


def assert_same_results(directory: Path, reference: dict[str, dict], campaign: str = "slurm"):
    """0 lost, 0 relaxed twice, and the values of the uninterrupted run."""
    docs = candidates(directory, campaign)
    assert docs.keys() == reference.keys(), f"lost {sorted(reference.keys() - docs.keys())}"
    relaxed = relaxed_counts(directory)
    assert set(relaxed) == set(reference)
    assert [cid for cid, count in relaxed.items() if count > 1] == [], "relaxed more than once"
    for cid, doc in docs.items():
        expected = reference[cid]
        assert doc["thermo_status"] == expected["thermo_status"] == "ok"
        assert doc["energy_per_atom"] == pytest.approx(expected["energy_per_atom"], abs=1e-9)
        assert doc["e_above_hull_campaign"] == pytest.approx(expected["e_above_hull_campaign"], abs=1e-9)
        assert doc["relaxation"]["n_steps"] == expected["relaxation"]["n_steps"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, dict]:
    """The synthetic campaign run uninterrupted in this process (jobflow's run_locally)."""
    from jobflow import run_locally

    directory = tmp_path_factory.mktemp("reference")
    store = connect_job_store(StoreConfig(), directory)
    flow = synthetic_screening(N_CANDIDATES, chunk_size=CHUNK, max_steps=STEPS, name="slurm").make()
    run_locally(flow, store=store, create_folders=False, log=False)
    docs = candidates(directory, "slurm")
    assert len(docs) == N_CANDIDATES
    return docs


@pytest.fixture(autouse=True)
def job_logs_in_tmp(tmp_path, monkeypatch):
    """sbatch writes the worker jobs' slurm-*.out to the working directory: keep them out of the repo."""
    monkeypatch.chdir(tmp_path)


def test_campaign_workers_are_slurm_jobs(tmp_path, reference):
    with SqueueWatch() as watch:
        events = run_synthetic(tmp_path, slurm_profile())
    assert len(watch.running) == 2, f"squeue showed worker jobs {sorted(watch.running)}, not the 2 asked for"
    assert not [e for e in events if e.status == "failed"]
    assert_same_results(tmp_path, reference)
    assert running_jobs() == [] or _gone_soon(), "worker jobs outlive the campaign"


def _gone_soon(timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running_jobs():
            return True
        time.sleep(1)
    return False


def test_scancel_of_a_worker_job_mid_campaign(tmp_path, reference):
    cancelled: list[str] = []

    def cancel_after_first_relaxation(event, client):
        if not cancelled and "relax" in event.name and event.status == "completed":
            job_id = running_jobs()[0]
            subprocess.run(["scancel", job_id], check=True, timeout=10)
            cancelled.append(job_id)

    with SqueueWatch() as watch:
        # paced so that the campaign outlasts the start of a replacement job (>= 8 chunks x 4 s)
        events = run_synthetic(tmp_path, slurm_profile(), progress=Pace(4.0, then=cancel_after_first_relaxation))
    assert cancelled, "the campaign ended before a worker could be cancelled"
    assert not [e for e in events if e.status == "failed"]
    replacements = set(watch.running) - set(cancelled)
    assert len(replacements) >= 2, f"no replacement job: saw {sorted(watch.running)}, cancelled {cancelled}"
    assert_same_results(tmp_path, reference)


@pytest.mark.slow
def test_workers_retire_before_their_walltime_and_are_replaced(tmp_path, reference):
    # SLURM's smallest walltime is a minute; workers retire at 25-35 s (lifetime +/- stagger)
    profile = slurm_profile(walltime="00:01:00", worker_lifetime="30s", lifetime_stagger="5s")
    start = time.monotonic()
    with SqueueWatch() as watch:
        # paced to outlast the walltime: >= 8 chunks x 9 s
        events = run_synthetic(tmp_path, profile, progress=Pace(9.0))
    wall = time.monotonic() - start
    print(f"walltime test: {wall:.0f} s, worker jobs {len(watch.running)}, "
          f"retried {sum(e.status == 'retrying' for e in events)}, lifetimes {[round(b - a) for a, b in watch.running.values()]}")
    assert wall > 60, "the campaign did not outlast the walltime"
    assert not [e for e in events if e.status == "failed"]
    assert len(watch.running) >= 3, f"workers were not replaced: jobs {sorted(watch.running)} in {wall:.0f} s"
    # the workers' own logs (slurm-<job>.out, here): they left at their lifetime, SLURM killed none
    logs = [path.read_text() for path in tmp_path.glob("slurm-*.out")]
    assert sum("Reason: worker-lifetime-reached" in log for log in logs) >= 2
    assert not [log for log in logs if "DUE TO TIME LIMIT" in log]
    assert_same_results(tmp_path, reference)


def test_a_cluster_whose_workers_never_start_stops_with_a_clear_error(tmp_path):
    # every worker job exits at once: no worker ever joins, nothing finishes
    profile = slurm_profile(n_workers=1, job_script_prologue=["exit 1"], stall_timeout=10)
    start = time.monotonic()
    with pytest.raises(StalledError, match=r"no Dask worker and no job finished for \d+ s"):
        run_synthetic(tmp_path, profile, n=6)
    assert time.monotonic() - start < 90  # the 10 s timeout, plus starting and closing the cluster
    # resumable: the same directory finishes on workers that start
    events = run_synthetic(tmp_path, slurm_profile(n_workers=1), n=6)
    assert not [e for e in events if e.status == "failed"]
    assert len(candidates(tmp_path, "slurm")) == 6


SPEC = spec_yaml(
    emt_spec(
        "sbatch-emt", prototype_generation(("Cu", "Ni", "Pd"), chunk_size=2), relax={"max_steps": 100},
        execution={
            "kind": "slurm", "n_workers": 1, "cores": 1, "memory": "2GB", "walltime": "00:10:00",
            "local_directory": "/tmp", "stall_timeout": 180,
        },
    )
)


def test_driver_submitted_with_sbatch_starts_its_own_worker_jobs(tmp_path):
    from matris_flows.campaign.reading import query_campaign
    from matris_flows.campaign.runner import run_campaign

    (tmp_path / "campaign.yaml").write_text(SPEC)
    directory = tmp_path / "campaign"
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--cpus-per-task=1", "--mem=3G", "--time=00:05:00", f"--chdir={tmp_path}",
         f"--output={tmp_path}/driver.log",
         f"--export=ALL,MATRIS_FLOWS_VENV={REPO / '.venv'},CAMPAIGN_SPEC=campaign.yaml,CAMPAIGN_DIR={directory}",
         str(REPO / "workflows/slurm/submit.sh")],
        capture_output=True, text=True, check=True, timeout=30,
    )
    driver = submitted.stdout.strip().split(";")[0]
    workers_seen: set[str] = set()
    deadline = time.monotonic() + 280
    while _job_state(driver) in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
        assert time.monotonic() < deadline, "the driver job did not finish"
        workers_seen.update(running_jobs())
        time.sleep(0.5)
    log = (tmp_path / "driver.log").read_text()
    assert _job_state(driver) == "COMPLETED", log[-2000:]
    assert workers_seen, "the driver started no worker job"
    assert "Traceback" not in log
    docs = {doc["candidate_id"]: doc for doc in query_campaign(directory)}
    assert len(docs) == 6
    assert max(relaxed_counts(directory).values()) == 1
    # an uninterrupted run of the same spec in this process gives the same candidates
    local = tmp_path / "local"
    spec = SPEC.split("execution:")[0]
    (tmp_path / "local.yaml").write_text(spec)
    run_campaign(tmp_path / "local.yaml", local, manager="local")
    expected = {doc["candidate_id"]: doc for doc in query_campaign(local)}
    assert docs.keys() == expected.keys()
    for cid, doc in docs.items():
        assert doc["e_above_hull"] == pytest.approx(expected[cid]["e_above_hull"], abs=1e-9)


def _job_state(job_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=10).stdout
    for field in out.split():
        if field.startswith("JobState="):
            return field.split("=", 1)[1]
    return "GONE"


def test_python_example_submits_a_spec_to_slurm_workers(tmp_path):
    """workflows/python/slurm_screen.py: a spec file, its execution replaced by a SLURM profile built in Python."""
    from matris_flows.campaign.reading import query_campaign

    spec = emt_spec("python-slurm", prototype_generation(("Cu", "Ni", "Pd"), chunk_size=2), relax={"max_steps": 100})
    write_spec_file(tmp_path / "campaign.yaml", spec)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(REPO / "workflows/python/slurm_screen.py"), "campaign.yaml", "--dir", "campaign",
         "--workers", "1", "--cores", "1", "--memory", "2GB", "--walltime", "00:10:00", "--local-directory", "/tmp",
         "--stall-timeout", "180"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "6 candidates" in result.stderr and "0 jobs failed" in result.stderr
    assert list(tmp_path.glob("slurm-*.out")), "no worker ran as a SLURM job"
    docs = query_campaign(tmp_path / "campaign")
    assert len(docs) == 6 and all(d["thermo_status"] == "ok" for d in docs)
