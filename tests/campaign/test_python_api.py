"""The Python API: plain jobflow gives what `matris-flows screen` gives; failures are reported; specs from dicts."""

from __future__ import annotations

import pytest
from campaign_specs import emt_spec, prototype_generation, write_spec_file
from jobflow import run_locally
from pymatgen.core import Structure

from matris_flows.api import (
    CandidateQuery,
    ScreeningMaker,
    SpecError,
    campaign_job_store,
    candidates_dataframe,
    load_spec,
    query_campaign,
    relaxed_structures,
    run_campaign,
    spec_from_dict,
)
from matris_flows.cli import main


def _spec(name: str, **sections) -> dict:
    return emt_spec(name, prototype_generation(("Cu", "Ni"), chunk_size=1), relax={"max_steps": 100},
                    execution={"n_workers": 1}, **sections)


def _by_id(directory) -> dict[str, dict]:
    return {doc["candidate_id"]: doc for doc in query_campaign(directory)}


def test_plain_jobflow_gives_the_candidates_of_screen(tmp_path, monkeypatch, capsys):
    """The README's snippet: ``from_spec(spec).make()`` run by ``run_locally`` on ``campaign_job_store(spec)``."""
    monkeypatch.chdir(tmp_path)
    spec_file = write_spec_file(tmp_path / "alloys.yaml", _spec("api-alloys"))
    assert main(["screen", str(spec_file), "--dir", str(tmp_path / "screened")]) == 0
    capsys.readouterr()

    spec = load_spec(spec_file)
    flow = ScreeningMaker.from_spec(spec).make()  # the default directory, campaigns/<name>, as screen's
    run_locally(flow, store=campaign_job_store(spec), ensure_success=True, log=False)

    screened, plain = _by_id(tmp_path / "screened"), _by_id(tmp_path / "campaigns" / "api-alloys")
    assert sorted(plain) == sorted(screened) and len(plain) == 2
    for candidate, doc in plain.items():
        expected = screened[candidate]
        assert doc["thermo_status"] == expected["thermo_status"] == "ok"
        assert doc["relaxation"]["energy_per_atom"] == pytest.approx(expected["relaxation"]["energy_per_atom"], abs=1e-6)
        assert doc["e_above_hull"] == pytest.approx(expected["e_above_hull"], abs=1e-6)
        assert doc["e_above_hull_campaign"] == pytest.approx(expected["e_above_hull_campaign"], abs=1e-6)
        assert doc["is_stable_campaign"] == expected["is_stable_campaign"]

    # reading: a DataFrame by candidate id, pymatgen structures, the query's filters
    table = candidates_dataframe(tmp_path / "screened", columns=["formula", "e_above_hull", "relaxation.n_steps"])
    assert sorted(table.index) == sorted(screened)
    assert list(table.columns) == ["formula", "e_above_hull", "relaxation.n_steps"]
    assert table.loc[candidate, "e_above_hull"] == pytest.approx(screened[candidate]["e_above_hull"])
    structures = relaxed_structures(tmp_path / "screened")
    assert sorted(structures) == sorted(screened) and all(isinstance(s, Structure) for s in structures.values())
    stable = candidates_dataframe(tmp_path / "screened", CandidateQuery(stable_campaign_only=True))
    assert set(stable.index) == {k for k, d in screened.items() if d["is_stable_campaign"]}


def test_a_failed_upstream_job_is_reported_not_an_empty_campaign(tmp_path, monkeypatch):
    """The consistent references cannot be read: run_locally raises, and the runner lists the failed jobs."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.json").write_text("this is not JSON")
    spec = spec_from_dict(_spec("api-broken", hull={"references": {"paths": [str(tmp_path / "broken.json")]}}))
    with pytest.raises(RuntimeError, match="did not finish running successfully"):
        run_locally(ScreeningMaker.from_spec(spec).make(), store=campaign_job_store(spec), ensure_success=True, log=False)

    summary = run_campaign(spec, tmp_path / "local", manager="local")
    assert summary.candidates == 0 and summary.jobs_failed >= 2
    errors = {failure.name: failure.error for failure in summary.failures}
    assert any("consistent references" in name for name in errors), errors
    hull_error = next(error for name, error in errors.items() if name.endswith("campaign hull"))
    assert "failed" in hull_error and "no candidate" in hull_error  # says why, instead of an empty campaign


def test_a_spec_from_a_dict_is_validated_like_a_file(tmp_path):
    good = _spec("api-dict")
    assert spec_from_dict(good) == load_spec(write_spec_file(tmp_path / "good.yaml", good))
    bad = {**good, "relax": {"max_stepz": 3}}
    with pytest.raises(SpecError, match=r"relax\.max_stepz") as from_dict:
        spec_from_dict(bad, source="my script")
    with pytest.raises(SpecError) as from_file:
        load_spec(write_spec_file(tmp_path / "bad.yaml", bad))
    assert "'my script'" in str(from_dict.value)
    assert str(from_dict.value).split("\n")[1:] == str(from_file.value).split("\n")[1:]  # the same reasons
    with pytest.raises(SpecError, match="must be a mapping"):
        spec_from_dict(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_campaign_job_store_refuses_a_directory_of_another_campaign(tmp_path):
    campaign_job_store(_spec("api-one"), tmp_path / "dir")
    campaign_job_store(_spec("api-one"), tmp_path / "dir")  # the same spec again: fine
    with pytest.raises(SpecError, match="another spec"):
        campaign_job_store(_spec("api-two"), tmp_path / "dir")

