"""Keep known library noise out of a campaign's console: banners on stdout, deprecation chatter.

The CLI's stdout carries only what a command was asked for (a JSON document, a table, the
final summary), so it can be piped; the console (stderr) shows progress, warnings and
errors. The filters below drop warnings that say nothing about the user's campaign (the
libraries' own deprecations); every other warning still shows.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from types import ModuleType

# (category, message regex, module regex) of warnings that are the libraries' business.
_NOISE: tuple[tuple[type[Warning], str, str], ...] = (
    (FutureWarning, r".*torch\.jit\.script.*", r"torch(\..*)?"),
    (UserWarning, r".*", r"torch\.jit(\..*)?"),
    (FutureWarning, r".*", r"torch\.jit(\..*)?"),
    (DeprecationWarning, r".*", r"torch(\..*)?"),
    (FutureWarning, r".*\bcd\b.*", r"jobflow(\..*)?"),
    (FutureWarning, r".*\bcd\b.*", r".*"),  # jobflow's ``cd`` deprecation is raised from the caller's frame
    (UserWarning, r".*CHGNet.*", r".*"),
    (UserWarning, r".*TypedStorage is deprecated.*", r".*"),
    # CHGNet's own ``torch.tensor(volumes)`` on a graph tensor (chgnet/model/model.py), every batch.
    (UserWarning, r"Converting a tensor with requires_grad=True to a scalar.*", r".*"),
    # SevenNet on a CPU: its optional CUDA tensor-product kernels are not installed (nothing to do about it).
    (UserWarning, r"No tensor product accelerator.*", r"sevenn(\..*)?"),
    # A campaign's flow grows by additions and replacements, so unconnected jobs are expected.
    (UserWarning, r"Some jobs are not connected.*", r"jobflow(\..*)?"),
    # Another Dask cluster on this machine holds the default dashboard port: Dask takes another one.
    (UserWarning, r"Port \d+ is already in use.*", r"distributed(\..*)?"),
)


def silence_library_warnings() -> None:
    """Install warning filters for the known noise of torch, jobflow and CHGNet (idempotent).

    In a Dask worker (its QuietPlugin calls this) also drop the worker's warning about the
    tasks it cancels when the driver stops the run (Ctrl-C, an error): the driver says why.
    """
    for category, message, module in _NOISE:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    logger = logging.getLogger("distributed.worker.state_machine")
    if _CANCELLED_AT_CLOSE not in logger.filters:
        logger.addFilter(_CANCELLED_AT_CLOSE)


class _DropMessages(logging.Filter):
    """Drop log records whose message starts with one of ``prefixes``."""

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


_NANNY_KILL = _DropMessages("Worker process still alive after")


class _CancelledAtClose(logging.Filter):
    """Drop "Async instruction for <task> ended with CancelledError": a worker closing while it ran a task."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Async instruction for") and message.endswith("ended with CancelledError"))


_CANCELLED_AT_CLOSE = _CancelledAtClose()


def quiet_dask_shutdown() -> None:
    """Drop the nanny's warning that it killed a worker at shutdown (idempotent).

    A worker that imported torch takes seconds to tear down its interpreter; when the cluster
    closes after the last result is stored, the nanny kills it after 4 s and says so. Nothing
    is lost then, so the warning is noise on the campaign's console.
    """
    logger = logging.getLogger("distributed.nanny")
    if _NANNY_KILL not in logger.filters:
        logger.addFilter(_NANNY_KILL)


def quiet_warp() -> None:
    """Stop NVIDIA Warp from printing its banner to stdout when it is initialised (if installed)."""
    try:
        import warp
    except ImportError:
        return
    warp.config.quiet = True  # warp < 1.10
    if hasattr(warp, "LOG_ERROR"):  # newer warp prints the banner at log level INFO
        warp.config.log_level = warp.LOG_ERROR


def import_torch_sim() -> ModuleType:
    """``torch_sim``, imported without Warp's banner or torch's deprecation warnings.

    torch_sim imports nvalchemiops, which initialises Warp at import time; the banner
    would land in the middle of the CLI's stdout.
    """
    silence_library_warnings()
    quiet_warp()
    # Warp's native init prints a CUDA-driver warning straight to fd 2 on every CPU-only process.
    with native_stderr_without(_WARP_NO_DRIVER):
        import torch_sim

    return torch_sim


_WARP_NO_DRIVER = "Warp CUDA warning: Could not find or load the NVIDIA CUDA driver"


@contextmanager
def native_stderr_without(prefix: str) -> Iterator[None]:
    """Run a block with file descriptor 2 captured, then pass on every line but those starting with ``prefix``.

    For messages that native code writes with ``fprintf(stderr, ...)``, out of reach of the
    ``warnings`` and ``logging`` filters. Everything else the block writes still reaches stderr.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2 (embedded interpreters): nothing to filter
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        sys.stderr.flush()
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines(keepends=True) if not line.startswith(prefix)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


@contextmanager
def captured_stdout(logger_name: str = "matris_flows") -> Iterator[None]:
    """Run a block with its ``print`` output logged at DEBUG instead of written to stdout.

    For model loaders that print banners ("CHGNet v0.3.0 initialized ...", "will run on
    cpu"): on a Dask worker their stdout is the driver's terminal.
    """
    buffer = io.StringIO()
    try:
        with redirect_stdout(buffer):
            yield
    finally:
        text = buffer.getvalue().strip()
        if text:
            logging.getLogger(logger_name).debug(text)
