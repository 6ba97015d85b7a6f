"""The Dask manager against jobflow's run_locally on the same flows."""

import copy
import json
from pathlib import Path

import pytest
from jobflow import Flow, OutputReference, run_locally
from monty.json import MontyDecoder

from matris_flows.execution.clusters import open_client
from matris_flows.execution.dask_manager import run_on_dask
from matris_flows.execution.profile import ExecutionProfile
from matris_flows.execution.worker_tasks import RecentOutputs, resolve_inputs
from matris_flows.stores.backends import make_job_store
from matris_flows.stores.config import StoreConfig
from matris_flows.testing import jobs as tj


def static_flow():
    a = tj.add(1, 2)
    b = tj.add(a.output, 3)
    c = tj.add(a.output, b.output)
    d = tj.add_with_trajectory(c.output, 1)
    return Flow([a, b, c, d], name="static")


def replace_flow():
    a = tj.add(1, 2)
    b = tj.replace_with_job(a.output)
    c = tj.replace_with_flow(b.output)
    d = tj.add(c.output, b.output)
    return Flow([a, b, c, d], name="replace")


def detour_addition_flow():
    a = tj.detour_to_add(5)
    b = tj.add(a.output, 1)
    fib = tj.fibonacci(1, 1, stop_point=20)
    c = tj.add(fib.output, b.output)
    return Flow([a, b, fib, c], name="detour-addition")


def failing_flow():
    a = tj.add(1, 2)
    bad = tj.fail(a.output)
    skipped = tj.add(bad.output, 1)  # on_missing ERROR: never runs
    tolerant = tj.count_missing(bad.output, a.output)
    tolerant2 = tj.add(a.output, 5)  # independent of the failure
    return Flow([a, bad, skipped, tolerant, tolerant2], name="failing")


def stop_children_flow():
    a = tj.stop_children(1)
    b = tj.add(a.output, 1)
    c = tj.add(b.output, 1)
    d = tj.add(2, 2)
    return Flow([a, b, c, d], name="stop-children")


def stop_jobflow_flow():
    a = tj.add(1, 1)
    b = tj.stop_jobflow(a.output)
    c = tj.add(b.output, 1)
    return Flow([a, b, c], name="stop-jobflow")


def nested_flow():
    inner = Flow([tj.add(1, 1)], name="inner")
    inner.output = inner.jobs[0].output
    outer = tj.replace_with_flow(inner.output)
    return Flow([inner, outer, tj.add(outer.output, 1)], name="outer")


FLOWS = {
    "static": static_flow,
    "replace": replace_flow,
    "detour_addition": detour_addition_flow,
    "failing": failing_flow,
    "stop_children": stop_children_flow,
    "stop_jobflow": stop_jobflow_flow,
    "nested": nested_flow,
}


def _shape(responses):
    """{(uuid, index)} of responses, to compare which jobs responded."""
    return {(uuid, index) for uuid, by_index in responses.items() for index in by_index}


@pytest.mark.parametrize("name", list(FLOWS))
def test_same_store_contents_as_run_locally(
    name, dask_client, new_job_store, store_contents
):
    flow = FLOWS[name]()
    local_store, dask_store = new_job_store(), new_job_store()

    local = run_locally(copy.deepcopy(flow), store=local_store, log=False)
    on_dask = run_on_dask(copy.deepcopy(flow), store=dask_store, client=dask_client)

    assert local_store.count() > 0
    assert store_contents(dask_store) == store_contents(local_store)
    static = set(flow.all_uuids)
    assert {k for k in _shape(on_dask) if k[0] in static} == {
        k for k in _shape(local) if k[0] in static
    }
    assert len(_shape(on_dask)) == len(_shape(local))


@pytest.mark.parametrize("name", ["failing", "stop_jobflow", "static"])
def test_ensure_success_like_run_locally(name, dask_client, new_job_store):
    def outcome(manager, **kwargs):
        try:
            manager(FLOWS[name](), store=new_job_store(), ensure_success=True, **kwargs)
        except RuntimeError:
            return "raised"
        return "ok"

    expected = outcome(run_locally, log=False)
    assert outcome(run_on_dask, client=dask_client) == expected


def test_raise_immediately(dask_client, new_job_store):
    with pytest.raises(RuntimeError, match="deliberate failure"):
        run_on_dask(
            failing_flow(), store=new_job_store(), client=dask_client,
            raise_immediately=True,
        )


