"""Workflow overhead: the Dask + jobflow + SQLiteStore path vs a plain loop over the same calls.

A campaign of ``--n-candidates`` (default 10 000) small EMT cells (2-4 atoms: fcc Cu/Ni/
Al/Pd/Ag/Au/Pt, L1_2 A3B and L1_0 AB orderings, strained +-2 % and rattled 0.05 A, fixed
seed) is relaxed with ASE's EMT (the "near-free" potential) for exactly ``--steps``
FIRE steps (``fmax=1e-30`` never converges -- with 1e-12 some high-symmetry cells did
within 200 steps; every document is checked to have taken exactly that many steps), in chunks of ``--chunk-size`` candidates:

(1) loop: one process, ``relax_structures`` over the same chunks; no jobflow, no store.
(2) workflow, 1 worker: one ``RelaxMaker`` job per chunk in one jobflow Flow, run by
    ``run_on_dask`` on a LocalCluster with 1 worker process x 1 thread (BLAS pinned to 1
    thread) into an on-disk SQLiteStore JobStore from ``make_job_store`` (default sqlite
    StoreConfig, temporary campaign directory). Timed: Flow construction + store connect
    + ``run_on_dask`` (all store writes and journal records) + store close.
    ``overhead_pct = (t_workflow_1w - t_loop) / t_workflow_1w * 100``.
(3) model-bound scaling: ``--model-bound-candidates`` cells relaxed for
    ``--model-bound-steps`` steps (model cost dominates), through the same workflow path
    with 1 and then 2 workers: ``speedup_2v1 = t_1w / t_2w`` (target >= 1.7).

Excluded from every timing, on both sides: building the structures, interpreter
imports, cluster start-up and loading the potential. The loop warms up (loads EMT,
relaxes one cell) before its clock starts; every Dask worker does the same through
``client.run`` and a one-job warm-up flow into a throwaway in-memory store.

Cell relaxation is off by default (``--relax-cell`` turns it on): with EMT, ASE's
FrechetCellFilter (scipy expm/logm per step) costs ~10x the potential itself, so
without it the per-candidate work is mostly the model and is small (~1-2 ms/step),
which exposes the workflow overhead rather than hiding it. Relaxed energies of the
workflow run are compared with the loop's (they must agree to round-off).

Note on 1 worker vs 1 process: the workflow's driver (scheduler, deserialisation,
store writes) is a second process, so on a 2-core machine part of its work overlaps
the worker's; the driver's CPU seconds are printed next to the wall times so this is
visible.

    python benchmarks/workflow_overhead.py                 # 10k candidates (~10 min on 2 idle cores)
    python benchmarks/workflow_overhead.py --quick         # 1k candidates, smoke test
    python benchmarks/workflow_overhead.py --quick --profile   # + cProfile of the driver

Besides the table, the run splits the 1-worker time into: time inside ``relax_one``
(the documents' ``wall_time_s``), time inside Dask tasks (``Job.run``: jobflow's
output validation/serialisation and the in-memory recording store) and wall time
outside tasks (driver: scheduling, transfer, unpickling, SQLiteStore and journal writes).

Last line: ``workflow_overhead_pct: <value>``.
"""

from __future__ import annotations

import os

# Pin native thread pools before numpy/scipy are imported: unpinned OpenBLAS on a shared
# 2-core machine made 3x3 LU solves in ASE's cell filter 100x slower.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import logging  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

POTENTIAL = "ase.calculators.emt:EMT"
DEVICE = "cpu"
ELEMENTS = ("Cu", "Ni", "Al", "Pd", "Ag", "Au", "Pt")
# fcc lattice constants (A), for a reasonable starting volume of each ordering
A0 = {"Cu": 3.61, "Ni": 3.52, "Al": 4.05, "Pd": 3.89, "Ag": 4.09, "Au": 4.08, "Pt": 3.92}


