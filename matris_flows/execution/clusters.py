"""Dask clusters for running flows: a local default, an existing scheduler, SLURM, PBS.

Each Dask worker is one process running ``threads_per_worker`` tasks at once; its
relaxation jobs share one relaxation service (:mod:`matris_flows.relax.service`), so a
potential is loaded once per worker and one in-flight batch is fed by every relaxation
job the worker runs.  Native thread pools are pinned so that
workers x threads <= cores: through the worker environment (before numpy/torch are
imported there) and through :class:`PinThreadsPlugin` for torch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
from distributed import Client, WorkerPlugin
from distributed.deploy.adaptive import Adaptive

from matris_flows.core.threads import pin_threads, thread_env
from matris_flows.execution.profile import ExecutionProfile, _visible_gpus

__all__ = [
    "AssignGPUPlugin", "ExecutionProfile", "PinThreadsPlugin", "QuietPlugin", "ReplacingAdaptive",
    "cluster_security", "jobqueue_kwargs", "make_cluster", "open_client",
]

logger = logging.getLogger(__name__)


class PinThreadsPlugin(WorkerPlugin):
    """Cap BLAS/OpenMP/torch threads of every worker process at ``n_threads``."""

    idempotent = True

    def __init__(self, n_threads: int):
        self.n_threads = n_threads

    def setup(self, worker) -> None:
        try:
            pin_threads(self.n_threads)
        except ImportError:  # torch-free worker: the environment variables suffice
            os.environ.update(thread_env(self.n_threads))


class QuietPlugin(WorkerPlugin):
    """Install the known-noise warning filters and keep Warp's banner quiet in every worker.

    A LocalCluster's workers write to the driver's terminal, so their library chatter would
    land in the middle of the CLI's output.
    """

    idempotent = True

    def setup(self, worker) -> None:
        from matris_flows.core.quiet import silence_library_warnings

        silence_library_warnings()


class AssignGPUPlugin(WorkerPlugin):
    """Give each worker process its own GPU(s), so each holds one model instance.

    Worker ``k`` of the ``workers_per_node`` on a node (``k`` is the trailing number
    of its name: ``0, 1, ...`` in a LocalCluster, ``<job>-0, <job>-1`` for the
    processes of a batch job) gets the ``k``-th slice of the devices visible to the
    node (``CUDA_VISIBLE_DEVICES`` as set by the batch system, else all).  Runs
    before any job initialises CUDA in the process.
    """

    idempotent = True

    def __init__(self, gpus_per_worker: int, workers_per_node: int):
        self.gpus_per_worker = gpus_per_worker
        self.workers_per_node = workers_per_node

    def setup(self, worker) -> None:
        try:
            rank = int(str(worker.name).rsplit("-", 1)[-1]) % self.workers_per_node
        except ValueError:
            return
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = (
            visible.split(",") if visible else [str(i) for i in range(_visible_gpus())]
        )
        mine = devices[rank * self.gpus_per_worker : (rank + 1) * self.gpus_per_worker]
        if mine:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(mine)


# Worker background threads (the sampling profiler every 10 ms, system and memory monitors,
# the event-loop tick) take the GIL from pure-Python relaxations (ASE optimizers, EMT): one
# worker ran a fixed EMT workload in 4.57 s against 3.64 s in a plain process, and in 3.52 s
# with these settings (benchmarks/workflow_overhead.py has the campaign-scale numbers).
QUIET_WORKER_CONFIG = {
    # Every comm keeps its last N messages for debugging (default 1000), task specs with
    # their input documents included: ~1 MB per relaxation chunk, so the in-process scheduler
    # of a campaign held 5 GB at 10^5 candidates. Keep none.
    "distributed.admin.low-level-log-length": 0,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.tick.interval": "1s",
}


def _config_env(config: dict[str, Any]) -> dict[str, str]:
    """Dask config as DASK_* environment variables (for batch jobs that start workers)."""
    return {"DASK_" + key.upper().replace(".", "__").replace("-", "_"): str(value) for key, value in config.items()}


def cluster_security(profile: ExecutionProfile):
    """The ``distributed.security.Security`` of ``profile``'s scheduler, workers and driver, or None.

    TLS is on by default off the local machine (slurm/pbs/address): anyone who reaches an
    open scheduler can run code on every worker. Batch clusters started here get a
    throwaway self-signed certificate (``Security.temporary``) unless ``tls_*`` files are given.
    """
    if not profile.use_tls:
        return None
    from distributed.security import Security

    if profile.tls_ca_file:
        files = {"ca": profile.tls_ca_file, "cert": profile.tls_cert, "key": profile.tls_key}
        files = {role: str(Path(path).expanduser()) for role, path in files.items()}
        return Security(
            tls_ca_file=files["ca"],
            **{f"tls_{role}_{kind}": files[kind] for role in ("scheduler", "worker", "client") for kind in ("cert", "key")},
            require_encryption=True,
        )
    return Security.temporary()


def _shared_temp_directory(profile: ExecutionProfile) -> str:
    """Where dask-jobqueue writes the worker's copy of a throwaway certificate: private to the user."""
    directory = Path(profile.shared_temp_directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    return str(directory)


def _lifetime_args(profile: ExecutionProfile) -> list[str]:
    """``dask worker`` options that retire a batch worker gracefully before its walltime.

    The worker then exits, its job ends and the adaptive cluster submits a fresh one; no
    ``--lifetime-restart``, which would restart the worker inside the same job and leave it
    to be killed at the walltime in the middle of a task.
    """
    lifetime = profile.lifetime_seconds()
    if lifetime is None:
        return []
    return ["--lifetime", f"{lifetime[0]:.0f}s", "--lifetime-stagger", f"{lifetime[1]:.0f}s"]


def jobqueue_kwargs(profile: ExecutionProfile) -> dict[str, Any]:
    """Keyword arguments of ``SLURMCluster``/``PBSCluster`` for ``profile``."""
    threads = profile.worker_threads()
    directives = list(profile.job_extra_directives)
    # dask-jobqueue's "cores" are Dask threads (tasks at once), what the batch
    # system books is job_cpu (SLURM) / resource_spec (PBS)
    kwargs: dict[str, Any] = {
        "cores": profile.processes * profile.threads_per_worker,
        "memory": profile.memory,
        "processes": profile.processes,
        "walltime": profile.walltime,
        "queue": profile.queue,
        "account": profile.account,
        "job_script_prologue": [
            *profile.job_script_prologue,
            *(f"export {k}={v}" for k, v in {**thread_env(threads), **_config_env(QUIET_WORKER_CONFIG)}.items()),
        ],
        "worker_extra_args": _lifetime_args(profile),
        # no web dashboard, and the scheduler's remaining HTTP routes (metrics, health) on
        # the loopback interface: they take no authentication
        "scheduler_options": {"dashboard": False, "dashboard_address": "127.0.0.1:0"},
    }
    gpus_per_job = profile.gpus_per_worker * profile.processes
    if profile.kind == "slurm":
        kwargs["job_cpu"] = profile.cores
        if gpus_per_job:
            directives.append(f"--gres=gpu:{gpus_per_job}")
    else:
        gpu_spec = f":ngpus={gpus_per_job}" if gpus_per_job else ""
        kwargs["resource_spec"] = (
            f"select=1:ncpus={profile.cores}{gpu_spec}"
            f":mem={profile.memory.replace(' ', '')}"
        )
    if profile.local_directory:
        kwargs["local_directory"] = profile.local_directory
    if profile.use_tls:
        kwargs["security"] = cluster_security(profile)
        kwargs["shared_temp_directory"] = _shared_temp_directory(profile)
    if profile.gpus_per_worker:
        # jobs that need a GPU ask for it with resources={"GPU": 1}
        kwargs["worker_extra_args"] += [
            "--resources", f"GPU={profile.gpus_per_worker}"
        ]
    kwargs["job_extra_directives"] = directives
    return {k: v for k, v in kwargs.items() if v is not None}


def make_cluster(profile: ExecutionProfile):
    """The Dask cluster object of a local or batch profile (not of ``address``)."""
    if profile.kind == "local":
        from distributed import LocalCluster

        threads = profile.worker_threads()
        kwargs: dict[str, Any] = {
            "n_workers": profile.local_workers(),
            "threads_per_worker": profile.threads_per_worker,
            "processes": True,
            # scheduler and workers on the loopback interface only: nobody else can connect
            "host": "127.0.0.1",
            # in the environment before numpy/torch are imported in the worker
            "env": thread_env(threads),
            "dashboard_address": None,
        }
        if profile.memory:
            kwargs["memory_limit"] = profile.memory
        if profile.local_directory:
            kwargs["local_directory"] = profile.local_directory
        if profile.gpus_per_worker:
            kwargs["resources"] = {"GPU": profile.gpus_per_worker}
        with dask.config.set(QUIET_WORKER_CONFIG):  # nannies hand this config to their workers
            return LocalCluster(**kwargs)
    if profile.kind == "slurm":
        from dask_jobqueue import SLURMCluster

        return SLURMCluster(**jobqueue_kwargs(profile))
    if profile.kind == "pbs":
        from dask_jobqueue import PBSCluster

        return PBSCluster(**jobqueue_kwargs(profile))
    raise ValueError(f"profile kind {profile.kind!r} has no cluster to create")


class ReplacingAdaptive(Adaptive):
    """Adaptive scaling that also replaces batch jobs (or local workers) whose workers have all left.

    A local worker's nanny can be closed by distributed's lost-worker handling after a crash
    loop, and nothing starts another; a worker job ends at its worker's lifetime, at the walltime or on ``scancel``. The
    cluster still counts such a job in its plan (a multi-process job always, a single
    worker until ``lost-worker-timeout``), so plain ``adapt`` may see nothing to do. Here a
    job whose workers have all been seen and are all gone for ``grace`` seconds is
    forgotten (and cancelled, in case it lingers), so the next round submits a new one.
    """

    def __init__(self, *args, grace: float = 5.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.grace = grace
        self._seen: set[str] = set()
        self._gone_since: dict[str, float] = {}
        self.replaced = 0  # jobs forgotten so far (for logs and tests)

    async def recommendations(self, target: int) -> dict:
        ended = self._ended_jobs()
        if ended:
            # SpecCluster's own scale_down: drops the jobs from the plan and closes (cancels) them
            await self.cluster.scale_down(ended)
            self.replaced += len(ended)
        return await super().recommendations(target)

    def _ended_jobs(self) -> list[str]:
        """Jobs whose workers were all seen and have all been gone for ``grace`` seconds."""
        cluster = self.cluster
        alive = {str(info.get("name")) for info in cluster.scheduler_info.get("workers", {}).values()}
        now = time.monotonic()
        ended = []
        for job_name, spec in list(cluster.worker_spec.items()):
            names = {f"{job_name}{suffix}" for suffix in spec.get("group", [""])}
            if names & alive:
                self._seen.add(job_name)
                self._gone_since.pop(job_name, None)
                continue
            if job_name not in self._seen:  # queued or starting
                continue
            if now - self._gone_since.setdefault(job_name, now) < self.grace:
                continue
            logger.info(f"worker job {job_name} has ended; submitting a replacement")
            self._seen.discard(job_name)
            self._gone_since.pop(job_name, None)
            ended.append(job_name)
        return ended


@contextlib.contextmanager
def open_client(profile: ExecutionProfile | None = None) -> Iterator[Client]:
    """A ``distributed.Client`` for ``profile`` (default: local), closed on exit."""
    # the scheduler and client comms live in this process: no message log here either
    dask.config.set({"distributed.admin.low-level-log-length": 0})
    # The scheduler (in this process) hands a worker one task per thread, no queue behind it: a
    # worker that dies then takes down only the tasks it was running, and queued innocents do
    # not use up their allowed failures (KilledWorker) for a death they had no part in.
    dask.config.set({"distributed.scheduler.worker-saturation": 1.0})
    profile = profile or ExecutionProfile()
    cluster = None
    if profile.kind == "address":
        client = Client(profile.address, security=cluster_security(profile))
    else:
        cluster = make_cluster(profile)
        if profile.kind in ("slurm", "pbs"):
            # adaptive, not a one-off scale: jobs that end (lifetime, walltime, scancel) are replaced
            minimum, maximum = profile.job_range()
            cluster.adapt(Adaptive=ReplacingAdaptive, minimum_jobs=minimum, maximum_jobs=maximum)
        else:
            # A nanny restarts a worker that dies, but after a crash loop distributed may close the
            # nanny itself and nothing starts another: keep the configured count by replacing it.
            n_workers = profile.local_workers()
            cluster.adapt(Adaptive=ReplacingAdaptive, minimum=n_workers, maximum=n_workers)
        client = Client(cluster)  # takes the cluster's security
    try:
        client.register_plugin(QuietPlugin())
        threads = profile.worker_threads()
        if threads is not None:
            client.register_plugin(PinThreadsPlugin(threads))
        if profile.gpus_per_worker:
            per_node = profile.local_workers() if profile.kind == "local" else (
                profile.processes
            )
            client.register_plugin(
                AssignGPUPlugin(profile.gpus_per_worker, workers_per_node=per_node)
            )
        logger.info(f"Dask client open: {client}")
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
