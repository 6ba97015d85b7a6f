"""A bad structure costs only itself: structures that kill, hang or overfill a Dask worker's relaxation.

The campaign runs through the CLI on its own local Dask cluster (2 workers with a memory
limit), as a user would. Its potential is EMT except on four compositions: one calls
``os._exit(137)`` (an OOM kill or a CUDA fault looks like this), one segfaults, one hangs and
one allocates memory without end. Before crash isolation the first two killed their worker
until Dask gave up (``KilledWorker``) and their innocent chunk-mates were stored as
``job_failed``; the hang held its worker forever.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from campaign_specs import write_fcc_references

from matris_flows.campaign.reading import query_campaign

REPO = Path(__file__).resolve().parents[2]
ELEMENTS = ("Cu", "Ni", "Pd")
POISON_KINDS = ("crash", "segfault", "hang", "memory")


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """Run the poisoned campaign once; its directory, the poison formula of each kind, and the CLI result."""
    from monty.serialization import dumpfn

    from matris_flows.testing.synthetic import chain_structure, compositions

    folder = tmp_path_factory.mktemp("poison")
    structures = [chain_structure(c, ELEMENTS) for c in compositions(ELEMENTS, 16, max_atoms=8)]
    formulas = [s.composition.reduced_formula for s in structures]
    unique = [f for f in formulas if formulas.count(f) == 1 and len(f) > 2]
    # spread over the chunks (chunk_size 4), so that every poisoned chunk has innocent chunk-mates
    poison = dict(zip(POISON_KINDS, unique[1::3], strict=False))
    assert len(poison) == 4
    dumpfn(structures, folder / "structures.json")
    write_fcc_references(folder / "references.json")
    kwargs = json.dumps({kind: [formula] for kind, formula in poison.items()})
    spec = folder / "spec.yaml"
    spec.write_text(
        f"""
name: poison
generation:
  files:
    paths: [{folder / "structures.json"}]
  chunk_size: 4
potential:
  name: "matris_flows.testing.poison:PoisonEMT"
  allow_import: true
  device: cpu
  options:
    calculator_kwargs: {kwargs}
relax:
  max_steps: 30
  engine: ase
  timeout_s: 20
hull:
  references:
    paths: [{folder / "references.json"}]
execution:
  kind: local
  n_workers: 2
  threads_per_worker: 1
  memory: 1.5GiB
"""
    )
    directory = folder / "campaign"
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "matris_flows.cli", "screen", str(spec), "--dir", str(directory)],
        cwd=REPO, env={**__import__("os").environ, **env}, capture_output=True, text=True, timeout=600,
    )
    return directory, poison, formulas, proc


def test_every_job_finishes_and_the_cli_reports_no_failed_job(campaign):
    directory, _, _, proc = campaign
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "KilledWorker" not in proc.stderr and "Traceback" not in proc.stderr
    assert json.loads((directory / "failures.json").read_text()) == []


def test_only_the_poisoned_structures_fail_each_with_what_happened(campaign):
    directory, poison, formulas, _ = campaign
    docs = {doc["formula"]: doc for doc in query_campaign(directory)}
    assert sorted(docs) == sorted(formulas)  # every candidate, once
    expected = {
        "crash": "exited with code 137",
        "segfault": "signal 11 (SIGSEGV)",
        "hang": "did not finish within 20 s",
        "memory": "memory use passed the limit",
    }
    for kind, formula in poison.items():
        doc = docs.pop(formula)
        assert doc["thermo_status"] == "relax_failed", (kind, doc["thermo_status"])
        reason = doc["relaxation"]["failure_reason"]
        assert expected[kind] in reason and "while relaxing this structure" in reason and formula in reason, reason
    for formula, doc in docs.items():  # the innocent chunk-mates and everyone else
        assert doc["thermo_status"] == "ok", (formula, doc["thermo_status"], doc["relaxation"].get("failure_reason"))
        assert doc["relaxation"]["status"] == "converged"