def benchmark_structures(n: int, seed: int = 0):
    """``n`` EMT cells of 2-4 atoms: fcc (4), L1_2 A3B (4), L1_0 AB (2); strained, rattled.

    1-atom cells are left out: with fixed cell their force is zero by symmetry, so FIRE
    would "converge" at step 0 and break the fixed step count.
    """
    from pymatgen.core import Lattice, Structure

    rng = np.random.default_rng(seed)
    fcc = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    structures, ids = [], []
    for i in range(n):
        kind = i % 3
        a, b = rng.choice(ELEMENTS, size=2, replace=False)
        a0 = (A0[a] + A0[b]) / 2
        if kind == 0:
            s = Structure(Lattice.cubic(A0[a]), [a] * 4, fcc)
        elif kind == 1:
            s = Structure(Lattice.cubic(a0), [b, a, a, a], fcc)
        else:
            s = Structure(Lattice.tetragonal(a0 / 2**0.5, a0), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])
        s.scale_lattice(s.volume * (1 + rng.uniform(-0.02, 0.02)) ** 3)
        for j, shift in enumerate(rng.normal(0, 0.05, (len(s), 3))):
            s.translate_sites([j], shift, frac_coords=False, to_unit_cell=True)
        structures.append(s)
        ids.append(f"wo-{i:06d}")
    return structures, ids


def chunked(seq, size):
    return [seq[k : k + size] for k in range(0, len(seq), size)]


def settings_for(steps: int, relax_cell: bool):
    from matris_flows.relax.schemas import RelaxSettings

    return RelaxSettings(fmax=1e-30, max_steps=steps, engine="ase", relax_cell=relax_cell)


# -- (1) plain loop ---------------------------------------------------------------------


def run_loop(structures, ids, settings, chunk_size):
    from matris_flows.potentials.loader import load_potential
    from matris_flows.relax.engine import relax_structures

    potential = load_potential(POTENTIAL, device=DEVICE)
    relax_structures(structures[:1], potential, settings, ids[:1])  # warm-up, not timed
    cpu0, start = time.process_time(), time.perf_counter()
    documents = []
    for s_chunk, id_chunk in zip(chunked(structures, chunk_size), chunked(ids, chunk_size), strict=True):
        documents.extend(relax_structures(s_chunk, potential, settings, id_chunk))
    return time.perf_counter() - start, time.process_time() - cpu0, documents


# -- (2)/(3) workflow path --------------------------------------------------------------


def _warm_worker(steps: int, relax_cell: bool):
    """Run on every worker before timing: imports, EMT load, one relaxation."""
    import matris_flows.execution.dask_manager  # noqa: F401
    import matris_flows.relax.jobs  # noqa: F401
    from matris_flows.potentials.loader import load_potential
    from matris_flows.relax.engine import relax_structures

    structures, ids = benchmark_structures(1, seed=123)
    relax_structures(structures, load_potential(POTENTIAL, device=DEVICE), settings_for(steps, relax_cell), ids)
    return os.getpid()


@contextlib.contextmanager
def warm_client(n_workers: int, steps: int, relax_cell: bool):
    """A LocalCluster client with ``n_workers`` x 1 thread, every worker warmed up.

    The cluster comes from the project's own factory, with its quiet worker settings
    (no sampling profiler, slow monitors), as a campaign gets it.
    """
    from jobflow import Flow, JobStore
    from maggma.stores import MemoryStore

    from matris_flows.execution.clusters import ExecutionProfile, open_client
    from matris_flows.execution.dask_manager import run_on_dask
    from matris_flows.relax.jobs import RelaxMaker

    profile = ExecutionProfile(kind="local", n_workers=n_workers, threads_per_worker=1, torch_threads=1)
    with open_client(profile) as client:
        client.wait_for_workers(n_workers)
        client.run(_warm_worker, steps, relax_cell)
        # one tiny flow per worker through the whole path (job unpickling, recording store)
        maker = RelaxMaker(potential=POTENTIAL, settings=settings_for(1, relax_cell), device=DEVICE)
        s, i = benchmark_structures(n_workers, seed=321)
        warm = Flow([maker.make([s[k]], [i[k]]) for k in range(n_workers)])
        run_on_dask(warm, JobStore(MemoryStore(), additional_stores={"data": MemoryStore()}), client, ensure_success=True)
        yield client


