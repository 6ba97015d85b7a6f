"""Run jobflow flows on Dask: clusters (local, scheduler address, SLURM, PBS) and a
manager with ``run_locally``'s semantics that resumes crashed campaigns."""

from matris_flows.core.lazy import lazy_exports

# Imported lazily (PEP 562): ``ExecutionProfile`` is part of every campaign spec, and
# reading a spec must not import Dask, jobflow or torch.
_EXPORTS = {
    "ExecutionProfile": ".profile",
    "open_client": ".clusters",
    "JobEvent": ".events",
    "run_on_dask": ".dask_manager",
    "StalledError": ".events",
}

__all__ = ["ExecutionProfile", "JobEvent", "StalledError", "open_client", "run_on_dask"]

__getattr__ = lazy_exports(__name__, _EXPORTS)
