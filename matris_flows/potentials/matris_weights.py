"""Where MatRIS weights come from: a local file, the cache, or the official release.

The cache directory is ``$MATRIS_FLOWS_CACHE_DIR`` if set, else ``~/.cache/matris``
(the directory ``matris`` itself uses), so weights downloaded by either are shared.
"""

import hashlib
import os
import tempfile
from pathlib import Path

from matris_flows.potentials.naming import MATRIS_MODELS, MATRIS_RELEASE_URL

CACHE_ENV = "MATRIS_FLOWS_CACHE_DIR"


class WeightsUnavailableError(RuntimeError):
    """Raised when a MatRIS checkpoint is neither cached nor downloadable."""


def cache_dir() -> Path:
    """The directory searched for, and filled with, MatRIS checkpoints."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "matris").expanduser()


def release_url(key: str) -> str:
    """Official download URL of a MatRIS model key."""
    return f"{MATRIS_RELEASE_URL}/{MATRIS_MODELS[key][0]}"


def _cached_file(key: str, directory: Path) -> Path | None:
    """The cached checkpoint for ``key``, matching the release file name case-insensitively."""
    wanted = MATRIS_MODELS[key][0].lower()
    if not directory.is_dir():
        return None
    for entry in sorted(directory.iterdir()):
        if entry.is_file() and entry.name.lower() == wanted:
            return entry
    return None


def _download(url: str, target: Path) -> None:
    """Download to a temporary file first so a failed transfer never leaves a partial cache entry."""
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        partial = Path(tmp) / target.name
        torch.hub.download_url_to_file(url, str(partial), progress=False)
        os.replace(partial, target)


def resolve_matris_checkpoint(key: str, *, download: bool = True) -> Path:
    """Return a local path to the checkpoint of MatRIS model ``key``.

    Looks in :func:`cache_dir` first, then downloads the official release file into
    it. If neither works the error says which file to put where.
    """
    directory = cache_dir()
    cached = _cached_file(key, directory)
    if cached is not None:
        return cached
    url = release_url(key)
    target = directory / MATRIS_MODELS[key][0]
    if download:
        try:
            _download(url, target)
            return target
        except Exception as exc:  # noqa: BLE001 - network errors come in many types (URLError, OSError, HTTPError)
            reason = f"{type(exc).__name__}: {exc}"
    else:
        reason = "downloads disabled"
    raise WeightsUnavailableError(
        f"MatRIS weights for {key!r} are not cached and could not be downloaded ({reason}). "
        f"Download {url} and put it at {target} (or set {CACHE_ENV} to the folder that holds "
        f"{MATRIS_MODELS[key][0]}), or pass the checkpoint's path as the potential name."
    )


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks so multi-hundred-MB checkpoints stay out of memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def load_matris_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint in the official ``{"config": ..., "state_dict": ...}`` format.

    ``weights_only=True`` refuses arbitrary pickled objects, so a malicious file
    cannot run code; anything not in the official format is rejected with a clear error.
    """
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"MatRIS checkpoint {str(path)!r} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"{str(path)!r} is not a loadable MatRIS checkpoint (weights-only load refused it: "
            f"{type(exc).__name__}: {exc})."
        ) from exc
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not {"config", "state_dict"} <= set(state):
        raise ValueError(
            f"{str(path)!r} is not in the MatRIS checkpoint format: expected a dict with "
            "'config' and 'state_dict'."
        )
    return state
