"""Chaos: a campaign of cheap candidates with poison structures and worker kills loses nothing good.

Two campaigns run through the CLI (``matris-flows screen``, a fresh driver process each, a
local Dask cluster of ``--workers`` workers with a memory limit, the embedded store), on a
folder of one pymatgen JSON file per structure (``matris_flows.testing.synthetic``: one
chain structure per composition of EMT's metals, every reduced formula distinct):

- **clean**: the ``--n`` good structures;
- **chaos**: the same files plus ~1 % poison of each kind — files with a NaN coordinate
  (native symmetry code segfaults on them), compositions on which the potential
  (``matris_flows.testing.poison:PoisonEMT``) kills its process (``os._exit(137)``, what an
  OOM kill or a CUDA fault looks like) or segfaults, hangs, or allocates memory without end —
  while a killer SIGKILLs a random Dask worker process every ``--kill-every`` seconds.

It prints each run's wall time and outcome, then

    lost_good_candidates: good structures whose chaos-run result is missing or not the clean run's (status, energy)
    energy_mismatches: good candidates whose relaxed energy differs from the clean run (> 1e-6 eV)
    poison_named: poison structures whose rejection or failure names them with the reason, of how many
    workers_killed, relaxations_redone (chunks in flight on a killed worker are redone)
    wall_ratio: chaos wall / clean wall

and last ``chaos_lost_good_candidates: <n>``.

    python benchmarks/chaos.py                 # 1000 good + 40 poison, ~10 min on 2 cores
    python benchmarks/chaos.py --n 200         # quicker
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ELEMENTS = ("Al", "Ni", "Cu", "Pd", "Ag")
FCC = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
POTENTIAL_POISON = ("crash", "segfault", "hang", "memory")
EXPECTED_REASON = {
    "nan": "non-finite",
    "crash": "exited with code 137",
    "segfault": "SIGSEGV",
    "hang": "did not finish within",
    "memory": "memory use passed the limit",
}


def write_inputs(folder: Path, n_good: int, n_poison: int) -> tuple[dict[str, str], dict[str, list[str]]]:
    """One JSON file per structure; returns the good formulas (-> file) and the poison per kind (formulas or file names)."""
    from monty.serialization import dumpfn
    from pymatgen.core import Lattice, Structure
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    from matris_flows.testing.synthetic import chain_structure, compositions

    n_potential_poison = n_poison * len(POTENTIAL_POISON)
    structures = [chain_structure(c, ELEMENTS) for c in compositions(ELEMENTS, n_good + n_potential_poison, max_atoms=12)]
    random.Random(0).shuffle(structures)
    inputs = folder / "structures"
    inputs.mkdir()
    good: dict[str, str] = {}
    poison: dict[str, list[str]] = {kind: [] for kind in ("nan", *POTENTIAL_POISON)}
    # Poison only compounds: an element's formula is also that of its reference phase, which the
    # consistent internal hull relaxes with the same potential (and would lose with it).
    structures.sort(key=lambda structure: len(structure.composition) < 2)
    for k, structure in enumerate(structures):
        formula = structure.composition.reduced_formula
        name = f"s{k:05d}.json"
        dumpfn(structure, inputs / name)
        if k < n_potential_poison:
            poison[POTENTIAL_POISON[k % len(POTENTIAL_POISON)]].append(formula)
        else:
            good[formula] = name
    # NaN files: real structures of the good list with one coordinate replaced by NaN
    for k, formula in enumerate(list(good)[:n_poison]):
        data = json.loads((inputs / good[formula]).read_text())
        data["sites"][0]["abc"] = [float("nan"), 0.5, 0.5]
        data["sites"][0].pop("xyz", None)
        name = f"nan{k:03d}.json"
        (inputs / name).write_text(json.dumps(data))
        poison["nan"].append(name)
    references = [
        ComputedStructureEntry(
            Structure(Lattice.cubic(a), [el] * 4, FCC), 4 * energy, entry_id=f"ref-{el}", parameters={"run_type": "GGA"}
        )
        for el, a, energy in (("Al", 4.05, -3.7), ("Ni", 3.52, -5.8), ("Cu", 3.61, -4.1), ("Pd", 3.89, -5.2), ("Ag", 4.09, -2.8))
    ]
    dumpfn(references, folder / "references.json")
    return good, poison


def write_spec(folder: Path, name: str, inputs: list[str], poison: dict[str, list[str]], args) -> Path:
    calculator = {kind: poison.get(kind, []) for kind in POTENTIAL_POISON}
    path = folder / f"{name}.yaml"
    path.write_text(
        f"""
