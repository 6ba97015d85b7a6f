"""The consensus stage in a campaign: CHGNet relaxes, SevenNet-0 gives a second opinion, a model that cannot
handle the chemistry is marked on its candidates while the rest go on, and a rerun scores nothing again."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from matris_flows.api import CandidateQuery, query_campaign, run_campaign
from matris_flows.core.publishing import OPINIONS_STORE_NAME
from matris_flows.stores.backends import connect_job_store

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def _spec(name: str, **consensus) -> dict:
    """The demo's candidates (prototypes and random search of Li-Fe-O), relaxed with CHGNet, with a consensus section."""
    spec = yaml.safe_load((WORKFLOWS / "demo_li_fe_o.yaml").read_text())
    spec.update(name=name, execution={"kind": "local", "n_workers": 1})
    spec["relax"]["max_steps"] = 150
    spec["consensus"] = {"potentials": ["sevennet"], "shortlist": {"max_e_above_hull": 1.0}, **consensus}
    return spec


def _opinion_ids(directory) -> list[str]:
    from matris_flows.campaign.spec import load_spec

    spec = load_spec(directory / "spec.yaml")
    store = connect_job_store(spec.store_config(directory), directory)
    try:
        return sorted(d["opinion_id"] for d in store.additional_stores[OPINIONS_STORE_NAME].query({}, properties=["opinion_id"]))
    finally:
        store.close()


@pytest.mark.slow
def test_second_opinion_in_a_local_campaign_and_a_failing_model(tmp_path):
    directory = tmp_path / "c"
    spec = _spec("consensus-local", potentials=["sevennet", "ase.calculators.emt:EMT"])
    summary = run_campaign(spec, directory, manager="local")
    docs = query_campaign(directory)
    shortlisted = [d for d in docs if d.get("consensus")]
    assert shortlisted, "no candidate got a consensus record"
    assert summary.jobs_failed == 0, summary
    for doc in shortlisted:
        record = doc["consensus"]
        votes = {v["model"]: v for v in record["models"]}
        assert votes["chgnet"]["role"] == "primary" and votes["chgnet"]["e_above_hull"] == pytest.approx(doc["e_above_hull"])
        sevennet = votes["sevennet"]
        assert sevennet["status"] == "ok" and sevennet["version"] and len(sevennet["checkpoint_sha256"]) == 64
        assert sevennet["e_above_hull_campaign"] is not None and sevennet["e_above_hull_campaign"] <= sevennet["e_above_hull"] + 1e-9
        # EMT has no Li or Fe parameters: marked on every candidate, with the reason; the others' numbers stand
        emt = votes["ase.calculators.emt:EMT"]
        assert emt["status"] == "failed" and emt["failure_reason"]
        assert record["status"] == "partial" and record["n_models"] == 2
        values = [doc["e_above_hull"], sevennet["e_above_hull"]]
        assert doc["e_above_hull_consensus"] == pytest.approx(sum(values) / 2)  # median of two
        assert doc["consensus_spread"] == pytest.approx(abs(values[0] - values[1]))
        assert doc["is_stable_consensus"] == (doc["e_above_hull_consensus"] <= 0.0 and doc["relaxation"]["converged"])

    stable = query_campaign(directory, CandidateQuery(stable_consensus_only=True))
    assert sorted(d["candidate_id"] for d in stable) == sorted(d["candidate_id"] for d in shortlisted if d["is_stable_consensus"])
    agreeing = query_campaign(directory, CandidateQuery(max_consensus_spread=0.02))
    assert all(d["consensus_spread"] <= 0.02 for d in agreeing)

    # a rerun scores nothing that was scored: the same opinions, the same records
    before = _opinion_ids(directory)
    run_campaign(spec, directory, manager="local")
    assert _opinion_ids(directory) == before
    again = {d["candidate_id"]: d for d in query_campaign(directory) if d.get("consensus")}
    assert {cid: d["consensus"]["fingerprint"] for cid, d in again.items()} == {
        d["candidate_id"]: d["consensus"]["fingerprint"] for d in shortlisted
    }
