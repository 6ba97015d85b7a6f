"""Where the tests find the project's read-only reference data (MP entries, polymorphs, a VASP run).

Only tests and benchmarks read it; the package ships what it needs in ``matris_flows/data``.
"""

import os
from pathlib import Path

SHARED_DATA_ENV = "MATRIS_FLOWS_SHARED_DATA"


def shared_data_dir() -> Path:
    """``$MATRIS_FLOWS_SHARED_DATA`` or ``<repo>/../shared/data``, where the project's machines keep it."""
    if env := os.environ.get(SHARED_DATA_ENV):
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "shared" / "data"
