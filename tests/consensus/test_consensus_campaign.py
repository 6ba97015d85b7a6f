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

    # the hull picture coloured by the models' spread (candidates without a second opinion are grey)
    from matris_flows.api import plot_campaign

    assert plot_campaign(directory, "Fe-Li-O", tmp_path / "spread.png", color_by="spread").stat().st_size > 10_000
    with pytest.raises(ValueError, match="colour by"):
        plot_campaign(directory, "Fe-Li-O", tmp_path / "x.png", color_by="energy")

    # a rerun scores nothing that was scored: the same opinions, the same records
    before = _opinion_ids(directory)
    run_campaign(spec, directory, manager="local")
    assert _opinion_ids(directory) == before
    again = {d["candidate_id"]: d for d in query_campaign(directory) if d.get("consensus")}
    assert {cid: d["consensus"]["fingerprint"] for cid, d in again.items()} == {
        d["candidate_id"]: d["consensus"]["fingerprint"] for d in shortlisted
    }


@pytest.mark.slow
def test_relax_mode_re_relaxes_from_the_primary_structure(tmp_path):
    directory = tmp_path / "relaxed"
    spec = _spec("consensus-relax", potentials=["sevennet"], mode="relax")
    spec["generation"]["random_search"]["compositions"] = ["LiFeO2"]  # fewer candidates: relaxations cost more
    run_campaign(spec, directory, manager="local")

    from matris_flows.campaign.spec import load_spec

    loaded = load_spec(directory / "spec.yaml")
    store = connect_job_store(loaded.store_config(directory), directory)
    try:
        opinions = list(store.additional_stores[OPINIONS_STORE_NAME].query({}))
    finally:
        store.close()
    assert opinions and all(o["mode"] == "relax" and o["status"] == "ok" for o in opinions)
    for opinion in opinions:  # SevenNet's own relaxation: its steps, its structure, its benchmarked fmax
        assert opinion["n_steps"] >= 0 and opinion["structure"] is not None and opinion["converged"] is not None
        assert opinion["max_force"] is not None and (not opinion["converged"] or opinion["max_force"] <= 0.05 + 1e-6)
    shortlisted = [d for d in query_campaign(directory) if d.get("consensus")]
    assert len(shortlisted) == len(opinions)
    for doc in shortlisted:
        assert doc["consensus"]["mode"] == "relax" and doc["consensus"]["status"] == "ok"
        sevennet = next(v for v in doc["consensus"]["models"] if v["model"] == "sevennet")
        assert sevennet["converged"] is not None and doc["consensus_spread"] >= 0
