"""Real kill tests: SIGKILL the driver (at exact points of its write path) or Dask workers mid-chunk, then resume.

The driver runs as ``matris-flows screen``/``resume`` in a subprocess, connected to this
module's local Dask cluster (``execution.kind: address``), and kills itself with SIGKILL at
a point named in ``MATRIS_FLOWS_TEST_KILL_AT`` (see :mod:`matris_flows.execution.kill_points`):
no exception, no ``finally``, no flush. After each kill the campaign is resumed and must end
with the candidates of an uninterrupted run (ids, energies, hull distances), and the data
store must hold at most one relaxation per candidate, except the candidates of the one chunk
whose output was written when the driver died (it is rerun, its record is stored again).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from campaign_specs import emt_spec, write_fcc_references, write_spec_file

from matris_flows.campaign.directory import SPEC_FILE
from matris_flows.campaign.reading import query_campaign
from matris_flows.campaign.runner import resume_campaign, run_campaign
from matris_flows.campaign.spec import load_spec
from matris_flows.execution.kill_points import KILL_AT_ENV
from matris_flows.stores.backends import make_job_store
from matris_flows.stores.config import DATA_STORE_NAME

REPO = Path(__file__).resolve().parents[2]
ELEMENTS = ("Cu", "Ni", "Pd")
N_CANDIDATES = 12  # 6 relaxation chunks of 2


@pytest.fixture(scope="module")
def client():
    from matris_flows.execution import ExecutionProfile, open_client

    with open_client(ExecutionProfile(n_workers=2, threads_per_worker=1)) as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory, client):
    """A 12-candidate EMT campaign from a pymatgen JSON file; its drivers use this module's cluster."""
    from monty.serialization import dumpfn

    from matris_flows.testing.synthetic import chain_structure, compositions

    folder = tmp_path_factory.mktemp("kill-spec")
    dumpfn([chain_structure(c, ELEMENTS) for c in compositions(ELEMENTS, N_CANDIDATES, max_atoms=8)], folder / "structures.json")
    # hand-made references: the fcc elements, so the consistent (EMT) hull relaxes three phases
    references = write_fcc_references(folder / "references.json")
    spec = emt_spec(
        "kill-test", {"files": {"paths": [str(folder / "structures.json")]}, "chunk_size": 2},
        relax={"max_steps": 30, "engine": "ase"}, hull={"references": {"paths": [str(references)]}},
        # this module's cluster on 127.0.0.1
        execution={"kind": "address", "address": client.scheduler.address, "tls": False},
    )
    return write_spec_file(folder / "spec.yaml", spec)


@pytest.fixture(scope="module")
def uninterrupted(spec_path, client, tmp_path_factory):
    """Candidates of the campaign run without interruption."""
    directory = tmp_path_factory.mktemp("uninterrupted") / "kill-test"
    summary = run_campaign(spec_path, directory, client=client)
    assert summary.candidates == N_CANDIDATES and summary.jobs_failed == 0
    return directory, _results(directory)


def _results(directory: Path) -> dict[str, tuple]:
    """Each candidate's formula, energy, hull distances and stability (what a user reads)."""
    return {
        doc["candidate_id"]: (
            doc["formula"],
            doc["relaxation"]["energy"],
            doc["energy_per_atom"],
            doc["e_above_hull"],
            doc["e_above_hull_campaign"],
            doc["is_stable"],
            doc["thermo_status"],
        )
        for doc in query_campaign(directory)
    }


def _relaxations(directory: Path) -> dict[str, list[str]]:
    """Candidate id -> the uuids of the relax jobs of every relaxation record in the data store."""
    spec = load_spec(directory / SPEC_FILE)
    store = make_job_store(spec.store_config(directory), directory)
    relaxed: dict[str, list[str]] = defaultdict(list)
    with store:
        for blob in store.additional_stores[DATA_STORE_NAME].query({}, properties=["job_uuid", "data"]):
            items = blob["data"] if isinstance(blob["data"], list) else []
            for item in items:
                # the candidates' relaxations (reference phases are relaxed for the consistent hull too)
                if isinstance(item, dict) and str(item.get("candidate_id")).startswith("cand-") and "n_steps" in item:
                    relaxed[item["candidate_id"]].append(blob["job_uuid"])
    return relaxed


def _relaxed_twice(directory: Path) -> dict[str, list[str]]:
    return {cid: jobs for cid, jobs in _relaxations(directory).items() if len(jobs) > 1}


