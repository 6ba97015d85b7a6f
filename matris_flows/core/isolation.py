"""Run crash-prone work in a child process, so that one bad structure costs only itself.

Native code (spglib, neighbour lists, a model's kernels, CUDA) can segfault, hang or eat
all memory on a structure it was never meant to see. Run in the Dask worker itself, that
kills the worker and every job on it, and Dask retries the whole job until it gives up
(``KilledWorker``), blaming innocent chunk-mates and the jobs that shared the worker.

Here the worker hands each piece of such work to a long-lived child process (a
:class:`Sandbox`) and watches it from outside: if the child dies (any signal, ``os._exit``,
the kernel's OOM killer), runs past its deadline, or its memory passes the limit, the
child is killed, :class:`IsolatedFailure` names what happened, and the next call starts a
fresh child. The job itself never dies, so it can retry the suspects one by one and
record the culprit with its reason (:func:`map_isolated`).

A child serves one call at a time and keeps its module caches (a loaded potential is
loaded once per child, as it is once per worker process without isolation). Children are
pooled per process (:func:`sandbox`); a child whose parent dies exits on its own.

The child runs ``python -m matris_flows.core.isolation`` with the parent's
``sys.path`` and environment (so thread pinning and test-only import paths carry over);
calls are pickled over a pipe pair that is not stdout, so libraries printing to stdout in
the child do not corrupt the protocol.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!Q")  # length prefix of every message
_POLL_S = 0.2  # how often the parent checks the child's liveness, deadline and memory
# A call's deadline starts once the child has unpickled it: starting a child and importing
# what the call needs (seconds, minutes on a loaded node) is not the call's time.
_LOAD_TIMEOUT_S = 600.0
_LOADED = b"loaded"


class IsolatedFailure(Exception):
    """The isolated call did not return: its process died, hung or used too much memory.

    ``reason`` says what happened in words a user can act on, e.g. "the worker process
    died with signal 11 (SIGSEGV)"; ``kind`` is ``died``, ``timeout`` or ``memory``.
    """

    def __init__(self, reason: str, kind: str):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class IsolatedError(Exception):
    """The isolated call raised an exception that could not be sent back as itself."""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _write_message(fd: int, payload: bytes) -> None:
    data = _HEADER.pack(len(payload)) + payload
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            return None  # the other side is gone
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _read_message(fd: int) -> bytes | None:
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    return _read_exactly(fd, _HEADER.unpack(header)[0])


def _rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` and its descendants (a model may start helper processes)."""
    try:
        import psutil

        process = psutil.Process(pid)
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total
    except Exception:  # noqa: BLE001 - the process may be exiting: no reading this round
        return None


# Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536 (distributed.nanny.pre-spawn-environ),
# so that freed memory goes back to the OS at once. A model's tensors are allocated and freed
# every call: with that setting CHGNet took 7.72 instead of 3.90 ms per atom per call (one
# thread, 404 atoms). The children get glibc's default; their memory limit is watched from outside.
_DROPPED_FROM_CHILD_ENV = ("MALLOC_TRIM_THRESHOLD_",)


def child_environment() -> dict[str, str]:
    """The environment of a child: this process's, less the allocator settings that slow a model down."""
    return {name: value for name, value in os.environ.items() if name not in _DROPPED_FROM_CHILD_ENV}


