"""matris-flows: high-throughput stability screening with the MatRIS potential.

The package folders follow the pipeline: ``generation`` → ``relax`` → ``thermo``
→ ``validation``; ``potentials`` loads models, ``execution`` runs flows on Dask.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("matris-flows")
except PackageNotFoundError:  # source checkout without install
    __version__ = "0.0.0"
