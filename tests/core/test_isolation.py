"""Crash isolation: calls in a watched child process that dies, hangs or overfills memory fail alone."""

import os
import time
from functools import partial

import pytest

from matris_flows.core.isolation import IsolatedFailure, ItemFailure, Sandbox, map_isolated, sandbox
from matris_flows.testing.poison import allocate_gib, double_unless_poisoned


@pytest.fixture
def box():
    box = Sandbox()
    yield box
    box.close()


def test_call_returns_and_reuses_the_child(box):
    assert box.call(double_unless_poisoned, [1, 2]) == [2, 4]
    assert box.call(double_unless_poisoned, [3]) == [6]
    assert box.n_started == 1


def test_exception_comes_back_as_itself(box):
    with pytest.raises(ValueError, match="item 3 is bad"):
        box.call(double_unless_poisoned, [3], poison={3: "raise"})
    assert box.call(double_unless_poisoned, [1]) == [2]
    assert box.n_started == 1  # an exception is not a crash: the child lives on


@pytest.mark.parametrize(
    ("action", "reason"),
    [("exit", "exited with code 137"), ("segfault", r"died with signal 11 \(SIGSEGV\)")],
)
def test_death_is_reported_and_the_next_call_gets_a_new_child(box, action, reason):
    with pytest.raises(IsolatedFailure, match=reason) as failure:
        box.call(double_unless_poisoned, [5], poison={5: action})
    assert failure.value.kind == "died"
    assert box.call(double_unless_poisoned, [1]) == [2]
    assert box.n_started == 2


def test_hang_is_killed_at_the_deadline(box):
    start = time.monotonic()
    with pytest.raises(IsolatedFailure, match="did not finish within 2 s") as failure:
        box.call(double_unless_poisoned, [5], poison={5: "hang"}, timeout_s=2)
    assert failure.value.kind == "timeout"
    assert time.monotonic() - start < 10


def test_memory_limit_kills_the_child():
    box = Sandbox(memory_limit=400 * 2**20)
    try:
        with pytest.raises(IsolatedFailure, match="memory use passed the limit of 0.4 GiB") as failure:
            box.call(allocate_gib, 1.0, timeout_s=50)
        assert failure.value.kind == "memory"
    finally:
        box.close()


def test_map_isolated_finds_the_culprits_of_a_batch(box):
    poison = {3: "exit", 6: "segfault"}
    call = partial(double_unless_poisoned, poison=poison)
    results = map_isolated(box, call, [1, 2, 3, 4, 5, 6, 7], timeout_s=lambda items: 30, together=True)
    assert [r for r in results if not isinstance(r, ItemFailure)] == [2, 4, 8, 10, 14]
    assert isinstance(results[2], ItemFailure) and "137" in results[2].reason
    assert isinstance(results[5], ItemFailure) and "SIGSEGV" in results[5].reason


def test_map_isolated_one_by_one_times_out_only_the_hanging_item(box):
    call = partial(double_unless_poisoned, poison={2: "hang"})
    results = map_isolated(box, call, [1, 2, 3], timeout_s=lambda items: 2, together=False)
    assert results[0] == 2 and results[2] == 6
    assert isinstance(results[1], ItemFailure) and results[1].kind == "timeout"


def test_child_exits_when_its_parent_is_killed(tmp_path):
    """SIGKILL of the process that owns a sandbox (a Dask worker) must not leave the child running."""
    import signal
    import subprocess
    import sys

    script = (
        "from matris_flows.core.isolation import Sandbox\n"
        "from matris_flows.testing.poison import double_unless_poisoned\n"
        "box = Sandbox(); box.call(double_unless_poisoned, [1])\n"
        "print(box._process.pid, flush=True)\n"
        "import time; time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the sandbox child outlived its killed parent")


def test_pooled_sandbox_is_kept_per_thread():
    with sandbox() as first:
        first.call(double_unless_poisoned, [1])
        started = first.n_started
    with sandbox() as second:
        assert second is first and second.call(double_unless_poisoned, [2]) == [4]
        assert second.n_started == started  # the same child: whatever it loaded is still loaded


def _environment_variable(name: str) -> str | None:
    import os

    return os.environ.get(name)


def test_children_run_without_dasks_malloc_trim_threshold(monkeypatch):
    """Dask workers set MALLOC_TRIM_THRESHOLD_=65536, which halved CHGNet's speed; children do not inherit it."""
    from matris_flows.core.isolation import Sandbox

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    box = Sandbox()
    try:
        assert box.call(_environment_variable, "MALLOC_TRIM_THRESHOLD_") is None
        assert box.call(_environment_variable, "OMP_NUM_THREADS") == "1"  # thread pinning carries over
    finally:
        box.close()
