"""How many atoms one batched model call may hold: sized from free memory, not a constant.

On a GPU the cap is autotuned: one probe call on a small batch measures the model's
peak memory per atom (``torch.cuda.max_memory_allocated``), and the cap is the free
memory (``torch.cuda.mem_get_info``) over that, with a safety margin. On a CPU memory is
rarely the limit and batching gains flatten once the per-call overhead is amortised,
so the cap is the smaller of ``CPU_ATOMS_CAP`` and what available RAM allows at a
per-model estimate of bytes per atom.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

# On a CPU the per-atom cost of a call is flat beyond a few cells (CHGNet on MP Li-Fe-P-O, one
# thread: 4.6-5.7 ms/atom from 20 to 822 atoms per call), so a larger batch gains nothing; a smaller
# one leaves more of a worker's structures queued, where an idle worker can take them over.
CPU_ATOMS_CAP = 256
# Peak bytes per atom of an energy+forces+stress call, float32, dense ~2.3 g/cm3 cells;
# measured on CPU (MatRIS-10M: Si64 peak RSS with matris_fast, stock MatRIS ~3x that per angle as in
# benchmarks/matris_inference.py; CHGNet 0.3.0: 32 small cells).
BYTES_PER_ATOM = {"matris": 180e6, "matris_fast": 60e6, "chgnet": 2e6}
DEFAULT_BYTES_PER_ATOM = 180e6
# Keep this share of free memory for the optimiser state, fragmentation and other processes.
MEMORY_FRACTION = 0.7


def available_memory_bytes(device: str = "cpu") -> float:
    """Free memory on ``device``: ``torch.cuda.mem_get_info`` on CUDA, MemAvailable on CPU."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return float(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def atoms_cap(
    bytes_per_atom: float,
    free_bytes: float,
    device: str = "cpu",
    processes: int = 1,
    fraction: float = MEMORY_FRACTION,
    cpu_cap: int = CPU_ATOMS_CAP,
) -> int:
    """Largest atom count per batched call that fits ``fraction`` of ``free_bytes`` shared by ``processes``.

    Never below 1 (a single cell is always tried; the engine falls back per structure
    if it fails); on CPU never above ``cpu_cap``.
    """
    if bytes_per_atom <= 0 or free_bytes < 0 or processes < 1:
        raise ValueError(f"need bytes_per_atom > 0, free_bytes >= 0, processes >= 1 (got {bytes_per_atom}, {free_bytes}, {processes})")
    cap = int(fraction * free_bytes / processes // bytes_per_atom)
    if not device.startswith("cuda"):
        cap = min(cap, cpu_cap)
    return max(1, cap)


def measure_bytes_per_atom(model, state) -> float | None:
    """Peak CUDA memory of one model call on ``state``, per atom; None off CUDA (nothing to measure)."""
    import torch

    device = torch.device(model.device)
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    baseline = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    model(state)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - baseline
    return max(peak, 1) / max(int(state.n_atoms), 1)


def batch_atoms_cap(model, probe_state=None, kind: str | None = None, processes: int = 1) -> int:
    """Atoms per batched call for ``model`` on its device: probed on CUDA, estimated on CPU."""
    device = str(model.device)
    measured = measure_bytes_per_atom(model, probe_state) if probe_state is not None else None
    per_atom = measured or BYTES_PER_ATOM.get(kind or "", DEFAULT_BYTES_PER_ATOM)
    cap = atoms_cap(per_atom, available_memory_bytes(device), device, processes)
    logger.info("batch cap %d atoms (%.1f MB/atom %s, device %s)", cap, per_atom / 1e6, "measured" if measured else "estimated", device)
    return cap