class Sandbox:
    """One child process that runs picklable calls, watched for death, hangs and memory.

    Parameters
    ----------
    memory_limit
        Bytes of resident memory (child and its descendants) past which a call is killed;
        None: no limit of ours (the kernel's OOM killer still ends it, and that is a death).
    """

    def __init__(self, memory_limit: int | None = None):
        self.memory_limit = memory_limit
        self._process: subprocess.Popen | None = None
        self._to_child: int | None = None
        self._from_child: int | None = None
        self.n_started = 0  # children started so far (the first one and replacements)

    # -- the child's life -----------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _start(self) -> None:
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        command = [sys.executable, "-m", "matris_flows.core.isolation", str(request_read), str(reply_write)]
        self._process = subprocess.Popen(
            command,
            pass_fds=(request_read, reply_write),
            stdin=subprocess.DEVNULL,
            close_fds=True,
            env=child_environment(),
        )
        os.close(request_read)
        os.close(reply_write)
        self._to_child, self._from_child = request_write, reply_read
        self.n_started += 1
        # The child imports from where this process imports (test helpers, editable installs).
        _write_message(self._to_child, pickle.dumps(list(sys.path)))

    def close(self) -> None:
        """Stop the child (killed: it holds nothing that needs a clean shutdown)."""
        process, self._process = self._process, None
        for fd in (self._to_child, self._from_child):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._to_child = self._from_child = None
        if process is not None and process.poll() is None:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)

    def __del__(self):  # a Sandbox dropped without close() must not leave its child behind
        with contextlib.suppress(Exception):
            self.close()

    # -- calls ----------------------------------------------------------------------
    def call(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in the child; its return value, or its exception re-raised here.

        Raises :class:`IsolatedFailure` when the child dies, passes ``timeout_s`` seconds or
        the memory limit; the child is then gone and the next call starts a new one.
        """
        reply = self._begin(fn, args, kwargs, streaming=False)
        if reply is None:
            reply = self._wait_for_reply(timeout_s)
        return _unpack_final(reply)

    def stream(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Stream:
        """Start ``fn(channel, *args, **kwargs)`` in the child and talk to it while it runs.

        ``fn`` gets a :class:`Channel` to receive what :meth:`Stream.send` sends and to send
        messages back; the stream ends when ``fn`` returns. Death and memory are watched as
        for :meth:`call`; deadlines are the caller's (``Stream.receive`` only waits).
        """
        reply = self._begin(fn, args, kwargs, streaming=True)
        if reply is not None:  # the call could not even be unpickled
            _unpack_final(reply)
        return Stream(self)

    def _begin(self, fn, args, kwargs, streaming: bool) -> bytes | None:
        """Send a call and wait until the child has loaded it; the child's reply if it could not."""
        if not self.alive:
            self.close()
            self._start()
        payload = pickle.dumps((fn, args, kwargs, streaming), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            _write_message(self._to_child, payload)
        except OSError:  # the child died between calls
            failure = self._failure_after_death()
            self.close()
            raise failure from None
        loaded = self._wait_for_reply(_LOAD_TIMEOUT_S, what="start and load the call")
        return None if loaded == _LOADED else loaded

    def _wait_for_reply(self, timeout_s: float | None, what: str = "finish", kill: bool = True) -> bytes | None:
        """The child's next message; on passing ``timeout_s``, kill it (or, without ``kill``, return None)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        process = self._process
        while True:
            wait = _POLL_S if deadline is None else max(0.0, min(_POLL_S, deadline - time.monotonic()))
            ready, _, _ = select.select([self._from_child], [], [], wait)
            if ready:
                reply = _read_message(self._from_child)
                if reply is not None:
                    return reply
                failure = self._failure_after_death()
                self.close()
                raise failure
            if process.poll() is not None:
                failure = self._failure_after_death()
                self.close()
                raise failure
            if self.memory_limit is not None:
                rss = _rss_bytes(process.pid)
                if rss is not None and rss > self.memory_limit:
                    self.close()
                    raise IsolatedFailure(
                        f"memory use passed the limit of {self.memory_limit / 2**30:.1f} GiB "
                        f"({rss / 2**30:.1f} GiB): the process was killed", "memory",
                    )
            if deadline is not None and time.monotonic() >= deadline:
                if not kill:
                    return None
                self.close()
                raise IsolatedFailure(f"did not {what} within {timeout_s:.0f} s: the process was killed", "timeout")

    def _failure_after_death(self) -> IsolatedFailure:
        process = self._process
        code = None
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = process.wait(timeout=5)
        if code is not None and code < 0:
            kill_by_oom = code == -signal.SIGKILL
            hint = " (killed: out of memory, or by a signal from outside)" if kill_by_oom else ""
            return IsolatedFailure(f"the worker process died with signal {-code} ({_signal_name(-code)}){hint}", "died")
        return IsolatedFailure(f"the worker process exited with code {code}", "died")


def _unpack_final(reply: bytes) -> Any:
    status, value = pickle.loads(reply)
    if status == "ok":
        return value
    if status == "raised":
        raise value
    raise IsolatedError(value)


class StreamEnded(Exception):
    """The streaming call returned; ``value`` is what it returned."""

    def __init__(self, value: Any):
        super().__init__("the streaming call returned")
        self.value = value


class Stream:
    """The parent's end of a streaming call (:meth:`Sandbox.stream`)."""

    def __init__(self, box: Sandbox):
        self.box = box

    def send(self, message: Any) -> None:
        """Pickle ``message`` to the running call; raises :class:`IsolatedFailure` if the child is gone."""
        try:
            _write_message(self.box._to_child, pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
        except (OSError, TypeError):  # the child died (its pipe is closed, or was closed by us)
            failure = self.box._failure_after_death()
            self.box.close()
            raise failure from None

    def receive(self, timeout_s: float) -> Any | None:
        """The call's next message, or None after ``timeout_s`` without one.

        Raises :class:`IsolatedFailure` if the child died or passed the memory limit, and
        :class:`StreamEnded` (or the call's exception) when the call returned.
        """
        reply = self.box._wait_for_reply(timeout_s, kill=False)
        if reply is None:
            return None
        kind, value = pickle.loads(reply)
        if kind == "message":
            return value
        raise StreamEnded(_unpack_final(reply))


class Channel:
    """The child's end of a streaming call: what the parent sends, and a way to answer."""

    def __init__(self, request_fd: int, reply_fd: int):
        self._request_fd = request_fd
        self._reply_fd = reply_fd

    def receive(self, timeout_s: float | None = 0.0) -> Any | None:
        """The parent's next message; None after ``timeout_s`` (None: wait). Raises EOFError when the parent is gone."""
        ready, _, _ = select.select([self._request_fd], [], [], timeout_s)
        if not ready:
            return None
        message = _read_message(self._request_fd)
        if message is None:
            raise EOFError("the parent closed the stream")
        return pickle.loads(message)

    def send(self, message: Any) -> None:
        """Send ``message`` (picklable) to the parent."""
        _write_message(self._reply_fd, pickle.dumps(("message", message), protocol=pickle.HIGHEST_PROTOCOL))


# -- one child per thread -------------------------------------------------------------
# Children waiting for their thread's next call: a cache (a child keeps its loaded model),
# nothing depends on it. Per thread, because the child's death signal follows the thread
# that started it (PR_SET_PDEATHSIG), so a child is only ever used by that thread.
_idle: dict[int, Sandbox] = {}
_idle_lock = threading.Lock()


@contextlib.contextmanager
def sandbox(memory_limit: int | None = None) -> Iterator[Sandbox]:
    """This thread's child process (started on first use, kept for the thread's next calls)."""
    thread = threading.get_ident()
    with _idle_lock:
        box = _idle.pop(thread, None) or Sandbox()
    box.memory_limit = memory_limit
    try:
        yield box
    except BaseException:
        box.close()  # interrupted mid-call: the child may still be busy
        raise
    with _idle_lock:
        _idle[thread] = box


def worker_memory_limit() -> int | None:
    """The memory limit of the Dask worker this runs in (bytes), or None outside a worker / without one."""
    try:
        from distributed import get_worker

        limit = get_worker().memory_manager.memory_limit
    except (ImportError, ValueError, AttributeError):
        return None
    return int(limit) if limit else None


# -- many items, each failure costing only its item --------------------------------------
@dataclass
class ItemFailure:
    """An item whose isolated call did not return: the reason, and ``kind`` (died | timeout | memory)."""

    reason: str
    kind: str


def map_isolated(
    box: Sandbox,
    call: Callable[[Sequence[Any]], list[Any]],
    items: Sequence[Any],
    *,
    timeout_s: Callable[[Sequence[Any]], float | None],
    together: bool,
    on_result: Callable[[int, Any], None] | None = None,
) -> list[Any | ItemFailure]:
    """``call(items)`` in ``box``: one result per item, or an :class:`ItemFailure` for the culprits.

    ``call`` is a picklable function of a list of items that returns one result per item
    (run in the child). With ``together`` the items first go in one call (a batched model
    call); if that call dies, hangs or blows up memory, every item is retried on its own,
    so only the items that fail alone are failures. Without ``together`` each item has its
    own call from the start (the culprit is known at the first crash). ``timeout_s`` gives
    the deadline of a call from its items. ``on_result(index, result)`` is called as soon
    as an item's outcome is known (to record progress).
    """
    def done(index: int, result: Any) -> None:
        if on_result is not None:
            on_result(index, result)

    if together and len(items) > 1:
        try:
            results = list(box.call(call, list(items), timeout_s=timeout_s(items)))
        except IsolatedFailure as failure:
            logger.warning("%d items run together failed (%s); running them one by one to find the culprit",
                           len(items), failure.reason)
        else:
            for index, result in enumerate(results):
                done(index, result)
            return results
    results = []
    for index, item in enumerate(items):
        try:
            result = box.call(call, [item], timeout_s=timeout_s([item]))[0]
        except IsolatedFailure as failure:
            result = ItemFailure(failure.reason, failure.kind)
        done(index, result)
        results.append(result)
    return results


# -- the child -------------------------------------------------------------------------
def _die_with_parent() -> None:
    """SIGKILL this process when the thread that started it ends (Linux), so no child outlives a killed worker."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:  # re-parented: our worker is gone
            os._exit(1)


def serve(request_fd: int, reply_fd: int) -> None:
    """The child's loop: read a call, run it, send back ``("ok", value)`` or the exception."""
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the signal was armed
        return
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    paths = _read_message(request_fd)
    if paths is None:
        return
    sys.path[:] = pickle.loads(paths)
    while True:
        message = _read_message(request_fd)
        if message is None:
            return  # the parent closed the pipe
        try:
            fn, args, kwargs, streaming = pickle.loads(message)
        except Exception as exc:  # noqa: BLE001 - every exception goes back to the caller
            reply = ("raised", exc)
        else:
            _write_message(reply_fd, _LOADED)  # the parent's clock for this call starts now
            try:
                if streaming:
                    args = (Channel(request_fd, reply_fd), *args)
                reply = ("ok", fn(*args, **kwargs))
            except EOFError:
                return  # the parent closed the stream: nobody to answer
            except Exception as exc:  # noqa: BLE001
                reply = ("raised", exc)
        try:
            payload = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - an unpicklable result or exception: send its text
            text = "".join(traceback.format_exception(reply[1])) if reply[0] == "raised" else "unpicklable result"
            payload = pickle.dumps(("error", text))
        _write_message(reply_fd, payload)


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