def test_independent_jobs_run_concurrently(dask_client, new_job_store, tmp_path):
    jobs = [tj.record_call(str(tmp_path), f"job{i}", i, seconds=0.2) for i in range(6)]
    run_on_dask(Flow(jobs), store=new_job_store(), client=dask_client)
    pids = {
        line for f in tmp_path.glob("*.calls") for line in f.read_text().split()
    }
    assert len(pids) == 2  # both workers took jobs


def test_child_of_a_finished_job_goes_ahead_of_queued_work(new_job_store, tmp_path):
    """A chunk's hull job runs as soon as a thread frees, not after every chunk queued before it."""
    head = tj.record_start(str(tmp_path), "head", 1, seconds=0.2)
    child = tj.record_start(str(tmp_path), "child", head.output)
    queued = [tj.record_start(str(tmp_path), f"queued{i}", i, seconds=0.5) for i in range(4)]
    # one thread: up to four tasks in flight, so three queued jobs wait on the worker when the child is submitted
    with open_client(ExecutionProfile(n_workers=1, threads_per_worker=1, torch_threads=1)) as client:
        run_on_dask(Flow([head, child, *queued]), store=new_job_store(), client=client)
    starts = (tmp_path / "starts").read_text().split()
    assert starts[:3] == ["head", "queued0", "child"], starts
    assert sorted(starts) == sorted(["head", "child", *(f"queued{i}" for i in range(4))])


def test_a_job_is_shipped_with_the_item_it_references_and_the_output_is_read_once(new_job_store, monkeypatch):
    """A chunk job gets its chunk, not the whole shard; the chunks of one shard read it from the store once."""
    store = new_job_store()
    store.connect()
    shard = tj.add(1, 2)
    store.update({"uuid": shard.uuid, "index": 1, "output": {"chunks": [list(range(1000)), [2], [3]]}})
    reads = []
    monkeypatch.setattr(store, "get_output", lambda *a, _get=store.get_output, **k: reads.append(a) or _get(*a, **k))
    cache = RecentOutputs()
    chunk_jobs = [tj.add(shard.output["chunks"][k], [0]) for k in range(3)]
    resolved = [resolve_inputs(job, store, cache) for job in chunk_jobs]
    assert [r.function_args[0] for r in resolved] == [list(range(1000)), [2], [3]]
    assert len(reads) == 1
    assert not any(r.config.resolve_references for r in resolved)  # nothing left to resolve on the worker
    assert all(isinstance(job.function_args[0], OutputReference) for job in chunk_jobs)  # the flow keeps its references
    # each job gets its own objects, decoded from the cached document
    again = resolve_inputs(chunk_jobs[0], store, cache)
    assert again.function_args[0] == resolved[0].function_args[0] and again.function_args[0] is not resolved[0].function_args[0]


def test_recent_outputs_keep_the_last_few_jobs():
    cache = RecentOutputs(size=2)
    for uuid in ("a", "b", "c"):
        cache[uuid] = {1: uuid}
    assert list(cache) == ["b", "c"]
    cache["b"]  # a read makes it recent
    cache["d"] = {1: "d"}
    assert list(cache) == ["b", "d"]


def test_killed_worker_is_retried(dask_client, new_job_store, tmp_path):
    marker = tmp_path / "killed"
    first = tj.kill_worker(str(marker), 5)
    second = tj.add(first.output, 1)
    store = new_job_store()
    events = []

    run_on_dask(
        Flow([first, second]), store=store, client=dask_client,
        ensure_success=True, progress=events.append,
    )

    assert marker.exists()  # the first attempt did die
    assert store.get_output(first.uuid) == 5
    assert store.get_output(second.uuid) == 6
    assert [e.status for e in events if e.uuid == first.uuid][-1] == "completed"


@pytest.fixture(scope="module")
def fragile_client():
    """One worker, and Dask gives up on a task the first time its worker dies."""
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_killed_worker_resubmitted_then_given_up(fragile_client, new_job_store, tmp_path):
    survives = tj.kill_worker(str(tmp_path / "twice"), 1, times=2)
    after = tj.add(survives.output, 1)
    dies = tj.kill_worker(str(tmp_path / "always"), 2, times=99)
    store = new_job_store()
    events = []

    responses = run_on_dask(
        Flow([survives, after]), store=store, client=fragile_client,
        worker_failure_retries=2, progress=events.append, ensure_success=True,
    )
    assert store.get_output(after.uuid) == 2
    assert [e.status for e in events].count("retrying") == 2
    assert after.uuid in responses

    with pytest.raises(RuntimeError, match="did not finish"):
        run_on_dask(
            Flow([dies]), store=store, client=fragile_client,
            worker_failure_retries=1, ensure_success=True,
        )
    assert len((tmp_path / "always").read_text().split()) == 2


