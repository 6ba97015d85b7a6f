"""What job inputs hold instead of a backend store: :class:`CampaignStore`, one collection of a campaign's store.

A built MongoStore pickles and serialises with its URI; a CampaignStore holds only names and
builds the backend where it is connected. Its ``as_dict`` names this module (``@module``) and it is
serialised into ``flow.json`` and the Dask manager's journal records, which are decoded by that
name on resume: after a move of the class, records written before it name a module without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maggma.core import Store

from matris_flows.stores.backends import make_collection_store
from matris_flows.stores.config import StoreConfig, describe_store


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
