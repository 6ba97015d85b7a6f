"""Cluster settings that need no batch system: worker lifetimes, adaptive job ranges, TLS, the stall watchdog."""

import stat
import time

import psutil
import pytest
from campaign_specs import emt_spec, prototype_generation, spec_yaml
from distributed import Client, LocalCluster
from jobflow import Flow
from pydantic import ValidationError

from matris_flows.execution.clusters import ExecutionProfile, cluster_security, jobqueue_kwargs, make_cluster
from matris_flows.execution.dask_manager import run_on_dask
from matris_flows.execution.events import StalledError
from matris_flows.testing import jobs as tj


def test_batch_workers_retire_before_the_walltime_by_default():
    profile = ExecutionProfile(kind="slurm", cores=4, memory="8GB", walltime="12:00:00")
    lifetime, stagger = profile.lifetime_seconds()
    # retire between 80% and 90% of the walltime
    assert (lifetime - stagger, lifetime + stagger) == pytest.approx((0.8 * 43200, 0.9 * 43200))
    args = jobqueue_kwargs(profile)["worker_extra_args"]
    assert args == ["--lifetime", "36720s", "--lifetime-stagger", "2160s"]
    assert "--lifetime-restart" not in args  # a restart inside the job would meet the walltime mid-task
    explicit = ExecutionProfile(kind="pbs", cores=1, memory="1GB", walltime="1-00:00:00", worker_lifetime="20h", lifetime_stagger="30m")
    assert explicit.lifetime_seconds() == (72000, 1800)
    assert ExecutionProfile(kind="slurm", cores=1, memory="1GB", walltime="30", worker_lifetime="25m").lifetime_seconds()[0] == 1500
    assert jobqueue_kwargs(ExecutionProfile(kind="slurm", cores=1, memory="1GB"))["worker_extra_args"] == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"walltime": "01:00:00", "worker_lifetime": "58m", "lifetime_stagger": "3m"}, "end before the walltime"),
        ({"walltime": "30", "worker_lifetime": "40m"}, "end before the walltime"),  # a bare walltime is minutes
        ({"worker_lifetime": "1m", "lifetime_stagger": "2m"}, "longer than lifetime_stagger"),
        ({"worker_lifetime": "soon"}, "not a duration"),
        ({"minimum_jobs": 4, "maximum_jobs": 2}, "minimum_jobs is larger"),
        ({"tls_cert": "cert.pem"}, "all of tls_ca_file"),
    ],
)
def test_bad_batch_settings_are_one_clear_error(options, message):
    with pytest.raises(ValidationError, match=message):
        ExecutionProfile(kind="slurm", cores=1, memory="1GB", **options)


def test_adaptive_job_range():
    batch = {"kind": "slurm", "cores": 1, "memory": "1GB"}
    assert ExecutionProfile(**batch).job_range() == (1, 1)
    assert ExecutionProfile(**batch, n_workers=4).job_range() == (4, 4)
    assert ExecutionProfile(**batch, n_workers=2, maximum_jobs=6).job_range() == (2, 6)
    assert ExecutionProfile(**batch, minimum_jobs=0, maximum_jobs=3).job_range() == (0, 3)


def test_batch_clusters_use_tls_with_a_private_throwaway_certificate(tmp_path):
    shared = tmp_path / "tls"
    profile = ExecutionProfile(kind="slurm", cores=1, memory="1GB", shared_temp_directory=str(shared))
    cluster = make_cluster(profile)
    try:
        assert cluster.scheduler.address.startswith("tls://")
        script = cluster.job_script()
        assert "--protocol tls://" in script and "--tls-key" in script
        assert stat.S_IMODE(shared.stat().st_mode) == 0o700
        written = list(shared.iterdir())
        assert len(written) == 3 and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in written)
        # only the TLS port is open to the network; the scheduler's HTTP routes (no authentication) are on loopback
        port = int(cluster.scheduler.address.rsplit(":", 1)[1])
        exposed = {c.laddr.port for c in _listening(psutil.Process()) if c.laddr.ip not in ("127.0.0.1", "::1")}
        assert exposed == {port}
    finally:
        cluster.close()
    plain = make_cluster(profile.model_copy(update={"tls": False}))
    try:
        assert plain.scheduler.address.startswith("tcp://")
    finally:
        plain.close()


