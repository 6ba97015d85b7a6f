"""The one store factory: jobflow ``JobStore`` and the ``candidates`` collection.

The backend is chosen by a :class:`~matris_flows.stores.config.StoreConfig` (YAML files in the
top-level ``stores/`` folder), never by branches in calling code:

- ``sqlite`` (default): on-disk :class:`~matris_flows.stores.sqlite.store.SQLiteStore` (one
  SQLite file, real indexes, bulk upserts) under the campaign directory; persistent,
  no server, one writer (the Dask driver), readers while it runs. Chosen over montydb
  after measuring both (``benchmarks/store_backends.py``): montydb has no indexes, so each
  upsert scans (75 ms per document at 1k documents, against 0.05 ms).
- ``mongo`` / ``mongo_uri``: MongoDB by host/port or by URI (Atlas); large data in
  GridFS or S3; workers may write directly.
- ``memory``: in-process MemoryStore, for tests.

Credentials are read from environment variables named in the config at the moment
a store is built; they are never kept on the config, so they cannot end up in its
repr, in a saved config or in logs. Job inputs that need a collection of the campaign's
store hold a :class:`~matris_flows.stores.campaign_store.CampaignStore` (the config and the
collection name), which builds the backend where it is used: a built MongoStore pickles and
serialises with its URI.  (maggma's ``MongoStore.name`` shows a URI with its password: log
:func:`~matris_flows.stores.config.describe_store` instead.)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maggma.core import Store

from matris_flows.core.publishing import CANDIDATES_STORE_NAME, OPINIONS_STORE_NAME, REFERENCES_STORE_NAME
from matris_flows.stores.config import (
    DATA_STORE_NAME,
    JOURNAL_STORE_NAME,
    StoreConfig,
    StoreConfigError,
    database_dir,
    describe_store,
)

if TYPE_CHECKING:
    from jobflow import JobStore

logger = logging.getLogger(__name__)

CANDIDATE_INDEXES = (
    "candidate_id", "campaign", "chemsys", "formula", "e_above_hull", "is_stable", "duplicate_of",
    "e_above_hull_campaign", "is_stable_campaign", "matches_reference", "provenance.parent_id",
    "e_above_hull_consensus", "consensus_spread", "is_stable_consensus", "thermo_status",
)
"""Fields of the ``candidates`` collection that are indexed for queries."""


def _env(name: str | None, setting: str) -> str | None:
    if name is None:
        return None
    value = os.environ.get(name)
    if value is None:
        raise StoreConfigError(
            f"environment variable {name} ({setting} in the store config) is not set"
        )
    return value


# -- one builder per backend: (config, campaign_dir, collection) -> Store ---------


def _sqlite(config: StoreConfig, campaign_dir, collection: str, read_only: bool = False) -> Store:
    from matris_flows.stores.sqlite.store import SQLiteStore

    path = database_dir(config, campaign_dir)
    return SQLiteStore(collection, database_path=str(path / f"{config.database}.sqlite"), read_only=read_only)


def _memory(config: StoreConfig, campaign_dir, collection: str, read_only: bool = False) -> Store:
    from maggma.stores import MemoryStore

    return MemoryStore(collection_name=f"{config.database}.{collection}")


def _mongo_kwargs(config: StoreConfig) -> dict[str, Any]:
    # the timeout travels in the config, so a Dask worker's client gives up as soon as the driver's would
    client_options = {"mongoclient_kwargs": {"serverSelectionTimeoutMS": round(config.server_selection_timeout_s * 1000)}}
    if config.type == "mongo_uri":
        return {"uri": _env(config.uri_env, "uri_env"), **client_options}
    kwargs: dict[str, Any] = {"host": config.host, "port": config.port, **client_options}
    username = _env(config.username_env, "username_env")
    password = _env(config.password_env, "password_env")
    if username is not None:
        kwargs["username"] = username
    if password is not None:
        kwargs["password"] = password
    if config.auth_source:
        kwargs["auth_source"] = config.auth_source
    return kwargs


def mongo_store(config: StoreConfig, campaign_dir, collection: str, read_only: bool = False) -> Store:
    """A MongoStore of one collection (not connected), with credentials read from the environment now.

    ``read_only`` changes nothing on the client side: a reader such as ``serve`` only finds and counts
    (give it credentials of a MongoDB user with the ``read`` role to have the server enforce it).
    """
    from maggma.stores import MongoStore

    return MongoStore(
        database=config.database, collection_name=collection, **_mongo_kwargs(config)
    )


_COLLECTION_BUILDERS: dict[str, Callable[..., Store]] = {
    "sqlite": _sqlite,
    "memory": _memory,
    "mongo": mongo_store,
    "mongo_uri": mongo_store,
}


def make_collection_store(
    config: StoreConfig, campaign_dir: str | Path | None, collection: str, *, read_only: bool = False
) -> Store:
    """A maggma Store for one collection of the configured backend (not connected).

    ``read_only``: for a viewer beside the running driver; the embedded store then opens its file
    read-only (nothing created or indexed, writes raise).
    """
    return _COLLECTION_BUILDERS[config.type](config, campaign_dir, collection, read_only=read_only)


def _collection_data(config: StoreConfig, campaign_dir) -> Store:
    return make_collection_store(config, campaign_dir, config.data_collection)


def _gridfs_data(config: StoreConfig, campaign_dir) -> Store:
    from maggma.stores import GridFSStore

    return GridFSStore(
        database=config.database,
        collection_name=config.data_collection,
        **_mongo_kwargs(config),
    )


def s3_data_store(config: StoreConfig, campaign_dir, index: Store | None = None) -> Store:
    """The S3 store of large data (not connected); its index is a collection of the configured backend unless given."""
    from maggma.stores import S3Store

    if index is None:
        index = make_collection_store(config, campaign_dir, f"{config.data_collection}_index")
    index.key = "blob_uuid"  # S3Store uses its index's key; JobStore sets this one
    return S3Store(
        index=index,
        bucket=config.s3_bucket,
        s3_profile=config.s3_profile,
        endpoint_url=config.s3_endpoint_url,
        sub_dir=config.s3_prefix,
        compress=True,
        key="blob_uuid",
    )


_DATA_BUILDERS: dict[str, Callable[[StoreConfig, Any], Store]] = {
    "collection": _collection_data,
    "gridfs": _gridfs_data,
    "s3": s3_data_store,
}


def make_job_store(
    config: StoreConfig | None = None, campaign_dir: str | Path | None = None
) -> JobStore:
    """The campaign's jobflow JobStore (not connected).

    Additional stores: ``data`` for large outputs (jobs declare e.g.
    ``@job(data="trajectory")``), ``journal`` for the Dask manager's resume records and
    ``candidates``, the queryable collection hull jobs publish candidate documents to, and
    ``references``, the reference phases of the campaign's hulls, and ``opinions``, the consensus
    stage's second opinions (one per candidate and model).
    """
    from jobflow import JobStore  # here: the CLI's read-only commands never import jobflow

    config = config or StoreConfig()
    logger.debug(f"job store: {describe_store(config, campaign_dir)}")
    candidates = make_collection_store(config, campaign_dir, config.candidates_collection)
    candidates.key = "candidate_id"
    references = make_collection_store(config, campaign_dir, config.references_collection)
    references.key = "reference_id"
    opinions = make_collection_store(config, campaign_dir, config.opinions_collection)
    opinions.key = "opinion_id"
    return JobStore(
        make_collection_store(config, campaign_dir, config.docs_collection),
        additional_stores={
            DATA_STORE_NAME: _DATA_BUILDERS[config.data_store](config, campaign_dir),
            JOURNAL_STORE_NAME: make_collection_store(
                config, campaign_dir, config.journal_collection
            ),
            CANDIDATES_STORE_NAME: candidates,
            REFERENCES_STORE_NAME: references,
            OPINIONS_STORE_NAME: opinions,
        },
    )


def make_candidates_store(
    config: StoreConfig | None = None, campaign_dir: str | Path | None = None
) -> Store:
    """The ``candidates`` collection, connected and indexed for queries.

    Indexed on :data:`CANDIDATE_INDEXES` (every backend of the factory has indexes).
    """
    config = config or StoreConfig()
    store = make_collection_store(config, campaign_dir, config.candidates_collection)
    store.key = "candidate_id"
    store.connect()
    index_candidates(store)
    return store


def index_candidates(store: Store) -> None:
    """Index a connected candidates store on :data:`CANDIDATE_INDEXES` where the backend can."""
    _index(store, CANDIDATE_INDEXES, "candidate_id")


REFERENCE_INDEXES = ("reference_id", "campaign", "chemsys")
"""Fields of the ``references`` collection that are indexed (hull pictures select a system's phases by chemsys)."""

OPINION_INDEXES = ("opinion_id", "candidate_id", "opinion_key", "chemsys")
"""Fields of the ``opinions`` collection that are indexed (the consensus stage selects by them)."""


def _index(store: Store, fields: tuple[str, ...], unique_key: str) -> None:
    for field in fields:
        try:
            store.ensure_index(field, unique=field == unique_key)
        except NotImplementedError:
            # a Store without indexes (maggma's MontyStore, for one) scans instead
            logger.debug(f"{type(store).__name__} cannot index {field}")
            break


def connect_job_store(config: StoreConfig | None = None, campaign_dir: str | Path | None = None) -> JobStore:
    """The campaign's JobStore (:func:`make_job_store`), connected, its candidates store indexed."""
    store = make_job_store(config, campaign_dir)
    store.connect()
    index_candidates(store.additional_stores[CANDIDATES_STORE_NAME])
    _index(store.additional_stores[REFERENCES_STORE_NAME], REFERENCE_INDEXES, "reference_id")
    _index(store.additional_stores[OPINIONS_STORE_NAME], OPINION_INDEXES, "opinion_id")
    return store
