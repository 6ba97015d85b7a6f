"""``matris-flows serve``: open the campaign read-only, then serve the app until Ctrl-C."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import sys
from pathlib import Path
from typing import TextIO

from matris_flows.web.app import DEFAULT_REFRESH_S, create_app
from matris_flows.web.reader import CampaignReader


class ServeError(RuntimeError):
    """The app cannot start (no such campaign, port taken, ...); the message is one line."""


def serve(
    directory: str | Path, host: str = "127.0.0.1", port: int = 8050, refresh_s: float = DEFAULT_REFRESH_S,
    out: TextIO | None = None,
) -> None:
    """Serve the campaign in ``directory`` at ``http://host:port/`` until interrupted.

    The campaign's store is opened (read-only) first, so a missing or damaged campaign is
    one error before anything listens. The URL is printed on ``out`` (stdout) once the port is
    bound (``port=0`` picks a free one); requests are not logged.

    Raises:
        ServeError: the address cannot be bound.
        SpecError, DatabaseFileError, ...: the campaign cannot be read (as ``status`` would say).
    """
    from werkzeug.serving import make_server

    out = out if out is not None else sys.stdout
    reader = CampaignReader(directory)
    try:
        app = create_app(reader, refresh_s)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request on the terminal
        # the socket is bound here (werkzeug would print its own lines and exit on a taken port)
        listening = _listen(host, port)
        server = make_server(host, port, app.server, threaded=True, fd=listening.fileno())
        if not _is_loopback(host):
            print(f"warning: serving on {host}: anyone who can reach this machine on port {listening.getsockname()[1]} "
                  "can read the campaign (there is no login); prefer 127.0.0.1 and an SSH tunnel", file=sys.stderr)
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        print(f"serving campaign {reader.name} at http://{shown}:{listening.getsockname()[1]}/ (Ctrl-C to stop)", file=out, flush=True)
        try:
            server.serve_forever()
        finally:
            server.server_close()
            listening.close()
    finally:
        reader.close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (ServeError with one line when it cannot be had)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServeError(f"cannot listen on {host}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    listening = socket.socket(family, socket.SOCK_STREAM)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart does not wait for TIME_WAIT
        listening.bind(address)
        listening.listen(128)
    except OSError as exc:
        listening.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(f"port {port} on {host} is in use: choose another with --port") from None
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    listening.set_inheritable(True)
    return listening


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
