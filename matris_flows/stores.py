"""The one store factory: jobflow ``JobStore`` and the ``candidates`` collection.

The backend is chosen by a :class:`StoreConfig` (YAML files in the top-level
``stores/`` folder), never by branches in calling code:

- ``sqlite`` (default): on-disk :class:`~matris_flows.sqlite_store.SQLiteStore` (one
  SQLite file, real indexes, bulk upserts) under the campaign directory; persistent,
  no server, one writer (the Dask driver), readers while it runs. Chosen over montydb
  after measuring both (``benchmarks/store_backends.py``): montydb has no indexes, so each
  upsert scans (75 ms per document at 1k documents, against 0.05 ms).
- ``monty``: on-disk MontyStore (montydb), kept for existing campaign directories.
- ``mongo`` / ``mongo_uri``: MongoDB by host/port or by URI (Atlas); large data in
  GridFS or S3; workers may write directly.
- ``memory``: in-process MemoryStore, for tests.

Credentials are read from environment variables named in the config at the moment
a store is built; they are never kept on the config, so they cannot end up in its
repr, in a saved config or in logs. Job inputs that need a collection of the campaign's
store hold a :class:`CampaignStore` (the config and the collection name), which builds the
backend where it is used: a built MongoStore pickles and serialises with its URI.  (maggma's ``MongoStore.name`` shows a URI with
its password: log :func:`describe_store` instead.)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from maggma.core import Store
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from matris_flows.core.publishing import CANDIDATES_STORE_NAME, REFERENCES_STORE_NAME

if TYPE_CHECKING:
    from jobflow import JobStore

logger = logging.getLogger(__name__)

CANDIDATE_INDEXES = (
    "candidate_id", "campaign", "chemsys", "formula", "e_above_hull", "is_stable", "duplicate_of",
    "is_stable_campaign", "matches_reference", "provenance.parent_id",
)
"""Fields of the ``candidates`` collection that are indexed for queries."""

DATA_STORE_NAME = "data"
"""JobStore additional store for trajectories and other large outputs."""

JOURNAL_STORE_NAME = "journal"
"""JobStore additional store where the Dask manager keeps its resume records."""


class StoreConfigError(ValueError):
    """A store configuration that cannot be loaded or used."""


class StoreConfig(BaseModel):
    """Which database holds a campaign's job outputs and candidates."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["sqlite", "monty", "mongo", "mongo_uri", "memory"] = Field(
        "sqlite", description="Backend of every collection."
    )
    database: str = Field("matris_flows", description="Database name.")
    docs_collection: str = Field("outputs", description="Job output documents.")
    data_collection: str = Field(
        "outputs_data", description="Large job data (trajectories): collection/bucket."
    )
    journal_collection: str = Field(
        "execution_journal", description="Resume records of the Dask manager."
    )
    candidates_collection: str = Field(
        "candidates", description="One document per candidate, for queries."
    )
    references_collection: str = Field(
        "references", description="One document per reference phase of the campaign's hulls (plots, reports)."
    )
    data_store: Literal["collection", "gridfs", "s3"] = Field(
        "collection",
        description="Where large data goes: a collection of the same backend, "
        "GridFS (mongo types) or S3.",
    )
    # sqlite / monty
    path: str = Field(
        "database",
        description="Database directory (sqlite: holds <database>.sqlite; monty: the montydb folder), "
        "relative to the campaign directory unless absolute.",
    )
    monty_storage: Literal["sqlite", "flatfile", "lightning"] = Field(
        "sqlite", description="montydb storage engine."
    )
    # mongo
    host: str = Field("localhost", description="MongoDB host (type mongo).")
    port: int = Field(27017, description="MongoDB port (type mongo).")
    username_env: str | None = Field(
        None, description="Environment variable holding the MongoDB user name."
    )
    password_env: str | None = Field(
        None, description="Environment variable holding the MongoDB password."
    )
    auth_source: str | None = Field(None, description="MongoDB authentication db.")
    # mongo_uri
    uri_env: str | None = Field(
        None, description="Environment variable holding the mongodb(+srv):// URI."
    )
    # s3
    s3_bucket: str | None = Field(None, description="S3 bucket for large data.")
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint (non-AWS).")
    s3_profile: str | None = Field(None, description="AWS credentials profile.")
    s3_prefix: str | None = Field(None, description="Key prefix inside the bucket.")

    @model_validator(mode="after")
    def _check_backend(self) -> StoreConfig:
        if self.type == "mongo_uri" and not self.uri_env:
            raise ValueError("type 'mongo_uri' needs uri_env (the variable with the URI)")
        if self.data_store == "gridfs" and self.type not in ("mongo", "mongo_uri"):
            raise ValueError(f"data_store 'gridfs' needs a MongoDB type, not {self.type!r}")
        if self.data_store == "s3" and not self.s3_bucket:
            raise ValueError("data_store 's3' needs s3_bucket")
        return self

    @property
    def concurrent_writers(self) -> bool:
        """Whether Dask workers may write to this store directly."""
        return self.type in ("mongo", "mongo_uri")


