"""Run jobflow flows on Dask: clusters (local, scheduler address, SLURM, PBS) and a
manager with ``run_locally``'s semantics that resumes crashed campaigns."""

from matris_flows.execution.clusters import ExecutionProfile, open_client
from matris_flows.execution.dask_manager import JobEvent, run_on_dask

__all__ = ["ExecutionProfile", "JobEvent", "open_client", "run_on_dask"]
