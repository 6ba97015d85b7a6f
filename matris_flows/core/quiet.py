"""Keep known library noise out of a campaign's console: banners on stdout, deprecation chatter.

The CLI's stdout carries only what a command was asked for (a JSON document, a table, the
final summary), so it can be piped; the console (stderr) shows progress, warnings and
errors. The filters below drop warnings that say nothing about the user's campaign (the
libraries' own deprecations); every other warning still shows.
"""

from __future__ import annotations

import io
import logging
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
)


def silence_library_warnings() -> None:
    """Install warning filters for the known noise of torch, jobflow and CHGNet (idempotent)."""
    for category, message, module in _NOISE:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


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
    import torch_sim

    return torch_sim


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