name: {name}
generation:
  files:
    paths: {json.dumps(inputs)}
potential:
  name: "matris_flows.testing.poison:PoisonEMT"
  allow_import: true
  device: cpu
  options:
    calculator_kwargs: {json.dumps(calculator)}
relax:
  max_steps: {args.max_steps}
  engine: ase
  timeout_s: {args.timeout}
hull:
  references:
    paths: [{folder / "references.json"}]
execution:
  kind: local
  n_workers: {args.workers}
  threads_per_worker: 1
  memory: {args.memory}
"""
    )
    return path


def worker_processes(driver: int) -> list[int]:
    """PIDs of the local cluster's worker processes (the driver's spawned children)."""
    import psutil

    try:
        children = psutil.Process(driver).children()
    except psutil.Error:
        return []
    pids = []
    for child in children:
        try:
            command = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "spawn_main" in command and "resource_tracker" not in command:
            pids.append(child.pid)
    return pids


def run_campaign(spec: Path, directory: Path, kill_every: float | None) -> tuple[float, int, subprocess.CompletedProcess]:
    """Run the CLI; with ``kill_every``, SIGKILL a random worker process that often. Returns wall, kills, result."""
    env = {**os.environ}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "matris_flows.cli", "screen", str(spec), "--dir", str(directory)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    kills = 0
    done = threading.Event()

    def killer():
        nonlocal kills
        rng = random.Random(1)
        while not done.wait(kill_every):
            pids = worker_processes(proc.pid)
            if pids:
                try:
                    os.kill(rng.choice(pids), signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass

    thread = threading.Thread(target=killer, daemon=True) if kill_every else None
    if thread:
        thread.start()
    stdout, stderr = proc.communicate()
    done.set()
    wall = time.perf_counter() - start
    return wall, kills, subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def candidates(directory: Path) -> dict[str, dict]:
    from matris_flows.campaign.reading import query_campaign

    return {doc["formula"]: doc for doc in query_campaign(directory)}


def rejections(directory: Path) -> list[dict]:
    """Every generation rejection recorded in the campaign's job store (shard reports)."""
    from matris_flows.campaign.directory import SPEC_FILE
    from matris_flows.campaign.spec import load_spec
    from matris_flows.stores.backends import make_job_store

    spec = load_spec(directory / SPEC_FILE)
    store = make_job_store(spec.store_config(directory), directory)
    found = []
    with store:
        for doc in store.query({"name": {"$regex": "shard"}}, properties=["output"]):
            report = (doc.get("output") or {}).get("report") or {}
            found.extend(report.get("rejected") or [])
    return found