def run_workflow(client, structures, ids, settings, chunk_size, campaign_dir: Path, profile: bool = False):
    """Time Flow build + run_on_dask into a fresh on-disk SQLiteStore JobStore."""
    from distributed import get_task_stream
    from jobflow import Flow

    from matris_flows.execution.dask_manager import run_on_dask
    from matris_flows.relax.jobs import RelaxMaker
    from matris_flows.stores.backends import make_job_store
    from matris_flows.stores.config import StoreConfig

    campaign_dir.mkdir(parents=True, exist_ok=True)
    profiler = cProfile.Profile() if profile else None
    cpu0, start = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    maker = RelaxMaker(potential=POTENTIAL, settings=settings, device=DEVICE)
    jobs = [
        maker.make(s_chunk, id_chunk)
        for s_chunk, id_chunk in zip(chunked(structures, chunk_size), chunked(ids, chunk_size), strict=True)
    ]
    store = make_job_store(StoreConfig(), campaign_dir)
    store.connect()
    with get_task_stream(client) as stream:
        responses = run_on_dask(Flow(jobs, name="workflow overhead"), store, client, ensure_success=True, resume=True)
    store.close()
    if profiler:
        profiler.disable()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0

    documents = []
    for job in jobs:
        output = responses[job.uuid][job.index].output
        documents.extend(output.documents if hasattr(output, "documents") else output["documents"])
    store.connect()
    n_stored = store.count({"uuid": {"$in": [j.uuid for j in jobs]}})
    store.close()
    # seconds the worker(s) spent inside tasks (Job.run incl. the relaxations)
    task_s = sum(
        ss["stop"] - ss["start"] for task in stream.data for ss in task["startstops"] if ss["action"] == "compute"
    )
    return elapsed, cpu, documents, n_stored, len(jobs), profiler, task_s


def _doc_value(doc, name):
    return getattr(doc, name) if not isinstance(doc, dict) else doc[name]


def check_documents(documents, ids, steps):
    """Every candidate present once, in order, with exactly ``steps`` optimizer steps."""
    got = [_doc_value(d, "candidate_id") for d in documents]
    if got != ids:
        raise RuntimeError("documents do not match the candidates")
    bad = [d for d in documents if _doc_value(d, "n_steps") != steps or _doc_value(d, "energy") is None]
    if bad:
        d = bad[0]
        raise RuntimeError(
            f"{len(bad)} candidates did not take exactly {steps} steps, e.g. {_doc_value(d, 'candidate_id')}: "
            f"{_doc_value(d, 'n_steps')} steps, status {_doc_value(d, 'status')}, {_doc_value(d, 'failure_reason')}"
        )


def max_energy_difference(a, b) -> float:
    return max(abs(_doc_value(x, "energy_per_atom") - _doc_value(y, "energy_per_atom")) for x, y in zip(a, b, strict=True))


