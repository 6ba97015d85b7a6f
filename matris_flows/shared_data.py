"""The project's read-only reference data folder (MP entries, elemental polymorphs, a VASP run)."""

import os
from pathlib import Path

SHARED_DATA_ENV = "MATRIS_FLOWS_SHARED_DATA"


def shared_data_dir() -> Path:
    """``$MATRIS_FLOWS_SHARED_DATA`` or ``<repo>/../shared/data``, where the project's machines keep it."""
    if env := os.environ.get(SHARED_DATA_ENV):
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"
