"""Execution profiles: validation, batch job scripts, the local client."""

import pytest
from pydantic import ValidationError

from matris_flows.execution.clusters import (
    AssignGPUPlugin,
    ExecutionProfile,
    jobqueue_kwargs,
    make_cluster,
)


def test_profile_validation():
    assert ExecutionProfile().kind == "local"
    with pytest.raises(ValidationError, match="scheduler address"):
        ExecutionProfile(kind="address")
    with pytest.raises(ValidationError, match="cores and memory"):
        ExecutionProfile(kind="slurm", cores=4)
    with pytest.raises(ValidationError):
        ExecutionProfile(kind="local", n_wokers=2)  # typo is an error, not ignored


def test_cpu_threads_never_oversubscribe():
    assert ExecutionProfile(n_workers=2).worker_threads() >= 1
    profile = ExecutionProfile(kind="slurm", cores=16, memory="64GB", processes=4)
    assert profile.worker_threads() * profile.processes <= 16
    assert ExecutionProfile(n_workers=3, torch_threads=2).worker_threads() == 2


def test_slurm_job_script_has_requested_resources():
    profile = ExecutionProfile(
        kind="slurm", cores=8, memory="32GB", walltime="02:00:00", processes=2,
        gpus_per_worker=1, queue="gpu", account="proj1",
        job_extra_directives=["--constraint=a100"],
    )
    cluster = make_cluster(profile)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in (
        "#SBATCH --cpus-per-task=8", "#SBATCH -t 02:00:00", "#SBATCH -p gpu",
        "#SBATCH -A proj1", "#SBATCH --gres=gpu:2", "#SBATCH --constraint=a100",
        "#SBATCH --mem=", "export OMP_NUM_THREADS=4",
    ):
        assert line in script
    # two tasks at a time per worker process (relaxation jobs sharing its service, the others
    # one at a time), two workers, each owning one GPU; native threads pinned per process
    assert "--nthreads 2" in script
    assert "--nworkers 2" in script
    assert "--resources GPU=1" in script


def test_pbs_job_script_has_requested_resources():
    profile = ExecutionProfile(
        kind="pbs", cores=8, memory="32GB", walltime="01:00:00", gpus_per_worker=1
    )
    cluster = make_cluster(profile)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#PBS -l select=1:ncpus=8:ngpus=1:mem=32GB" in script
    assert "#PBS -l walltime=01:00:00" in script
    assert "export OMP_NUM_THREADS=8" in script


def test_cpu_batch_job_books_no_gpu():
    kwargs = jobqueue_kwargs(ExecutionProfile(kind="slurm", cores=4, memory="8GB"))
    assert not any("gres" in d for d in kwargs["job_extra_directives"])
    assert "--resources" not in kwargs["worker_extra_args"]


class _Worker:
    def __init__(self, name):
        self.name = name


@pytest.mark.parametrize(
    ("name", "visible", "expected"),
    [(0, None, "0"), (1, None, "1"), ("SLURMCluster-3-1", "4,5", "5"),
     ("SLURMCluster-3-0", "4,5", "4")],
)
def test_gpu_assignment(monkeypatch, name, visible, expected):
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        monkeypatch.setattr(
            "matris_flows.execution.clusters._visible_gpus", lambda: 2
        )
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    AssignGPUPlugin(gpus_per_worker=1, workers_per_node=2).setup(_Worker(name))
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == expected


def test_local_client_pins_worker_threads(dask_client):
    import os

    dask_client.wait_for_workers(2, timeout=120)  # one may be restarting
    envs = dask_client.run(lambda: os.environ.get("OMP_NUM_THREADS"))
    assert set(envs.values()) == {"1"}

    def torch_threads():
        import torch

        return torch.get_num_threads()

    assert set(dask_client.run(torch_threads).values()) == {1}
    # two task slots per worker (the default), native threads still one per process
    threads = dask_client.nthreads()
    assert set(threads.values()) == {2}
