"""Versions of the packages that shaped a result, recorded on every document."""

from functools import cache
from importlib.metadata import PackageNotFoundError, version

_TRACKED = (
    "matris-flows",
    "matris",
    "torch",
    "torch-sim-atomistic",
    "chgnet",
    "ase",
    "pymatgen",
    "jobflow",
    "atomate2",
)


@cache
def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Return ``{distribution: version}`` for the tracked packages that are installed."""
    versions = {}
    for name in (*_TRACKED, *extra):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions
