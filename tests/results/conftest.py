"""Fixtures of the results-stage tests: the known candidate set in a MemoryStore and a SQLiteStore."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from maggma.stores import MemoryStore  # noqa: E402
from results_dataset import candidate_docs, reference_entries  # noqa: E402

from matris_flows.stores.backends import index_candidates  # noqa: E402
from matris_flows.stores.sqlite.store import SQLiteStore  # noqa: E402


@pytest.fixture(scope="session")
def docs() -> list[dict]:
    return candidate_docs()


@pytest.fixture(scope="session")
def lfo_entries():
    return reference_entries()


@pytest.fixture(params=["memory", "sqlite"])
def candidates_store(request, docs, tmp_path):
    """The candidate set in each backend the campaign can be configured with (no server needed)."""
    if request.param == "memory":
        store = MemoryStore(collection_name="candidates", key="candidate_id")
    else:
        store = SQLiteStore("candidates", database_path=str(tmp_path / "db.sqlite"), key="candidate_id")
    store.connect()
    index_candidates(store)
    # shuffled insertion order: results must not depend on it
    store.update([docs[i] for i in (4, 8, 0, 6, 2, 7, 1, 5, 3)], key="candidate_id")
    yield store
    store.close()
