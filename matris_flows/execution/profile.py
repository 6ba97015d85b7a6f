"""Where and with what resources a campaign's Dask workers run (no Dask import: specs load fast)."""

from __future__ import annotations

import re
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
        2,
        ge=1,
        description="Tasks a worker runs at once. The relaxation jobs on a worker share one model and one in-flight "
        "batch (its relaxation service), so a second task keeps that batch fed across chunk boundaries; native threads "
        "are pinned per worker process (torch_threads), not per task.",
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
        None, description="Scheduler address, e.g. 'tls://host:8786' (kind=address)."
    )
    local_directory: str | None = Field(
        None, description="Scratch directory of the workers."
    )
    minimum_jobs: int | None = Field(
        None, ge=0,
        description="Fewest worker batch jobs kept queued or running (slurm/pbs; default n_workers): "
        "a job that ends (walltime, worker lifetime, scancel) is replaced.",
    )
    maximum_jobs: int | None = Field(
        None, ge=1, description="Most worker batch jobs at once (slurm/pbs; default the larger of n_workers and minimum_jobs)."
    )
    worker_lifetime: str | None = Field(
        None,
        description="A worker retires gracefully after this long (its job then ends and is replaced), "
        "e.g. '10h' or '10:00:00'; default 85% of the walltime. Must end before the walltime.",
    )
    lifetime_stagger: str | None = Field(
        None, description="Workers retire at worker_lifetime +/- this, so they do not all leave at once; default 5% of the walltime."
    )
    stall_timeout: float | None = Field(
        3600.0, gt=0,
        description="Seconds with no worker and no job finishing after which the driver gives up with an error "
        "(the campaign stays resumable); null waits forever. Worker jobs pending in a busy queue count as no worker.",
    )
    no_worker_timeout: float | None = Field(
        None, gt=0,
        description="Seconds the cluster may have no live worker before the driver stops with an error (the campaign "
        "stays resumable). Default 60 for a local cluster, which replaces lost workers within seconds; none for batch "
        "and address profiles, whose workers may wait in a queue (stall_timeout covers those).",
    )
    tls: bool | None = Field(
        None,
        description="Encrypt and authenticate scheduler traffic with TLS. Default on for slurm/pbs/address "
        "(slurm/pbs: a throwaway certificate unless tls_* files are given; address: the tls_* files). "
        "A local cluster listens on 127.0.0.1 only and takes no TLS.",
    )
    tls_ca_file: str | None = Field(None, description="CA certificate (PEM) the scheduler, workers and driver trust.")
    tls_cert: str | None = Field(None, description="Certificate (PEM) of this cluster's scheduler, workers and driver.")
    tls_key: str | None = Field(None, description="Private key (PEM) of tls_cert.")
    shared_temp_directory: str = Field(
        "~/.matris-flows/tls",
        description="Directory visible to the driver and the worker nodes where a throwaway worker "
        "certificate is written (mode 0600, removed when the driver ends).",
    )

    @model_validator(mode="after")
    def _check_kind(self) -> ExecutionProfile:
        if self.kind == "address" and not self.address:
            raise ValueError("an 'address' profile needs the scheduler address")
        if self.kind in ("slurm", "pbs") and not (self.cores and self.memory):
            raise ValueError(f"a '{self.kind}' profile needs cores and memory per job")
        paths = [self.tls_ca_file, self.tls_cert, self.tls_key]
        if any(paths) and not all(paths):
            raise ValueError("TLS needs all of tls_ca_file, tls_cert and tls_key")
        if self.kind == "local" and (self.tls or any(paths)):
            raise ValueError("a local cluster listens on 127.0.0.1 only: TLS applies to slurm, pbs and address profiles")
        if self.kind == "address" and self.use_tls and not all(paths):
            raise ValueError(
                "an 'address' profile uses TLS by default: give tls_ca_file, tls_cert and tls_key "
                "(the scheduler's certificates), or set tls: false on a trusted network"
            )
        if self.kind == "address" and self.use_tls and not self.address.startswith("tls://"):
            raise ValueError(f"with TLS on, the scheduler address starts with tls:// (got {self.address!r})")
        if self.kind in ("slurm", "pbs"):
            if self.minimum_jobs is not None and self.maximum_jobs is not None and self.minimum_jobs > self.maximum_jobs:
                raise ValueError("minimum_jobs is larger than maximum_jobs")
            lifetime = self.lifetime_seconds()
            if lifetime is not None and lifetime[0] <= lifetime[1]:
                raise ValueError("worker_lifetime must be longer than lifetime_stagger")
            walltime = _walltime_seconds(self.walltime) if self.walltime else None
            if lifetime is not None and walltime is not None and sum(lifetime) >= walltime:
                raise ValueError(
                    "worker_lifetime + lifetime_stagger must end before the walltime, "
                    "or the batch system kills workers in the middle of a task"
                )
        return self

    @property
    def use_tls(self) -> bool:
        """Whether scheduler traffic is encrypted (default: on for slurm/pbs/address)."""
        return self.kind != "local" if self.tls is None else self.tls

    def no_worker_seconds(self) -> float | None:
        """``no_worker_timeout`` with its per-kind default (60 s on a local cluster)."""
        if self.no_worker_timeout is not None:
            return self.no_worker_timeout
        return 60.0 if self.kind == "local" else None

    def job_range(self) -> tuple[int, int]:
        """Fewest and most worker batch jobs (slurm/pbs) the cluster adapts between."""
        minimum = (self.n_workers or 1) if self.minimum_jobs is None else self.minimum_jobs
        maximum = self.maximum_jobs if self.maximum_jobs is not None else max(self.n_workers or 1, minimum)
        return minimum, maximum

    def lifetime_seconds(self) -> tuple[float, float] | None:
        """A batch worker's lifetime and its stagger in seconds, or None where workers live to the walltime."""
        walltime = _walltime_seconds(self.walltime) if self.walltime else None
        if self.worker_lifetime is None and walltime is None:
            return None
        # default: retire between 80% and 90% of the walltime, leaving the batch system's
        # kill at the walltime nothing to interrupt but a task started less than ~10% before
        stagger = _seconds(self.lifetime_stagger) if self.lifetime_stagger else 0.05 * walltime if walltime else 0.0
        lifetime = _seconds(self.worker_lifetime) if self.worker_lifetime else 0.85 * walltime
        return lifetime, stagger

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


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d|day)?s?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400, "day": 86400}


def _seconds(text: str) -> float:
    """Seconds of a batch-system time ('[D-]HH:MM:SS', 'MM:SS') or a duration ('90s', '15m', '2h', '1d')."""
    if ":" in text:
        days, _, clock = text.strip().rpartition("-")
        parts = [float(p) for p in clock.split(":")]
        seconds = sum(value * 60**power for power, value in enumerate(reversed(parts)))
        return seconds + 86400 * float(days or 0)
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (e.g. '04:00:00', '90m', '2h')")
    return float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s").lower()]


def _walltime_seconds(text: str) -> float:
    """Seconds of a walltime; a bare number is minutes, as SLURM and PBS read it."""
    return 60 * float(text) if text.strip().isdigit() else _seconds(text)


def _visible_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0