def _reload(flow: Flow) -> Flow:
    """The flow as a resumed campaign gets it: from its saved JSON."""
    return MontyDecoder().process_decoded(json.loads(flow.to_json()))


def _calls(marker_dir: Path, name: str) -> int:
    path = marker_dir / f"{name}.calls"
    return len(path.read_text().split()) if path.exists() else 0


def resumable_flow(marker_dir: Path, crash_marker: Path) -> Flow:
    a = tj.record_call(str(marker_dir), "a", 1)
    b = tj.replace_with_flow(a.output)
    c = tj.crash_if_marker(str(crash_marker), b.output)
    d = tj.record_call(str(marker_dir), "d", c.output)
    e = tj.record_call(str(marker_dir), "e", 2)
    return Flow([a, b, c, d, e])


def test_resume_skips_finished_jobs(dask_client, tmp_path, store_contents):
    campaign, markers = tmp_path / "campaign", tmp_path / "markers"
    markers.mkdir()
    crash = tmp_path / "crash"
    crash.touch()
    flow = resumable_flow(markers, crash)
    saved = flow.to_json()

    store = make_job_store(StoreConfig(), campaign)
    responses = run_on_dask(flow, store=store, client=dask_client)
    assert {"a": 1, "d": 0, "e": 1} == {n: _calls(markers, n) for n in "ade"}
    n_docs = store.count()
    store.close()

    # the crash is fixed; a new driver reloads the flow and reconnects to the store
    crash.unlink()
    store = make_job_store(StoreConfig(), campaign)
    flow = MontyDecoder().process_decoded(json.loads(saved))
    events = []
    resumed = run_on_dask(
        flow, store=store, client=dask_client, ensure_success=True,
        progress=events.append,
    )

    assert {"a": 1, "d": 1, "e": 1} == {n: _calls(markers, n) for n in "ade"}
    assert store.count() == n_docs + 2  # c and d, nothing duplicated
    statuses = {(e.name, e.index): e.status for e in events}
    assert statuses[("replace_with_flow", 1)] == "resumed"
    assert statuses[("store_inputs", 2)] == "resumed"  # replacement re-expanded
    assert statuses[("crash_if_marker", 1)] == "completed"
    assert set(responses) <= set(resumed)
    d_uuid = flow.jobs[3].uuid
    assert store.get_output(d_uuid) == 4  # (1 + 1) + 2 through the replacement

    # a finished campaign resumed again runs nothing and writes nothing new
    contents = store_contents(store)
    run_on_dask(_reload(flow), store=store, client=dask_client, ensure_success=True)
    assert {"a": 1, "d": 1, "e": 1} == {n: _calls(markers, n) for n in "ade"}
    assert store_contents(store) == contents


def test_resume_false_reruns(dask_client, new_job_store, tmp_path):
    flow = Flow([tj.record_call(str(tmp_path), "a", 1)])
    store = new_job_store()
    run_on_dask(flow, store=store, client=dask_client)
    run_on_dask(_reload(flow), store=store, client=dask_client, resume=False)
    assert _calls(tmp_path, "a") == 2
    assert store.count() == 1  # overwritten on (uuid, index), not duplicated


def test_direct_writes_to_shared_store(dask_client, tmp_path):
    # the embedded SQLite store stands in for MongoDB here; the flow is linear so that
    # only one process writes at a time
    a = tj.add(1, 2)
    b = tj.add_with_trajectory(a.output, 1)
    c = tj.replace_with_job(b.output["sum"])
    store = make_job_store(StoreConfig(), tmp_path)
    run_on_dask(
        Flow([a, b, c]), store=store, client=dask_client, direct_writes=True,
        ensure_success=True,
    )
    assert store.get_output(c.uuid) == 14
    assert store.get_output(b.uuid, load=True)["trajectory"] == [0.0, 1.0, 2.0, 3.0]
