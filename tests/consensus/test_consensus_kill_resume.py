"""The consensus stage on Dask: SIGKILL the driver after a scoring job finished, resume, and nothing is scored twice."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from campaign_specs import write_spec_file

from matris_flows.campaign.reading import query_campaign
from matris_flows.campaign.runner import resume_campaign
from matris_flows.campaign.spec import load_spec
from matris_flows.core.publishing import OPINIONS_STORE_NAME
from matris_flows.execution.kill_points import KILL_AT_ENV
from matris_flows.stores.backends import connect_job_store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client():
    from matris_flows.execution import ExecutionProfile, open_client

    with open_client(ExecutionProfile(n_workers=2, threads_per_worker=1)) as dask_client:
        yield dask_client


def _opinions(directory: Path) -> dict[str, dict]:
    spec = load_spec(directory / "spec.yaml")
    store = connect_job_store(spec.store_config(directory), directory)
    try:
        docs = store.additional_stores[OPINIONS_STORE_NAME].query({}, properties=["opinion_id", "candidate_id", "scored_at", "status"])
        return {d["opinion_id"]: d for d in docs}
    finally:
        store.close()


@pytest.mark.slow
def test_driver_killed_during_scoring_resumes_without_rescoring(tmp_path, client):
    spec = yaml.safe_load((REPO / "workflows" / "demo_li_fe_o.yaml").read_text())
    spec.update(name="consensus-kill", execution={"kind": "address", "address": client.scheduler.address, "tls": False})
    spec["relax"]["max_steps"] = 150
    spec["consensus"] = {"potentials": ["sevennet"], "shortlist": {"max_e_above_hull": 1.0}, "chunk_size": 1}
    spec_path = write_spec_file(tmp_path / "spec.yaml", spec)
    directory = tmp_path / "run"

    env = {**os.environ, KILL_AT_ENV: "journal:2:consensus: sevennet", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "matris_flows.cli", "screen", str(spec_path), "--dir", str(directory)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert re.search(r"kill point reached .*consensus: sevennet", proc.stderr), proc.stderr[-3000:]
    before = _opinions(directory)
    assert len(before) >= 2, "the two journaled scoring jobs had published their opinions"
    assert not any(d.get("consensus") for d in query_campaign(directory)), "the consensus step had not run yet"

    summary = resume_campaign(directory, client=client)

    assert summary.jobs_failed == 0
    after = _opinions(directory)
    for opinion_id, doc in before.items():  # scored before the kill: not scored again
        assert after[opinion_id]["scored_at"] == doc["scored_at"], opinion_id
    shortlisted = [d for d in query_campaign(directory) if d.get("consensus")]
    assert len(shortlisted) == len(after) > len(before)
    assert all(d["consensus"]["status"] == "ok" and d["consensus_spread"] is not None for d in shortlisted)
    assert summary.second_opinions == len(shortlisted)