def load_store_config(path: str | Path) -> StoreConfig:
    """Read a :class:`StoreConfig` from a YAML file, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise StoreConfigError(f"store config {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise StoreConfigError(f"store config {path} is not valid YAML: {err}") from err
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise StoreConfigError(
            f"store config {path} must be a mapping of settings, "
            f"got {type(raw).__name__}"
        )
    try:
        return StoreConfig.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}"
            for e in err.errors()
        )
        raise StoreConfigError(f"store config {path} is invalid: {problems}") from None


def describe_store(config: StoreConfig, campaign_dir: str | Path | None = None) -> str:
    """A description of where the data lives that is safe to log (no credentials)."""
    if config.type == "sqlite":
        return f"sqlite {_monty_path(config, campaign_dir) / (config.database + '.sqlite')}"
    if config.type == "monty":
        return f"montydb {_monty_path(config, campaign_dir)}/{config.database}"
    if config.type == "mongo":
        return f"mongodb {config.host}:{config.port}/{config.database}"
    if config.type == "mongo_uri":
        return f"mongodb URI from ${config.uri_env} /{config.database}"
    return f"memory /{config.database}"


def _env(name: str | None, setting: str) -> str | None:
    if name is None:
        return None
    value = os.environ.get(name)
    if value is None:
        raise StoreConfigError(
            f"environment variable {name} ({setting} in the store config) is not set"
        )
    return value


def _monty_path(config: StoreConfig, campaign_dir: str | Path | None) -> Path:
    path = Path(config.path)
    if not path.is_absolute():
        if campaign_dir is None:
            raise StoreConfigError("a relative database path needs the campaign directory")
        path = Path(campaign_dir) / path
    return path


# -- one builder per backend: (config, campaign_dir, collection) -> Store ---------


def _sqlite(config: StoreConfig, campaign_dir, collection: str) -> Store:
    from matris_flows.sqlite_store import SQLiteStore

    path = _monty_path(config, campaign_dir)
    return SQLiteStore(collection, database_path=str(path / f"{config.database}.sqlite"))


def _monty(config: StoreConfig, campaign_dir, collection: str) -> Store:
    from maggma.stores import MontyStore

    path = _monty_path(config, campaign_dir)
    path.mkdir(parents=True, exist_ok=True)
    return MontyStore(
        collection,
        database_path=str(path),
        database_name=config.database,
        storage=config.monty_storage,
    )


def _memory(config: StoreConfig, campaign_dir, collection: str) -> Store:
    from maggma.stores import MemoryStore

    return MemoryStore(collection_name=f"{config.database}.{collection}")


MONGO_CLIENT_OPTIONS: dict[str, Any] = {}
"""Extra ``MongoClient`` options of every MongoDB store built in this process.