def print_profile(profiler, top: int = 30):
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-candidates", type=int, default=10_000)
    parser.add_argument("--chunk-size", type=int, default=500, help="candidates per RelaxMaker job")
    parser.add_argument("--steps", type=int, default=20, help="fixed FIRE steps per candidate (overhead run)")
    parser.add_argument("--model-bound-candidates", type=int, default=240)
    parser.add_argument("--model-bound-steps", type=int, default=200, help="fixed steps per candidate (scaling run)")
    parser.add_argument("--model-bound-jobs", type=int, default=16, help="jobs in the scaling run")
    parser.add_argument("--relax-cell", action="store_true", help="also relax the cell (FrechetCellFilter)")
    parser.add_argument("--skip-scaling", action="store_true", help="skip the 1- vs 2-worker model-bound run")
    parser.add_argument("--profile", action="store_true", help="cProfile the driver during the 1-worker run")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1000 candidates, 200 model-bound")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.n_candidates = min(args.n_candidates, 1000)
        args.model_bound_candidates = min(args.model_bound_candidates, 160)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    logging.getLogger("distributed").setLevel(logging.WARNING)
    from matris_flows.core.threads import available_cores

    cores = available_cores()
    structures, ids = benchmark_structures(args.n_candidates, args.seed)
    settings = settings_for(args.steps, args.relax_cell)
    n_jobs = -(-len(structures) // args.chunk_size)
    n_atoms = sum(len(s) for s in structures)
    print(
        f"{len(structures)} candidates ({n_atoms} atoms), potential EMT, {args.steps} fixed FIRE steps, "
        f"relax_cell={args.relax_cell}, {n_jobs} jobs x {args.chunk_size}, "
        f"cores={cores}, "
        f"load avg {os.getloadavg()[0]:.1f}",
        flush=True,
    )

    rows = []  # (label, wall s, driver cpu s, candidates/s, ratio text)

    # (1) plain loop
    t_loop, cpu_loop, loop_docs = run_loop(structures, ids, settings, args.chunk_size)
    check_documents(loop_docs, ids, args.steps)
    rows.append(("(1) plain loop, 1 process", t_loop, cpu_loop, len(ids) / t_loop, "1.00 (baseline)"))
    print(f"  loop done: {t_loop:.1f} s", flush=True)

    with tempfile.TemporaryDirectory(prefix="workflow_overhead_") as tmp:
        tmp = Path(tmp)
        # (2) workflow path, 1 worker
        with warm_client(1, args.steps, args.relax_cell) as client:
            t_wf, cpu_wf, wf_docs, n_stored, n_run, profiler, task_wf = run_workflow(
                client, structures, ids, settings, args.chunk_size, tmp / "overhead", profile=args.profile
            )
        check_documents(wf_docs, ids, args.steps)
        if n_stored != n_run:
            raise RuntimeError(f"{n_stored} outputs in the store for {n_run} jobs")
        de = max_energy_difference(loop_docs, wf_docs)
        overhead_pct = (t_wf - t_loop) / t_wf * 100
        rows.append((
            "(2) Dask+jobflow+SQLiteStore, 1 worker", t_wf, cpu_wf, len(ids) / t_wf, f"{t_wf / t_loop:.3f} x loop time",
        ))
        print(f"  workflow (1 worker) done: {t_wf:.1f} s", flush=True)

        # (3) model-bound scaling
        if not args.skip_scaling:
            mb_structures, mb_ids = benchmark_structures(args.model_bound_candidates, args.seed + 1)
            mb_settings = settings_for(args.model_bound_steps, args.relax_cell)
            mb_chunk = max(1, -(-len(mb_ids) // args.model_bound_jobs))
            mb = {}
            for workers in (1, 2):
                with warm_client(workers, args.model_bound_steps, args.relax_cell) as client:
                    t, cpu, docs, _, n_mb_jobs, _, _ = run_workflow(
                        client, mb_structures, mb_ids, mb_settings, mb_chunk, tmp / f"scaling_{workers}w"
                    )
                check_documents(docs, mb_ids, args.model_bound_steps)
                mb[workers] = (t, cpu)
                print(f"  model-bound, {workers} worker(s) done: {t:.1f} s", flush=True)
            speedup = mb[1][0] / mb[2][0]
            label = f"{len(mb_ids)} x {args.model_bound_steps} steps, {n_mb_jobs} jobs"
            rows.append((f"(3) model-bound, 1 worker ({label})", mb[1][0], mb[1][1], len(mb_ids) / mb[1][0], "1.00"))
            rows.append((
                "(3) model-bound, 2 workers", mb[2][0], mb[2][1], len(mb_ids) / mb[2][0], f"{speedup:.2f} x 1 worker",
            ))

    print()
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'variant':<{width}}{'wall s':>9}{'driver cpu s':>14}{'cand/s':>9}  ratio")
    for label, wall, cpu, rate, ratio in rows:
        print(f"{label:<{width}}{wall:>9.2f}{cpu:>14.2f}{rate:>9.1f}  {ratio}")
    print()
    per_job = (t_wf - t_loop) / n_jobs
    print(f"workflow overhead: {t_wf - t_loop:.2f} s over {n_jobs} jobs ({per_job * 1000:.0f} ms/job, "
          f"{(t_wf - t_loop) / len(ids) * 1000:.2f} ms/candidate); target <= 10 %")
    relax_loop = sum(_doc_value(d, "wall_time_s") for d in loop_docs)
    relax_wf = sum(_doc_value(d, "wall_time_s") for d in wf_docs)
    print("where the 1-worker time goes (s):")
    print(f"  loop:     relax_one total {relax_loop:8.2f}  | loop wall {t_loop:8.2f}  (rest {t_loop - relax_loop:.2f})")
    print(f"  workflow: relax_one total {relax_wf:8.2f}  | worker in-task (Job.run) {task_wf:8.2f} "
          f"(jobflow in worker {task_wf - relax_wf:.2f})  | wall {t_wf:8.2f} "
          f"(driver/scheduling/transfer outside tasks {t_wf - task_wf:.2f})")
    print(f"max |dE| workflow vs loop: {de * 1000:.2e} meV/atom")
    if not args.skip_scaling:
        print(f"speedup_2v1 (model-bound): {speedup:.2f} (target >= 1.7)")
    print(f"load avg at end: {os.getloadavg()[0]:.1f} on {cores} cores")
    if profiler is not None:
        print("\n--- driver profile, 1-worker workflow run ---")
        print_profile(profiler)
    print(f"workflow_overhead_pct: {overhead_pct:.2f}")


if __name__ == "__main__":
    main()
