"""A relaxation job killed mid-chunk (its worker lost) reruns from where it stopped, not from scratch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from matris_flows.relax.progress import SCRATCH_ENV, ChunkProgress, progress_directory

JOB_UUID = "5e1f0c3a-0000-4000-8000-00000000c4c4"
SCRIPT = f"""
import sys
from jobflow import Flow, JobStore, run_locally
from maggma.stores import MemoryStore
from matris_flows.relax.jobs import RelaxMaker
from matris_flows.relax.schemas import RelaxSettings
from matris_flows.testing.synthetic import chain_structure, compositions

elements = ("Cu", "Ni", "Pd")
structures = [chain_structure(c, elements) for c in compositions(elements, 6, max_atoms=6)]
maker = RelaxMaker(
    potential="matris_flows.testing.poison:PoisonEMT", device="cpu",
    settings=RelaxSettings(engine="ase", max_steps=40),
    potential_options={{"calculator_kwargs": {{"delay_s": float(sys.argv[1])}}}},
)
job = maker.make(structures)
job.uuid = "{JOB_UUID}"
store = JobStore(MemoryStore(), additional_stores={{"data": MemoryStore()}})
run_locally(Flow([job]), store=store, log=False, ensure_success=True)
output = store.query_one({{"uuid": "{JOB_UUID}"}}, load=True)["output"]
import json
print(json.dumps([[d["candidate_id"], d["wall_time_s"], d["status"]] for d in output["documents"]]))
"""


def _progress_file(scratch: Path) -> Path | None:
    found = list((scratch / "relax-progress").glob(f"{JOB_UUID}-1-*.jsonl"))
    return found[0] if found else None


def test_a_killed_job_reuses_the_relaxations_it_had_finished(tmp_path):
    import json

    env = {**os.environ, SCRATCH_ENV: str(tmp_path), "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen([sys.executable, "-c", SCRIPT, "0.02"], env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    recorded: list[dict] = []
    while time.monotonic() < deadline and driver.poll() is None:
        path = _progress_file(tmp_path)
        if path is not None and len(path.read_text().splitlines()) >= 2:
            os.kill(driver.pid, signal.SIGKILL)  # the worker is lost mid-chunk
            break
        time.sleep(0.05)
    driver.wait()
    assert driver.returncode == -signal.SIGKILL, "the job finished before it could be killed"
    path = _progress_file(tmp_path)
    recorded = [json.loads(line)["document"] for line in path.read_text().splitlines() if line.strip()]
    assert 2 <= len(recorded) < 6

    rerun = subprocess.run([sys.executable, "-c", SCRIPT, "0.02"], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    documents = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert len(documents) == 6 and all(status == "converged" for _, _, status in documents)
    by_id = {candidate: wall for candidate, wall, _ in documents}
    for doc in recorded:  # reused as recorded, not relaxed again (a new run would time it anew)
        assert by_id[doc["candidate_id"]] == doc["wall_time_s"]
    assert _progress_file(tmp_path) is None  # marked done once the job returned
    assert len(list((tmp_path / "relax-progress").glob(f"{JOB_UUID}-1-*.jsonl.done"))) == 1


def test_progress_file_round_trip_and_a_cut_line_is_ignored(tmp_path, monkeypatch):
    from matris_flows.relax.isolated import relax_chunk
    from matris_flows.relax.schemas import RelaxSettings
    from matris_flows.testing.synthetic import chain_structure

    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path))
    structure = chain_structure((1, 1), ("Cu", "Ni"))
    documents = relax_chunk([structure], ["cand-x"], "ase.calculators.emt:EMT", RelaxSettings(engine="ase", isolate=False)).documents
    progress = ChunkProgress(progress_directory() / "some-job.jsonl")
    progress.record(documents[0], None)
    with open(progress.path, "a") as handle:
        handle.write('{"document": {"candidate_id": "cand-y", "form')  # a write cut by SIGKILL
    loaded = progress.load()
    assert list(loaded) == ["cand-x"]
    assert loaded["cand-x"][0].energy == documents[0].energy
    assert loaded["cand-x"][0].structure == documents[0].structure
    assert oct(progress.path.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "relax-progress").stat().st_mode & 0o777) == "0o700"


def test_a_shared_scratch_folder_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path))
    (tmp_path / "relax-progress").mkdir(mode=0o777)
    os.chmod(tmp_path / "relax-progress", 0o777)
    assert progress_directory() is None


def test_outside_a_job_nothing_is_recorded(monkeypatch, tmp_path):
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path))
    assert ChunkProgress.for_current_job("abc") is None


def test_a_new_scratch_root_is_created_private(monkeypatch, tmp_path):
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "fresh" / "scratch"))
    folder = progress_directory()
    assert folder == tmp_path / "fresh" / "scratch" / "relax-progress"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"


def test_a_returned_job_recomputed_by_dask_reuses_its_done_file(tmp_path, monkeypatch):
    """Dask recomputes a finished task whose result died with its worker: the done file serves it."""
    from matris_flows.relax.isolated import relax_chunk
    from matris_flows.relax.schemas import RelaxSettings
    from matris_flows.testing.synthetic import chain_structure

    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path))
    documents = relax_chunk([chain_structure((1, 1), ("Cu", "Ni"))], ["cand-x"], "ase.calculators.emt:EMT",
                            RelaxSettings(engine="ase", isolate=False)).documents
    progress = ChunkProgress(progress_directory() / "job-1-abc.jsonl")
    progress.record(documents[0], None)
    progress.remove()
    assert not progress.path.exists()
    assert list(ChunkProgress(progress.path).load()) == ["cand-x"]
