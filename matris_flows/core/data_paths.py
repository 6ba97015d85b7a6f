"""Data file names in a spec: ``package:<file>`` for data shipped in ``matris_flows/data``.

Jobs keep the name as written and resolve it when they read the file, so a job's inputs depend
only on the spec: a job rerun on ``resume`` (or on another machine, with the package installed
elsewhere) reads the same data without its inputs being rebuilt.
"""

from importlib.resources import files
from pathlib import Path

PACKAGE_PREFIX = "package:"


def package_data_path(name: str) -> Path:
    """A file shipped in ``matris_flows/data`` (attributions in its README).

    The folder has no ``__init__.py`` (pure package data), so it is located from the package root.
    """
    return Path(str(files("matris_flows").joinpath("data", name)))


def resolve_data_path(path: str | Path) -> Path:
    """The file a spec's data path names: ``package:<file>`` in the installed package, else the path itself."""
    text = str(path)
    if text.startswith(PACKAGE_PREFIX):
        return package_data_path(text.removeprefix(PACKAGE_PREFIX))
    return Path(text).expanduser()
