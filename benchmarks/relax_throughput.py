"""Relaxation throughput: the loop a user writes from the README vs this stage's engine.

(a) baseline: the model's own ``StructOptimizer`` (CHGNet's or MatRIS's), one structure at
    a time, one process, default threads — what a user writes from the model's README.
(b) matris-flows: ``relax_structures`` in worker processes with pinned threads, with the
    per-structure ASE engine and with the batched TorchSim engine, at 1 and at N workers,
    so the gain from batching and from parallelism are each visible.

Every variant relaxes the same rattled crystals (2-16 atoms) with FIRE + FrechetCellFilter;
the largest relaxed-energy difference against (a) is printed and asserted ≤ 1 meV/atom, and
the number of converged structures (forces through the cell filter, as ASE judges them) is
asserted equal to (a)'s. The batched engine also runs on one core (1 worker x 1 thread), so
its thread scaling is visible next to its process scaling. Last line:
``relax_speedup: <best b / a>``.

    python benchmarks/relax_throughput.py                       # CHGNet on CPU
    python benchmarks/relax_throughput.py --potential matris-10m-random --device cuda --fixed-steps 100
"""

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def benchmark_structures(n: int, seed: int = 0):
    """``n`` small crystals (2-16 atoms) from common prototypes, strained ±3 % and rattled 0.05 Å."""
    from pymatgen.core import Lattice, Structure

    protos = [
        Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]]),  # 8
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),  # 8
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure(),  # 2
        Structure.from_spacegroup("F-43m", Lattice.cubic(5.65), ["Ga", "As"], [[0, 0, 0], [0.25, 0.25, 0.25]]),  # 8
        Structure.from_spacegroup("Pm-3m", Lattice.cubic(4.11), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),  # 2
        Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.59, 2.96), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]]),  # 6
        Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"], [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0]]),  # 5
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.62), ["Li", "O"], [[0.25, 0.25, 0.25], [0, 0, 0]]),  # 12
        Structure.from_spacegroup("P6_3mc", Lattice.hexagonal(3.25, 5.21), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]]),  # 4
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]),  # 4
        Structure.from_spacegroup("Im-3m", Lattice.cubic(2.87), ["Fe"], [[0, 0, 0]]) * (2, 2, 2),  # 16
    ]
    rng = np.random.default_rng(seed)
    structures = []
    for i in range(n):
        s = protos[i % len(protos)].copy()
        s.scale_lattice(s.volume * (1 + rng.uniform(-0.03, 0.03)) ** 3)
        for j in range(len(s)):
            s.translate_sites([j], rng.normal(0, 0.05, 3), frac_coords=False)
        structures.append(s)
    return structures


def _potential_name(args) -> str:
    if args.potential == "matris-10m-random":
        from matris_flows.testing.potentials import MATRIS_10M_CONFIG, write_random_matris_checkpoint

        path = Path(tempfile.gettempdir()) / "matris_10m_random.pth.tar"
        if not path.exists():
            write_random_matris_checkpoint(path, config=MATRIS_10M_CONFIG)
        return str(path)
    return args.potential


def run_baseline(name: str, structures, fmax: float, steps: int, device: str):
    """(a): the model's own StructOptimizer, one structure at a time, default threads."""
    if name == "chgnet":
        from chgnet.model import StructOptimizer

        relaxer = StructOptimizer(optimizer_class="FIRE", use_device=device)
        kwargs = {"ase_filter": "FrechetCellFilter"}
    else:
        from matris.applications.relax import StructOptimizer

        relaxer = StructOptimizer(model=name, task="efs", optimizer="FIRE", device=device, mode="fast")
        kwargs = {"ase_filter": "FrechetCellFilter"}
    relaxer.relax(structures[0], fmax=fmax, steps=2, verbose=False, **kwargs)  # warm-up (compile, caches)
    start = time.perf_counter()
    energies, converged = [], []
    for s in structures:
        result = relaxer.relax(s, fmax=fmax, steps=steps, verbose=False, **kwargs)
        energies.append(result["trajectory"].energies[-1] / len(s))
        # The observer records the start and every step: fewer than ``steps`` steps means fmax was met.
        converged.append(len(result["trajectory"].energies) - 1 < steps)
    return time.perf_counter() - start, energies, converged


_WORKER = {}


def _init_worker(name, device, threads, settings):
    from matris_flows.core.threads import pin_threads
    from matris_flows.potentials.loader import load_potential

    pin_threads(threads)
    _WORKER["potential"] = load_potential(name, device=device)
    _WORKER["settings"] = settings


def _relax_chunk(structures):
    from matris_flows.relax.engine import relax_structures

    documents = relax_structures(structures, _WORKER["potential"], _WORKER["settings"])
    return [(d.energy_per_atom, d.status.value == "converged") for d in documents]


