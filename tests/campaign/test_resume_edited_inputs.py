"""Resume after the input folder changed: no structure relaxed twice, none lost (issue 18).

File work units are a path and the digest of its content, fixed when the campaign is
planned, not positions in a folder listing. A campaign over six files (one file per
generation shard) stops after two shards; then a file of a finished shard and a file of
an unfinished one are deleted, or a new file is added in front of the listing. Before,
the unfinished shards listed the folder again: deleting shifted every later file onto
the previous shard's place (one never screened), adding shifted them onto the next (one
relaxed twice).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from campaign_specs import FCC, emt_spec, write_fcc_references, write_spec_file

from matris_flows.campaign.directory import SPEC_FILE
from matris_flows.campaign.runner import resume_campaign, run_campaign
from matris_flows.campaign.spec import load_spec
from matris_flows.stores.backends import make_job_store
from matris_flows.stores.config import DATA_STORE_NAME

ELEMENTS = ("Cu", "Ni", "Pd")
N_FILES = 6


class Crash(RuntimeError):
    """Stands in for a driver killed mid-campaign."""


@pytest.fixture(scope="module")
def client():
    from matris_flows.execution import ExecutionProfile, open_client

    # one worker thread: the shards run one after the other, so the crash leaves later ones undone
    with open_client(ExecutionProfile(n_workers=1, threads_per_worker=1)) as dask_client:
        yield dask_client


def _campaign(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A folder of six one-structure files, a spec screening it, and each file's candidate id."""
    from matris_flows.generation.jobs import FileSourceMaker
    from matris_flows.testing.synthetic import chain_structure, compositions

    folder = tmp_path / "inputs"
    folder.mkdir()
    for k, counts in enumerate(compositions(ELEMENTS, N_FILES, max_atoms=8)):
        chain_structure(counts, ELEMENTS).to(filename=str(folder / f"s{k}.cif"))
    ids = {e.provenance.file_path: e.candidate_id for e in FileSourceMaker(paths=[str(folder)]).iter_events()}
    assert len(set(ids.values())) == N_FILES
    references = write_fcc_references(tmp_path / "references.json")
    spec = emt_spec(
        "edited-inputs", {"files": {"paths": [str(folder)]}, "chunk_size": 1}, relax={"max_steps": 5, "engine": "ase"},
        hull={"references": {"paths": [str(references)]}}, execution={"n_workers": 1},
    )
    return folder, write_spec_file(tmp_path / "spec.yaml", spec), ids


def _relaxations(directory: Path) -> dict[str, int]:
    """Candidate id -> relaxation records of it in the job store's data collection."""
    spec = load_spec(directory / SPEC_FILE)
    store = make_job_store(spec.store_config(directory), directory)
    relaxed: dict[str, int] = defaultdict(int)
    with store:
        for blob in store.additional_stores[DATA_STORE_NAME].query({}, properties=["data"]):
            for item in blob["data"] if isinstance(blob["data"], list) else []:
                # the candidates' relaxations (the consistent hull relaxes reference phases too)
                if isinstance(item, dict) and str(item.get("candidate_id")).startswith("cand-") and "n_steps" in item:
                    relaxed[item["candidate_id"]] += 1
    return dict(relaxed)


def _shard_rejections(directory: Path) -> dict[str, str]:
    """Input name -> message of every rejection in the generation shards' reports."""
    spec = load_spec(directory / SPEC_FILE)
    store = make_job_store(spec.store_config(directory), directory)
    with store:
        docs = store.docs_store.query({"output.shard_index": {"$exists": True}}, properties=["output.report.rejected"])
        return {r["input_name"]: r["message"] for doc in docs for r in doc["output"]["report"]["rejected"]}


@pytest.mark.parametrize("edit", ["delete", "add"])
def test_resume_after_editing_the_input_folder_relaxes_each_structure_once(client, tmp_path, edit):
    folder, spec, ids = _campaign(tmp_path)
    directory = tmp_path / "campaign"
    finished_shards: list[int] = []

    def stop_after_two_shards(event):
        if " shard " in event.name and event.status == "completed":
            finished_shards.append(int(event.name.rsplit(" ", 1)[1]))
            if len(finished_shards) == 2:
                raise Crash("driver killed")

    with pytest.raises(Crash):
        run_campaign(spec, directory, client=client, progress=stop_after_two_shards)
    # one file per shard, in listing order: shard k generated s{k}.cif
    unfinished = sorted(set(range(N_FILES)) - set(finished_shards))
    first_done = min(finished_shards)
    assert any(k > first_done for k in unfinished), (finished_shards, "the crash must leave a later shard undone")

    expected = dict(ids)
    if edit == "delete":
        (folder / f"s{first_done}.cif").unlink()  # generated already: its chunk relaxes it from the shard's output
        gone = folder / f"s{unfinished[-1]}.cif"
        gone.unlink()  # not generated yet: rejected by name, nothing else moves
        del expected[str(gone)]
    else:
        from pymatgen.core import Lattice, Structure

        Structure(Lattice.cubic(3.6), ["Cu"] * 4, FCC).to(filename=str(folder / "a_new.cif"))  # sorts first

    summary = resume_campaign(directory, client=client)

    assert summary.jobs_failed == 0
    relaxed = _relaxations(directory)
    assert {cid: n for cid, n in relaxed.items() if n > 1} == {}, "a structure was relaxed twice"
    # nothing lost; a file added after planning is not part of this campaign (a new campaign screens it)
    assert sorted(relaxed) == sorted(expected.values())
    if edit == "delete":
        rejections = _shard_rejections(directory)
        assert "no longer exists" in rejections[str(gone)], rejections
