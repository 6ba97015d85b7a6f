"""Fixtures of the hull-stage tests."""

import pytest
from hull_helpers import LFPO_PATH, load_raw


@pytest.fixture(scope="session")
def lfpo_raw() -> list[dict]:
    """The MP Li-Fe-P-O entries as stored, with their e_above_hull."""
    return load_raw("Li-Fe-P-O.json.gz")


@pytest.fixture(scope="session")
def lfpo_path():
    return LFPO_PATH
