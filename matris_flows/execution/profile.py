"""Where and with what resources a campaign's Dask workers run (no Dask import: specs load fast)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from matris_flows.core.threads import available_cores, threads_per_process


class ExecutionProfile(BaseModel):
    """Where and with what resources the Dask workers run."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "address", "slurm", "pbs"] = Field(
        "local",
        description="local: a LocalCluster on this machine; address: connect to a "
        "running scheduler; slurm/pbs: workers submitted as batch jobs (dask-jobqueue).",
    )
    n_workers: int | None = Field(
        None,
        ge=1,
        description="Worker processes (local; default: one per core, or one per GPU) "
        "or batch jobs to start (slurm/pbs; default 1).",
    )
    threads_per_worker: int = Field(
        1, ge=1, description="Tasks a worker runs at once; 1 keeps one model per task."
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="BLAS/OpenMP/torch threads per worker; default cores // workers.",
    )
    memory: str | None = Field(
        None, description="Memory per worker (local) or per batch job, e.g. '16GB'."
    )
    cores: int | None = Field(
        None, ge=1, description="Cores per batch job (slurm/pbs; required there)."
    )
    processes: int = Field(1, ge=1, description="Worker processes per batch job.")
    walltime: str | None = Field(None, description="Batch job walltime, e.g. '04:00:00'.")
    gpus_per_worker: int = Field(0, ge=0, description="GPUs per worker process.")
    queue: str | None = Field(None, description="Batch queue / SLURM partition.")
    account: str | None = Field(None, description="Batch account / project to charge.")
    job_extra_directives: list[str] = Field(
        default_factory=list, description="Extra #SBATCH/#PBS directives, verbatim."
    )
    job_script_prologue: list[str] = Field(
        default_factory=list,
        description="Shell lines run before the worker starts (module load, venv).",
    )
    address: str | None = Field(
        None, description="Scheduler address, e.g. 'tcp://host:8786' (kind=address)."
    )
    local_directory: str | None = Field(
        None, description="Scratch directory of the workers."
    )

    @model_validator(mode="after")
    def _check_kind(self) -> ExecutionProfile:
        if self.kind == "address" and not self.address:
            raise ValueError("an 'address' profile needs the scheduler address")
        if self.kind in ("slurm", "pbs") and not (self.cores and self.memory):
            raise ValueError(f"a '{self.kind}' profile needs cores and memory per job")
        return self

    def worker_threads(self) -> int | None:
        """Native threads per worker process so that workers x threads <= cores."""
        if self.torch_threads is not None:
            return self.torch_threads
        if self.kind == "local":
            return threads_per_process(self.local_workers())
        if self.kind in ("slurm", "pbs"):
            return threads_per_process(self.processes, cores=self.cores)
        return None  # unknown machines behind an existing scheduler

    @property
    def parallelism(self) -> int:
        """Tasks the cluster runs at once, as far as the profile tells (chunks are sized on it)."""
        if self.kind == "local":
            workers = self.local_workers()
        elif self.kind in ("slurm", "pbs"):
            workers = (self.n_workers or 1) * self.processes
        else:
            workers = self.n_workers or 1
        return max(1, workers * self.threads_per_worker)

    def local_workers(self) -> int:
        """Worker processes of a local cluster."""
        if self.n_workers is not None:
            return self.n_workers
        if self.gpus_per_worker:
            return max(1, _visible_gpus() // self.gpus_per_worker)
        return available_cores()


def _visible_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0
