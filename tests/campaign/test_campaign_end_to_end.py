"""Campaigns end to end with a near-free potential (EMT): Dask vs run_locally, resume after a crash, CLI."""

import csv
import io
import json

import pytest
from campaign_specs import emt_spec, prototype_generation, spec_yaml

from matris_flows.campaign.directory import FLOW_FILE, SPEC_FILE
from matris_flows.campaign.reading import plot_campaign, query_campaign
from matris_flows.campaign.runner import resume_campaign, run_campaign
from matris_flows.campaign.spec import load_spec
from matris_flows.cli import main
from matris_flows.results import CandidateQuery
from matris_flows.stores.backends import make_job_store

# L1_2 A3B alloys of Cu, Ni, Pd; EMT energies are not MP-compatible, so the hull is the
# campaign-internal one (elemental references relaxed with EMT inside the hull job).
SPEC = spec_yaml(
    emt_spec("emt-alloys", prototype_generation(("Cu", "Ni", "Pd"), chunk_size=2), relax={"max_steps": 200}, execution={"n_workers": 2})
)


class Crash(RuntimeError):
    """Stands in for a driver killed mid-campaign."""


@pytest.fixture(scope="module")
def client():
    from matris_flows.execution import ExecutionProfile, open_client

    with open_client(ExecutionProfile(n_workers=2, threads_per_worker=1)) as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "emt.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def dask_campaign(spec_path, client, tmp_path_factory):
    directory = tmp_path_factory.mktemp("dask") / "emt-alloys"
    summary = run_campaign(spec_path, directory, client=client)
    return directory, summary


def _by_id(directory):
    return {doc["candidate_id"]: doc for doc in query_campaign(directory)}


def test_dask_campaign_screens_every_candidate(dask_campaign):
    directory, summary = dask_campaign
    docs = _by_id(directory)
    # The 6 ordered A3B pairs of Cu, Ni, Pd, all relaxed and on a campaign hull.
    assert summary.candidates == len(docs) == summary.generated == 6
    assert summary.relaxed == 6 and summary.jobs_failed == 0
    assert len({d["formula"] for d in docs.values()}) == 6
    assert {d["chemsys"] for d in docs.values()} == {"Cu-Ni", "Cu-Pd", "Ni-Pd"}
    for doc in docs.values():
        assert doc["thermo_status"] == "ok", doc.get("thermo_failure_reason")
        assert doc["hull_kind"] == "campaign_internal"
        assert doc["relaxation"]["potential"]["name"] == "ase.calculators.emt:EMT"
        # Against the reference hull a new stable phase lies below it (negative, as in Matbench
        # Discovery); against the hull that includes every candidate nothing can.
        assert doc["e_above_hull_campaign"] >= -1e-9
        assert doc["is_stable"] == (doc["e_above_hull"] <= 0.0)
    # EMT orders Cu3Pd and CuPd3 below the fcc elements (as experiment does); they are stable.
    assert summary.stable == sum(d["is_stable"] for d in docs.values()) >= 1
    assert (directory / SPEC_FILE).exists() and (directory / FLOW_FILE).exists()


def test_run_locally_gives_the_same_candidates(dask_campaign, spec_path, tmp_path):
    directory, _ = dask_campaign
    local_dir = tmp_path / "local"
    run_campaign(spec_path, local_dir, manager="local")
    dask_docs, local_docs = _by_id(directory), _by_id(local_dir)
    assert dask_docs.keys() == local_docs.keys()
    for candidate_id, doc in dask_docs.items():
        assert doc["e_above_hull"] == pytest.approx(local_docs[candidate_id]["e_above_hull"], abs=1e-6)
        assert doc["relaxation"]["n_steps"] == local_docs[candidate_id]["relaxation"]["n_steps"]