def test_an_address_profile_needs_certificates_unless_tls_is_off(tmp_path):
    with pytest.raises(ValidationError, match="uses TLS by default"):
        ExecutionProfile(kind="address", address="tls://head:8786")
    assert cluster_security(ExecutionProfile(kind="address", address="tcp://head:8786", tls=False)) is None
    files = {name: str(tmp_path / f"{name}.pem") for name in ("tls_ca_file", "tls_cert", "tls_key")}
    with pytest.raises(ValidationError, match="starts with tls://"):
        ExecutionProfile(kind="address", address="tcp://head:8786", **files)
    security = cluster_security(ExecutionProfile(kind="address", address="tls://head:8786", **files))
    assert security.require_encryption
    assert security.tls_client_cert == files["tls_cert"] and security.tls_ca_file == files["tls_ca_file"]


def _listening(process: psutil.Process) -> list:
    return [c for c in process.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]


def test_local_clusters_listen_on_loopback_only(dask_client):
    assert dask_client.scheduler.address.startswith("tcp://127.0.0.1:")
    dask_client.wait_for_workers(2, timeout=120)
    assert all(address.startswith("tcp://127.0.0.1:") for address in dask_client.scheduler_info()["workers"])
    # scheduler, dashboard, nannies and workers: nothing listens beyond the loopback interface
    driver = psutil.Process()
    sockets = [c for process in (driver, *driver.children(recursive=True)) for c in _listening(process)]
    assert len(sockets) >= 5
    assert {c.laddr.ip for c in sockets} == {"127.0.0.1"}
    with pytest.raises(ValidationError, match="127.0.0.1"):
        ExecutionProfile(tls=True)


def test_no_workers_and_no_progress_stops_the_run_and_it_resumes(tmp_path, new_job_store):
    store = new_job_store()
    flow = Flow([tj.add(1, 2), tj.add(3, 4)])
    with LocalCluster(n_workers=0, processes=True, host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster) as client:
        start = time.monotonic()
        with pytest.raises(StalledError, match=r"no Dask worker and no job finished for \d+ s \(stall_timeout 2 s\)"):
            run_on_dask(flow, store, client, stall_timeout=2)
        assert time.monotonic() - start < 15
        assert store.count() == 0
        # the same store, once a worker is there: every job runs and the run finishes
        cluster.scale(1)
        client.wait_for_workers(1, timeout=120)
        responses = run_on_dask(flow, store, client, stall_timeout=2)
    assert sorted(r[1].output for r in responses.values()) == [3, 7]


def test_a_cluster_without_live_workers_stops_the_driver_at_the_no_worker_timeout(new_job_store):
    # in flight or not, a cluster that has lost every worker is broken, whatever stall_timeout says
    flow = Flow([tj.add(1, 2)])
    with LocalCluster(n_workers=0, processes=True, host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster) as client:
        start = time.monotonic()
        with pytest.raises(StalledError, match=r"no live worker for \d+ s \(no_worker_timeout 3 s\)"):
            run_on_dask(flow, new_job_store(), client, stall_timeout=None, no_worker_timeout=3)
        assert time.monotonic() - start < 15


def test_local_profiles_give_up_on_a_workerless_cluster_within_a_minute():
    assert ExecutionProfile().no_worker_seconds() == 60
    assert ExecutionProfile(no_worker_timeout=5).no_worker_seconds() == 5
    assert ExecutionProfile(kind="slurm", cores=1, memory="1GB").no_worker_seconds() is None  # workers may be queued


def test_local_cluster_replaces_a_worker_whose_nanny_was_closed():
    """distributed's lost-worker handling can close a nanny after a crash loop; the cluster keeps its size."""
    import os

    from matris_flows.execution.clusters import open_client

    with open_client(ExecutionProfile(n_workers=2, threads_per_worker=1)) as client:
        client.wait_for_workers(2, timeout=120)
        before = set(client.run(os.getpid).values())
        cluster = client.cluster
        cluster.sync(cluster.workers[next(iter(cluster.workers))].close)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pids = set(client.run(os.getpid).values())
            if len(pids) == 2 and pids != before:
                break
            time.sleep(1)
        assert len(pids) == 2 and len(pids & before) == 1, "the closed worker was not replaced"