def run_engine(name, structures, settings, workers: int, threads: int, device: str, chunks_per_worker: int):
    """(b): worker processes with pinned threads, each relaxing chunks with the chosen engine."""
    from matris_flows.core.threads import thread_env

    os.environ.update(thread_env(threads))  # inherited by the spawned workers before numpy/torch import
    n_chunks = workers * chunks_per_worker
    # Interleave so every chunk gets a similar mix of cell sizes.
    order = sorted(range(len(structures)), key=lambda i: -len(structures[i]))
    chunks = [[order[k] for k in range(c, len(order), n_chunks)] for c in range(n_chunks)]
    context = mp.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(name, device, threads, settings)) as pool:
        pool.map(_relax_chunk, [structures[:1]] * workers)  # warm-up: load + first call in every worker
        start = time.perf_counter()
        results = pool.map(_relax_chunk, [[structures[i] for i in chunk] for chunk in chunks])
        elapsed = time.perf_counter() - start
    energies, converged = [0.0] * len(structures), [False] * len(structures)
    for chunk, values in zip(chunks, results, strict=True):
        for i, (energy, done) in zip(chunk, values, strict=True):
            energies[i], converged[i] = energy, done
    sizes = ", ".join(f"{len(c)}/{sum(len(structures[i]) for i in c)}" for c in chunks)
    return elapsed, energies, converged, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--potential", default="chgnet", help="chgnet, a MatRIS key/path, or matris-10m-random")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-structures", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="worker processes for the parallel run (default: cores)")
    parser.add_argument("--fmax", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--fixed-steps", type=int, default=None, help="run exactly this many steps (throughput only)")
    parser.add_argument("--engines", default="ase,torchsim", help="engines of the (b) variants (default: both)")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from matris_flows.core.threads import available_cores
    from matris_flows.relax.schemas import RelaxSettings

    cores = available_cores()
    workers = args.workers or (1 if args.device.startswith("cuda") else cores)
    fmax, steps = (1e-9, args.fixed_steps) if args.fixed_steps else (args.fmax, args.steps)
    name = _potential_name(args)
    structures = benchmark_structures(args.n_structures)
    n_atoms = sum(len(s) for s in structures)
    print(f"{len(structures)} structures, {n_atoms} atoms, potential={args.potential}, device={args.device}, cores={cores}")

    # (a) in a child process that inherits no thread pinning: "default threads".
    ctx = mp.get_context("spawn")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.pop(var, None)
    with ctx.Pool(1) as pool:
        base_time, base_energies, base_converged = pool.apply(run_baseline, (name, structures, fmax, steps, args.device))
    rate = lambda t: len(structures) / t * 3600  # noqa: E731
    print(f"{'variant':<44}{'time s':>9}{'struct/h':>11}{'vs a':>7}{'max |dE| meV/at':>17}{'conv':>6}  chunks (cells/atoms)")
    label = "(a) StructOptimizer loop, 1 proc, default thr"
    print(f"{label:<44}{base_time:>9.1f}{rate(base_time):>11.0f}{1.0:>7.2f}{0.0:>17.2f}{sum(base_converged):>6}")

    best = 0.0
    worst_de = 0.0
    gpu = args.device.startswith("cuda")
    # (workers, threads per worker, engine); the 1 x 1 batched run shows what a second thread adds.
    variants = [(1, 1 if gpu else cores, "ase"), (1, 1, "torchsim")]
    if not gpu and cores > 1:
        variants.append((1, cores, "torchsim"))
    if workers > 1:
        per_worker = 1 if gpu else max(1, cores // workers)
        variants += [(workers, per_worker, "ase"), (workers, per_worker, "torchsim")]
    variants = [v for v in variants if v[2] in args.engines.split(",")]
    for n_workers, threads, engine in variants:
        settings = RelaxSettings(engine=engine, fmax=fmax, max_steps=steps)
        chunks_per_worker = 1 if engine == "torchsim" else 4
        elapsed, energies, converged, sizes = run_engine(name, structures, settings, n_workers, threads, args.device, chunks_per_worker)
        de = 1000 * max(abs(a - b) for a, b in zip(base_energies, energies, strict=True))
        worst_de = max(worst_de, de)
        speedup = base_time / elapsed
        best = max(best, speedup)
        label = f"(b) {engine}, {n_workers} worker(s) x {threads} thread(s)"
        shown = sizes if engine == "torchsim" else ""
        print(f"{label:<44}{elapsed:>9.1f}{rate(elapsed):>11.0f}{speedup:>7.2f}{de:>17.2f}{sum(converged):>6}  {shown}")
        if not args.fixed_steps:
            assert sum(converged) == sum(base_converged), f"{label}: {sum(converged)} converged, (a) {sum(base_converged)}"
    print(f"largest relaxed-energy difference vs (a): {worst_de:.3f} meV/atom")
    if not args.fixed_steps:  # fixed-step runs stop mid-relaxation, where trajectories may part
        assert worst_de <= 1.0, f"relaxed energies differ from (a) by {worst_de:.3f} meV/atom (> 1)"
        print("relaxed energies within 1 meV/atom of (a) and the same number converged: asserted")
    print(f"relax_speedup: {best:.2f}")


if __name__ == "__main__":
    main()
