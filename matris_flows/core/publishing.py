"""Jobs that publish documents to a queryable collection while the campaign runs.

A publishing job declares :data:`WRITE_ONLY_STORE` access (``expose_store`` plus a
``manager_config`` marker): it writes to an additional store of the JobStore and never
reads the store. jobflow's ``run_locally`` hands it the real store; the Dask manager
runs it on a worker and replays its writes on the driver (the one writer of an embedded
store), or lets it write directly to a store that takes concurrent writers (MongoDB).
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # jobflow is imported where jobs are built: the store factory must not need it
    from jobflow import JobConfig

CANDIDATES_STORE_NAME = "candidates"
"""JobStore additional store holding one document per candidate (the ``candidates`` collection)."""

REFERENCES_STORE_NAME = "references"
"""JobStore additional store holding one document per reference phase the campaign's hulls used."""

OPINIONS_STORE_NAME = "opinions"
"""JobStore additional store holding one document per candidate and second-opinion model (the consensus stage)."""

WRITE_ONLY_STORE = {"store_access": "write"}
"""``JobConfig.manager_config`` entry of jobs that write to, but never read, the store."""


def write_only_config(**kwargs: Any) -> "JobConfig":
    """A JobConfig for a job that publishes to an additional store and reads nothing from it."""
    from jobflow import JobConfig

    return JobConfig(expose_store=True, manager_config=dict(WRITE_ONLY_STORE), **kwargs)


def merge_fields(store: Any, updates: dict[str, dict[str, Any]], key: str = "candidate_id", batch: int = 500) -> None:
    """Write ``updates`` (``{key value: fields}``) into the full documents of ``store``, read and written ``batch`` at a time.

    For the campaign-wide steps (they run where the store is): a maggma ``update`` replaces
    whole documents, so each one is read, its fields set, and written back.
    """
    ids = list(updates)
    for start in range(0, len(ids), batch):
        docs = []
        for doc in store.query({key: {"$in": ids[start : start + batch]}}):
            doc.pop("_id", None)
            doc.update(updates[doc[key]])
            docs.append(doc)
        if docs:
            store.update(docs, key=key)


def publish(documents: Sequence[dict], store_name: str = CANDIDATES_STORE_NAME, key: str = "candidate_id") -> bool:
    """Upsert ``documents`` (JSON-ready dicts) into the current job's additional store ``store_name``.

    Returns False, writing nothing, when the job runs without a store or the JobStore has
    no such additional store (a plain ``run_locally`` with jobflow's default store): the
    caller then keeps the documents in its output instead.
    """
    from jobflow import CURRENT_JOB

    store = getattr(CURRENT_JOB, "store", None)
    target = None if store is None else store.additional_stores.get(store_name)
    if target is None:
        return False
    if documents:
        target.update(list(documents), key=key)
    return True