def test_crashed_campaign_resumes_with_every_candidate_exactly_once(dask_campaign, spec_path, client, tmp_path):
    directory = tmp_path / "crashed"
    finished_relaxations = []

    def crash_after_first_relaxation(event):
        if "relax" in event.name and event.status == "completed":
            finished_relaxations.append(event.uuid)
            raise Crash("driver killed")

    with pytest.raises(Crash):
        run_campaign(spec_path, directory, client=client, progress=crash_after_first_relaxation)
    assert not query_campaign(directory), "nothing is published before the hull"

    rerun_relaxations = []
    resume_campaign(directory, client=client, progress=lambda e: rerun_relaxations.append(e) if "relax" in e.name else None)
    # The relaxation finished before the crash was not run again.
    assert finished_relaxations[0] not in [e.uuid for e in rerun_relaxations if e.status == "completed"]
    resumed = _by_id(directory)
    assert resumed.keys() == _by_id(dask_campaign[0]).keys()

    spec = load_spec(directory / SPEC_FILE)
    store = make_job_store(spec.store_config(directory), directory)
    with store:
        outputs = store.docs_store.query(properties=["uuid", "index"])
        keys = [(doc["uuid"], doc["index"]) for doc in outputs]
    assert len(keys) == len(set(keys)), "no job output is stored twice"

    # A second resume changes nothing and publishes each candidate once.
    resume_campaign(directory, client=client)
    assert len(query_campaign(directory)) == len(resumed)


def test_queries_and_cli(dask_campaign, tmp_path, capsys):
    directory, _ = dask_campaign
    docs = query_campaign(directory, CandidateQuery(chemsys="Ni-Cu", sort="e_above_hull"))
    assert {d["chemsys"] for d in docs} == {"Cu-Ni"}
    values = [d["e_above_hull"] for d in docs]
    assert values == sorted(values)

    assert main(["query", str(directory), "--elements", "Pd", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out.strip())))
    assert rows and all("Pd" in row["chemsys"] for row in rows)

    assert main(["query", str(directory), "--max-e-above-hull", "0.0001", "--format", "json"]) == 0
    near_hull = json.loads(capsys.readouterr().out)
    assert all(d["e_above_hull"] <= 0.0001 for d in near_hull)

    assert main(["export", str(directory), "--formula", "Cu3Ni", "--format", "poscar", "--out", str(tmp_path / "x")]) == 0
    assert len(list((tmp_path / "x").iterdir())) == 1
    assert "wrote 1 structures" in capsys.readouterr().out

    png = plot_campaign(directory, "Ni-Cu", tmp_path / "hull.png")
    assert png.stat().st_size > 10_000

    assert main(["status", str(directory)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["candidates"] == 6
    by_stage = status["finished_by_stage"]
    assert by_stage["relax"] == by_stage["hull"] >= 1 and by_stage["campaign hull"] == 1 and "other" not in by_stage


@pytest.mark.parametrize("campaign", ["emt-alloys", "relax-hull-test"])
def test_status_groups_jobs_by_the_stage_in_their_name_not_the_campaigns(campaign):
    from matris_flows.campaign.status import _stage

    assert _stage(f"{campaign}: generate shard 3", campaign) == "generate"
    assert _stage(f"{campaign}: chunk: relax 3.1", campaign) == "relax"
    assert _stage(f"{campaign}: chunk: hull 3.1", campaign) == "hull"
    assert _stage(f"{campaign}: campaign hull", campaign) == "campaign hull"
    assert _stage(f"{campaign}: consistent references: relax 0", campaign) == "consistent references"


def test_a_changed_spec_does_not_silently_resume_an_old_campaign(dask_campaign, tmp_path):
    from matris_flows.campaign.spec import SpecError

    directory, _ = dask_campaign
    changed = tmp_path / "changed.yaml"
    changed.write_text(SPEC.replace("max_steps: 200", "max_steps: 100"))
    with pytest.raises(SpecError, match="different spec"):
        run_campaign(changed, directory, manager="local")


def test_cli_reports_a_bad_spec_without_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ngeneration: {}\n")
    assert main(["screen", str(bad)]) == 2
    assert "at least one source" in capsys.readouterr().err