The CLI sets ``serverSelectionTimeoutMS`` here, so that an unreachable server is
reported after seconds instead of pymongo's default 30 s (see :func:`set_mongo_client_options`).
"""


def set_mongo_client_options(**options: Any) -> None:
    """Add ``MongoClient`` options (e.g. ``serverSelectionTimeoutMS=3000``) to stores built from now on."""
    MONGO_CLIENT_OPTIONS.update(options)


def _mongo_kwargs(config: StoreConfig) -> dict[str, Any]:
    client_options = {"mongoclient_kwargs": dict(MONGO_CLIENT_OPTIONS)} if MONGO_CLIENT_OPTIONS else {}
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


def _mongo(config: StoreConfig, campaign_dir, collection: str) -> Store:
    from maggma.stores import MongoStore

    return MongoStore(
        database=config.database, collection_name=collection, **_mongo_kwargs(config)
    )


_COLLECTION_BUILDERS: dict[str, Callable[[StoreConfig, Any, str], Store]] = {
    "sqlite": _sqlite,
    "monty": _monty,
    "memory": _memory,
    "mongo": _mongo,
    "mongo_uri": _mongo,
}


def make_collection_store(
    config: StoreConfig, campaign_dir: str | Path | None, collection: str
) -> Store:
    """A maggma Store for one collection of the configured backend (not connected)."""
    return _COLLECTION_BUILDERS[config.type](config, campaign_dir, collection)


class CampaignStore(Store):
    """One collection of a campaign's store, named by its :class:`StoreConfig`, built where it is connected.

    What job inputs hold instead of a backend store (e.g. the MP reference cache of
    ``MPApiReferences``): it serialises and pickles as the config (environment variable
    *names*), the campaign directory and the collection name, so ``flow.json``, journal
    records and Dask task arguments never carry a password or a credentialed URI. The
    backend (:func:`make_collection_store`) is made at ``connect``, in the process that
    uses it, reading credentials from that process's environment.
    """

    def __init__(
        self,
        config: StoreConfig | dict,
        collection_name: str,
        campaign_dir: str | Path | None = None,
        key: str = "task_id",
        **kwargs: Any,
    ) -> None:
        """
        Args:
            config: The store config (or its dict).
            collection_name: Collection of that store.
            campaign_dir: Campaign directory, for the relative paths of embedded stores
                (kept absolute, so a worker with another working directory finds it).
            key: Key of the collection.
            kwargs: Other maggma ``Store`` arguments.
        """
        self.config = config if isinstance(config, StoreConfig) else StoreConfig.model_validate(config)
        self.collection_name = collection_name
        self.campaign_dir = None if campaign_dir is None else str(Path(campaign_dir).absolute())
        self._store: Store | None = None
        super().__init__(key=key, **kwargs)

    def as_dict(self) -> dict[str, Any]:
        """The config and names only (never the backend, which may hold credentials)."""
        return {
            "@module": type(self).__module__,
            "@class": type(self).__name__,
            "config": self.config.model_dump(mode="json"),
            "collection_name": self.collection_name,
            "campaign_dir": self.campaign_dir,
            "key": self.key,
        }

    @property
    def backend(self) -> Store:
        """The configured backend store of this collection, built and connected on first use (here)."""
        if self._store is None:
            store = make_collection_store(self.config, self.campaign_dir, self.collection_name)
            store.key = self.key
            store.connect()
            self._store = store
        return self._store

    @property
    def name(self) -> str:
        """A name safe to log (no credentials)."""
        return f"{describe_store(self.config, self.campaign_dir)}:{self.collection_name}"

    @property
    def _collection(self):
        return self.backend._collection

    def connect(self, force_reset: bool = False) -> None:
        """Build the backend from the config and this process's environment, and connect it."""
        if self._store is not None and force_reset:
            self._store.connect(force_reset=True)
        self.backend  # noqa: B018 - builds and connects

    def close(self) -> None:
        """Close the backend, if it was built (the next use connects again)."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def count(self, criteria: dict | None = None, **kwargs: Any) -> int:
        """Documents matching ``criteria``."""
        return self.backend.count(criteria, **kwargs)

    def query(self, criteria: dict | None = None, properties: dict | list | None = None, **kwargs: Any):
        """Documents matching ``criteria``."""
        return self.backend.query(criteria=criteria, properties=properties, **kwargs)

    def update(self, docs: list[dict] | dict, key: list | str | None = None, **kwargs: Any) -> None:
        """Upsert ``docs`` on ``key``."""
        self.backend.update(docs, key=key, **kwargs)

    def ensure_index(self, key: str, unique: bool = False) -> bool:
        """Index the backend collection on ``key``."""
        return self.backend.ensure_index(key, unique=unique)

    def groupby(self, keys: list[str] | str, criteria: dict | None = None, properties: dict | list | None = None, **kwargs: Any):
        """Documents grouped by ``keys``."""
        return self.backend.groupby(keys, criteria=criteria, properties=properties, **kwargs)

    def remove_docs(self, criteria: dict) -> None:
        """Remove the documents matching ``criteria``."""
        self.backend.remove_docs(criteria)

    def distinct(self, field: str, criteria: dict | None = None, all_exist: bool = False) -> list:
        """Distinct values of ``field``."""
        return self.backend.distinct(field, criteria=criteria, all_exist=all_exist)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CampaignStore) and self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash((self.collection_name, self.campaign_dir, self.config.type, self.config.database))


def _collection_data(config: StoreConfig, campaign_dir) -> Store:
    return make_collection_store(config, campaign_dir, config.data_collection)


def _gridfs_data(config: StoreConfig, campaign_dir) -> Store:
    from maggma.stores import GridFSStore

    return GridFSStore(
        database=config.database,
        collection_name=config.data_collection,
        **_mongo_kwargs(config),
    )


def _s3_data(config: StoreConfig, campaign_dir, index: Store | None = None) -> Store:
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
    "s3": _s3_data,
}


def make_job_store(
    config: StoreConfig | None = None, campaign_dir: str | Path | None = None
) -> JobStore:
    """The campaign's jobflow JobStore (not connected).

    Additional stores: ``data`` for large outputs (jobs declare e.g.
    ``@job(data="trajectory")``), ``journal`` for the Dask manager's resume records and
    ``candidates``, the queryable collection hull jobs publish candidate documents to, and
    ``references``, the reference phases of the campaign's hulls.
    """
    from jobflow import JobStore  # here: the CLI's read-only commands never import jobflow

    config = config or StoreConfig()
    logger.debug(f"job store: {describe_store(config, campaign_dir)}")
    candidates = make_collection_store(config, campaign_dir, config.candidates_collection)
    candidates.key = "candidate_id"
    references = make_collection_store(config, campaign_dir, config.references_collection)
    references.key = "reference_id"
    return JobStore(
        make_collection_store(config, campaign_dir, config.docs_collection),
        additional_stores={
            DATA_STORE_NAME: _DATA_BUILDERS[config.data_store](config, campaign_dir),
            JOURNAL_STORE_NAME: make_collection_store(
                config, campaign_dir, config.journal_collection
            ),
            CANDIDATES_STORE_NAME: candidates,
            REFERENCES_STORE_NAME: references,
        },
    )


def make_candidates_store(
    config: StoreConfig | None = None, campaign_dir: str | Path | None = None
) -> Store:
    """The ``candidates`` collection, connected and indexed for queries.

    Indexed on :data:`CANDIDATE_INDEXES` where the backend has indexes (MongoDB,
    MemoryStore, SQLite); montydb has none and scans.
    """
    config = config or StoreConfig()
    store = make_collection_store(config, campaign_dir, config.candidates_collection)
    store.key = "candidate_id"
    store.connect()
    index_candidates(store)
    return store


def index_candidates(store: Store) -> None:
    """Index a connected candidates store on :data:`CANDIDATE_INDEXES` where the backend can."""
    for field in CANDIDATE_INDEXES:
        try:
            store.ensure_index(field, unique=field == "candidate_id")
        except NotImplementedError:
            # montydb has no indexes; its queries scan
            logger.debug(f"{type(store).__name__} cannot index {field}")
            break


def connect_job_store(config: StoreConfig | None = None, campaign_dir: str | Path | None = None) -> JobStore:
    """The campaign's JobStore (:func:`make_job_store`), connected, its candidates store indexed."""
    store = make_job_store(config, campaign_dir)
    store.connect()
    index_candidates(store.additional_stores[CANDIDATES_STORE_NAME])
    return store