def _killed_driver(args: list[str], kill_at: str) -> str:
    """Run ``matris-flows <args>`` until it SIGKILLs itself at ``kill_at``; the uuid of the job it died at."""
    env = {**os.environ, KILL_AT_ENV: kill_at, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "matris_flows.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, f"driver exited with {proc.returncode}, not killed at {kill_at}:\n{proc.stderr[-3000:]}"
    found = re.search(r"kill point reached .* ([0-9a-f-]{36}); SIGKILL", proc.stderr)
    assert found, proc.stderr[-3000:]
    return found.group(1)


def _assert_same_candidates(directory: Path, expected: dict[str, tuple]) -> None:
    got = _results(directory)
    assert got.keys() == expected.keys(), "candidates lost or added by the kill"
    for candidate_id, values in expected.items():
        assert got[candidate_id] == pytest.approx(values, abs=1e-9), candidate_id


def test_driver_killed_between_output_write_and_journal_record(spec_path, client, uninterrupted, tmp_path):
    directory = tmp_path / "kill-test"
    # the second relaxation chunk's output (its relaxation records included) is stored, its journal record is not
    killed_job = _killed_driver(["screen", str(spec_path), "--dir", str(directory)], "output:2:kill-test: relax")
    before = _relaxations(directory)
    killed_chunk = {cid for cid, jobs in before.items() if killed_job in jobs}
    assert len(killed_chunk) == 2 and len(before) < N_CANDIDATES

    resume_campaign(directory, client=client)

    _assert_same_candidates(directory, uninterrupted[1])
    twice = _relaxed_twice(directory)
    # only the chunk in flight was relaxed again, under its own job uuid (no other candidate twice)
    assert set(twice) == killed_chunk, twice
    assert all(jobs == [killed_job, killed_job] for jobs in twice.values()), twice


def test_driver_killed_again_and_again_at_other_points(spec_path, client, uninterrupted, tmp_path):
    directory = tmp_path / "kill-test"
    # 1. the generation shard's output is stored but not journaled: its chunks never started
    _killed_driver(["screen", str(spec_path), "--dir", str(directory)], "output:1:shard")
    assert not _relaxations(directory)
    # 2. a hull job published its candidate documents, its output is not stored
    _killed_driver(["resume", str(directory)], "write:1:kill-test: hull")
    assert query_campaign(directory), "the killed hull job had published candidates"
    # 3. a relaxation is journaled, its hull job is not started
    _killed_driver(["resume", str(directory)], "journal:2:kill-test: relax")
    # 4. the campaign-wide hull wrote its output; its journal record is missing
    _killed_driver(["resume", str(directory)], "output:1:campaign hull")

    summary = resume_campaign(directory, client=client)

    assert summary.jobs_failed == 0
    _assert_same_candidates(directory, uninterrupted[1])
    relaxations = _relaxations(directory)
    assert set(relaxations) == set(uninterrupted[1])
    assert not _relaxed_twice(directory), "no relaxation was in flight between output and journal at any kill"


class _WorkerKiller(threading.Thread):
    """SIGKILLs the worker process that is executing a relaxation, ``n_kills`` times, a chunk at a time."""

    def __init__(self, client, n_kills: int):
        super().__init__(daemon=True)
        self.client, self.n_kills = client, n_kills
        self.killed: list[tuple[int, str]] = []
        self.done = threading.Event()

    def run(self):
        killed_keys = set()
        while not self.done.is_set() and len(self.killed) < self.n_kills:
            try:
                executing = self.client.run(_executing_tasks)
            except Exception:  # noqa: BLE001 - a worker restarting; ask again
                time.sleep(0.05)
                continue
            for pid, keys in executing.values():
                relax = [key for key in keys if key.startswith("kill-test: relax-") and key not in killed_keys]
                if relax:
                    time.sleep(0.2)  # into the chunk
                    os.kill(pid, signal.SIGKILL)
                    killed_keys.update(relax)
                    self.killed.append((pid, relax[0]))
                    break
            time.sleep(0.02)


def _executing_tasks(dask_worker):
    return os.getpid(), [str(ts.key) for ts in dask_worker.state.executing]


def _slow_down_relaxations(seconds: float):
    """Make each relaxation chunk on this worker wait ``seconds`` first: a window to kill it in (results unchanged)."""
    import matris_flows.relax.jobs as relax_jobs

    relax = getattr(relax_jobs.relax_chunk, "unslowed", relax_jobs.relax_chunk)

    def slowed(*args, **kwargs):
        time.sleep(seconds)
        return relax(*args, **kwargs)

    slowed.unslowed = relax
    relax_jobs.relax_chunk = slowed if seconds else relax


def test_workers_killed_mid_chunk(spec_path, client, uninterrupted, tmp_path):
    directory = tmp_path / "kill-test"
    client.run(_slow_down_relaxations, 1.0)  # restarted workers run at full speed
    killer = _WorkerKiller(client, n_kills=2)
    killer.start()
    try:
        summary = run_campaign(spec_path, directory, client=client)
    finally:
        killer.done.set()
        killer.join()
        client.wait_for_workers(2, timeout=120)  # the nannies restart the killed workers
        client.run(_slow_down_relaxations, 0.0)
    assert len(killer.killed) == 2, killer.killed
    assert summary.jobs_failed == 0
    _assert_same_candidates(directory, uninterrupted[1])
    relaxations = _relaxations(directory)
    assert set(relaxations) == set(uninterrupted[1])
    # a killed worker's attempt wrote nothing: every candidate has exactly one relaxation record
    assert not _relaxed_twice(directory)


def test_a_tampered_journal_record_stops_resume_with_one_line(uninterrupted, capsys):
    from matris_flows.cli import main

    directory, _ = uninterrupted
    spec = load_spec(directory / SPEC_FILE)
    store = make_job_store(spec.store_config(directory), directory)
    with store:
        journal = store.additional_stores["journal"]
        record = journal.query_one({"name": "kill-test: generate"})
        record.pop("_id", None)
        # the planning job's addition (its generation shards) now runs a shell command
        record["addition"]["jobs"][0]["function"] = {"@module": "os", "@callable": "system"}
        record["addition"]["jobs"][0]["function_args"] = [f"touch {directory / 'pwned'}"]
        journal.update(record, key=["uuid", "index"])
    assert main(["resume", str(directory)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "refusing to decode the function" in err[-1] and "system" in err[-1], err
    assert not (directory / "pwned").exists()