def test_a_long_job_on_a_live_worker_is_not_a_stall(dask_client, new_job_store, tmp_path):
    # no job finishes for longer than the timeout, but a worker is there: the run waits
    responses = run_on_dask(tj.record_call(str(tmp_path), "slow", 3, seconds=3.0), new_job_store(), dask_client, stall_timeout=1)
    assert [r[1].output for r in responses.values()] == [3]


STALLING_SPEC = spec_yaml(
    emt_spec("stalls", prototype_generation(chunk_size=None), relax={"max_steps": 50}, execution={"n_workers": 1, "stall_timeout": 2})
)


def test_cli_reports_a_stall_in_one_line_and_the_campaign_resumes(tmp_path, monkeypatch, capsys):
    import contextlib

    import matris_flows.execution as execution
    from matris_flows.campaign.reading import query_campaign
    from matris_flows.cli import main

    real_open_client = execution.open_client

    @contextlib.contextmanager
    def no_workers(profile):  # a cluster whose workers never arrive
        with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster) as client:
            yield client

    spec = tmp_path / "stalls.yaml"
    spec.write_text(STALLING_SPEC)
    directory = tmp_path / "campaign"
    monkeypatch.setattr(execution, "open_client", no_workers)
    assert main(["screen", str(spec), "--dir", str(directory)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if line.startswith("error:")] == [
        next(line for line in err if line.startswith("error: no Dask worker and no job finished for"))
    ]
    assert "Traceback" not in "\n".join(err)
    monkeypatch.setattr(execution, "open_client", real_open_client)
    assert main(["resume", str(directory)]) == 0
    assert len(query_campaign(directory)) == 2  # Cu3Ni and CuNi3


def test_cli_says_in_one_line_that_the_cluster_has_no_worker_with_a_resume_hint(tmp_path, monkeypatch, capsys):
    import contextlib

    import matris_flows.execution as execution
    from matris_flows.cli import main

    @contextlib.contextmanager
    def no_workers(profile):  # every worker lost, none replaced
        with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster) as client:
            yield client

    spec = tmp_path / "workerless.yaml"
    spec.write_text(STALLING_SPEC.replace("stall_timeout: 2", "no_worker_timeout: 3"))
    directory = tmp_path / "campaign"
    monkeypatch.setattr(execution, "open_client", no_workers)
    start = time.monotonic()
    assert main(["screen", str(spec), "--dir", str(directory)]) == 2
    assert time.monotonic() - start < 60
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1 and "no live worker" in errors[0], err
    assert errors[0].endswith(f"`matris-flows resume {directory}` continues")
    assert "Traceback" not in "\n".join(err)


def test_adaptive_forgets_batch_jobs_whose_workers_have_all_left(monkeypatch):
    """Which jobs count as ended; SpecCluster.scale_down then drops and cancels them (the SLURM tests run that part)."""
    from types import SimpleNamespace

    from matris_flows.execution import clusters

    cluster = SimpleNamespace(
        scheduler_info={"workers": {"a": {"name": "C-0"}, "b": {"name": "C-1-0"}, "c": {"name": "C-1-1"}}},
        worker_spec={"C-0": {}, "C-1": {"group": ["-0", "-1"]}, "C-2": {}},  # C-1: a two-process job; C-2: queued
    )
    adaptive = clusters.ReplacingAdaptive.__new__(clusters.ReplacingAdaptive)
    adaptive.cluster, adaptive.grace, adaptive._seen, adaptive._gone_since, adaptive.replaced = cluster, 5.0, set(), {}, 0
    clock = [100.0]
    monkeypatch.setattr(clusters.time, "monotonic", lambda: clock[0])

    assert adaptive._ended_jobs() == []  # everything alive or queued
    del cluster.scheduler_info["workers"]["a"], cluster.scheduler_info["workers"]["b"]
    assert adaptive._ended_jobs() == []  # C-0 gone, but only just
    clock[0] += 6
    # C-0's worker left: ended, so adapt submits a new job; C-1 still has a worker process;
    # C-2 never started, so it is not counted as ended
    assert adaptive._ended_jobs() == ["C-0"]
    assert adaptive._ended_jobs() == []  # reported once
