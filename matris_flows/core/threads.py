"""Pin BLAS/OpenMP and torch threads so that processes x threads <= cores.

Unpinned, two processes each spawning one BLAS thread per core thrash the CPU:
a 3 s CHGNet relaxation of Si8 took 27 s on 2 cores with a second process busy.
"""

import os

_THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def available_cores() -> int:
    """Cores this process may run on (respects CPU affinity / cgroup pinning)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_process(n_processes: int, cores: int | None = None) -> int:
    """Threads each of ``n_processes`` may use without oversubscribing the cores."""
    cores = cores or available_cores()
    return max(1, cores // max(1, n_processes))


def thread_env(n_threads: int) -> dict[str, str]:
    """Environment variables that cap native thread pools at ``n_threads``.

    Must be in a process's environment before numpy/torch are imported there,
    so it is what a launcher passes to worker processes.
    """
    return {name: str(n_threads) for name in _THREAD_ENV}


def pin_threads(n_threads: int) -> None:
    """Cap this process's thread pools at ``n_threads`` (env for children + torch now)."""
    os.environ.update(thread_env(n_threads))
    import torch

    torch.set_num_threads(n_threads)
    try:
        torch.set_num_interop_threads(n_threads)
    except RuntimeError:  # may only be set once, before any parallel work
        pass