def relaxation_counts(directory: Path) -> Counter:
    """Relaxation records per candidate id in the data store."""
    from matris_flows.campaign.directory import SPEC_FILE
    from matris_flows.campaign.spec import load_spec
    from matris_flows.stores.backends import make_job_store
    from matris_flows.stores.config import DATA_STORE_NAME

    spec = load_spec(directory / SPEC_FILE)
    store = make_job_store(spec.store_config(directory), directory)
    counts: Counter = Counter()
    with store:
        for blob in store.additional_stores[DATA_STORE_NAME].query({}, properties=["data"]):
            for item in blob["data"] if isinstance(blob["data"], list) else []:
                if isinstance(item, dict) and str(item.get("candidate_id")).startswith("cand-") and "n_steps" in item:
                    counts[item["candidate_id"]] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="good structures")
    parser.add_argument("--poison", type=int, default=None, help="poison structures of each kind (default 1 %% of --n)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory", default="2GiB", help="memory limit per worker")
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=5.0, help="relax.timeout_s (an EMT relaxation here takes < 1 s)")
    parser.add_argument("--kill-every", type=float, default=30.0, help="seconds between worker SIGKILLs")
    args = parser.parse_args()
    n_poison = args.poison if args.poison is not None else max(1, args.n // 100)

    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        folder = Path(tmp)
        good, poison = write_inputs(folder, args.n, n_poison)
        inputs = folder / "structures"
        good_files = [str(inputs / name) for name in good.values()]
        clean_spec = write_spec(folder, "clean", good_files, {}, args)
        chaos_spec = write_spec(folder, "chaos", [str(inputs)], poison, args)

        clean_wall, _, clean = run_campaign(clean_spec, folder / "clean", None)
        print(f"clean: {len(good)} structures, exit {clean.returncode}, wall {clean_wall:.1f} s", flush=True)
        chaos_wall, kills, chaos = run_campaign(chaos_spec, folder / "chaos", args.kill_every)
        n_poison_total = sum(len(v) for v in poison.values())
        print(
            f"chaos: {len(good)} good + {n_poison_total} poison "
            f"({', '.join(f'{len(v)} {k}' for k, v in poison.items())}), {kills} workers SIGKILLed every {args.kill_every:g} s, "
            f"exit {chaos.returncode}, wall {chaos_wall:.1f} s",
            flush=True,
        )
        if chaos.returncode not in (0, 1):
            print(chaos.stderr[-3000:])

        reference = candidates(folder / "clean")
        found = candidates(folder / "chaos")
        def outcome(doc: dict | None) -> tuple:
            relaxation = (doc or {}).get("relaxation") or {}
            return (doc or {}).get("thermo_status"), relaxation.get("status"), relaxation.get("failure_reason")

        lost = [formula for formula in good if formula not in found or outcome(found[formula]) != outcome(reference.get(formula))]
        statuses = Counter(outcome(reference.get(formula))[:2] for formula in good)
        slowest = max((reference[f]["relaxation"].get("wall_time_s") or 0) for f in good if f in reference)
        mismatched = [
            formula for formula in good
            if formula in found and formula in reference
            and abs((found[formula]["relaxation"]["energy"] or 0) - (reference[formula]["relaxation"]["energy"] or 0)) > 1e-6
        ]
        named = Counter()
        for kind in POTENTIAL_POISON:
            for formula in poison[kind]:
                reason = ((found.get(formula) or {}).get("relaxation") or {}).get("failure_reason") or ""
                named[kind] += EXPECTED_REASON[kind] in reason and formula in reason
        for rejection in rejections(folder / "chaos"):
            text = f"{rejection.get('input_name')} {rejection.get('message')}"
            named["nan"] += any(name in text for name in poison["nan"]) and EXPECTED_REASON["nan"] in text
        counts = relaxation_counts(folder / "chaos")
        redone = sum(n - 1 for n in counts.values() if n > 1)

        print(f"clean outcomes (hull status, relaxation): {dict(statuses)}; slowest relaxation {slowest:.2f} s "
              f"(relax.timeout_s {args.timeout:g} s)")
        print(f"lost_good_candidates: {len(lost)} {sorted(lost)[:10]}")
        for formula in sorted(lost)[:3]:
            print(f"  {formula}: clean {outcome(reference.get(formula))}, chaos {outcome(found.get(formula))}")
        print(f"energy_mismatches: {len(mismatched)} {sorted(mismatched)[:10]}")
        per_kind = ", ".join(f"{kind} {named[kind]}/{len(names)}" for kind, names in poison.items())
        print(f"poison_named: {sum(named.values())} of {n_poison_total} ({per_kind})")
        print(f"workers_killed: {kills}  relaxations_redone: {redone} (chunks in flight on a killed worker)")
        print(f"wall_ratio: {chaos_wall / clean_wall:.2f} (chaos {chaos_wall:.1f} s / clean {clean_wall:.1f} s)")
        print(f"chaos_lost_good_candidates: {len(lost)}")


if __name__ == "__main__":
    main()