# -- can the store be used at all? ---------------------------------------------------


def unusable_reason(exc: BaseException, config: StoreConfig | None = None) -> str:
    """Why a store server refused or could not be reached, as one line without credentials.

    pymongo's server selection errors end in a long topology description: only their
    first part is kept. Values of the config's credential variables are masked.
    """
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.split(", Timeout:")[0].split(" (configured timeouts")[0]
    if type(exc).__name__ == "NoCredentialsError":
        text += " (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws/credentials or the config's s3_profile)"
    if config is not None:
        for name in (config.uri_env, config.password_env):
            secret = os.environ.get(name) if name else None
            if secret:
                text = text.replace(secret, f"${name}")
    return text


def _connection_errors() -> tuple[type[BaseException], ...]:
    """What connecting a freshly built MongoDB/S3 store raises when the store, not the code, is at fault."""
    from pymongo.errors import PyMongoError

    # ValueError: pymongo's URI parser (e.g. a port that is not a number); RuntimeError: maggma's
    # S3Store for any refused head_bucket ("Bucket not present on AWS")
    errors: list[type[BaseException]] = [PyMongoError, ValueError, RuntimeError, OSError]
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # no S3 support installed
        return tuple(errors)
    return (*errors, BotoCoreError, ClientError)


def check_store(config: StoreConfig, campaign_dir: str | Path | None = None) -> None:
    """Reach the servers of a campaign's store (MongoDB, S3) once, before the campaign writes anything.

    A malformed URI, missing credentials, a refused bucket or an unreachable server raise
    :class:`StoreConfigError` naming the store, so no campaign directory is left behind by
    a store that cannot work. Embedded stores (SQLite, montydb, memory) are created with
    the campaign: there is nothing to reach.

    Raises:
        StoreConfigError: The store cannot be used (the message says why).
    """
    from maggma.stores import MemoryStore

    checks: list[tuple[str, Store]] = []
    if config.type in ("mongo", "mongo_uri"):
        where = f"URI from ${config.uri_env}" if config.type == "mongo_uri" else f"{config.host}:{config.port}"
        checks.append((f"MongoDB store ({where}, database {config.database})", _mongo(config, campaign_dir, config.docs_collection)))
    if config.data_store == "s3":
        # the bucket only: its index lives with the other collections (checked above, or embedded)
        bucket = _s3_data(config, campaign_dir, index=MemoryStore(collection_name="s3-check"))
        checks.append((f"S3 bucket {config.s3_bucket!r} of the store", bucket))
    errors = _connection_errors()
    try:
        # clients first (no server needed): a malformed URI or missing S3 credentials fail at once ...
        for what, store in checks:
            _connect_or_explain(store.connect, what, config, errors)
        # ... then a round trip: MongoStore connects lazily
        for what, store in checks:
            _connect_or_explain(store.count, what, config, errors)
    finally:
        for what, store in checks:
            try:
                store.close()
            except Exception:  # noqa: BLE001 - e.g. a store that never connected
                logger.debug(f"closing the {what} after its check failed", exc_info=True)


def _connect_or_explain(action: Callable[[], Any], what: str, config: StoreConfig, errors: tuple) -> None:
    try:
        action()
    except StoreConfigError:
        raise
    except errors as exc:
        raise StoreConfigError(f"cannot use the {what}: {unusable_reason(exc, config)}") from None
