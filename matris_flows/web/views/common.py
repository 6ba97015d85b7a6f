"""What every page shares: one-line error boxes and the guard that turns a failing read into one."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from dash import html

logger = logging.getLogger(__name__)


def error_message(exc: BaseException) -> str:
    """The one line a page shows for ``exc``: the CLI's message for user and environment errors (a damaged
    or vanished database, a bad filter, an unreachable server), else the exception's first line."""
    from matris_flows.cli import user_error

    message = user_error(exc)
    if message is None:
        logger.exception("serve: a page failed")
        first = (str(exc).strip().splitlines() or [""])[0]
        message = f"internal error: {type(exc).__name__}: {first} (traceback on the server's terminal)"
    return message


def error_box(message: str) -> html.Div:
    """A red one-line message in place of a page's content."""
    return html.Div(f"error: {message}", className="error", role="alert")


def guarded(callback: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a single-output callback: an exception becomes the page's one-line error box."""

    @functools.wraps(callback)
    def wrapper(*args: Any) -> Any:
        try:
            return callback(*args)
        except Exception as exc:  # noqa: BLE001 - shown to the user as one line (bugs are logged with their traceback)
            return error_box(error_message(exc))

    return wrapper
