"""Which database holds a campaign: :class:`StoreConfig`, read from the YAML files of the top-level ``stores/`` folder.

Also here: the names of the JobStore's additional stores for large data and the Dask
manager's journal. This module imports no backend library (maggma, pymongo): the stores are
built by :mod:`matris_flows.stores.backends`. A config names the environment variables that
hold credentials, never the credentials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

DATA_STORE_NAME = "data"
"""JobStore additional store for trajectories and other large outputs."""

JOURNAL_STORE_NAME = "journal"
"""JobStore additional store where the Dask manager keeps its resume records."""


class StoreConfigError(ValueError):
    """A store configuration that cannot be loaded or used."""


REMOVED_MONTY = "the 'monty' store backend (montydb) was removed: use type: sqlite, the embedded store that replaced it"
"""Why a config with ``type: monty`` is refused."""


class StoreConfig(BaseModel):
    """Which database holds a campaign's job outputs and candidates."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["sqlite", "mongo", "mongo_uri", "memory"] = Field(
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
    opinions_collection: str = Field(
        "opinions", description="Second opinions of the consensus stage: one document per candidate and model."
    )
    data_store: Literal["collection", "gridfs", "s3"] = Field(
        "collection",
        description="Where large data goes: a collection of the same backend, "
        "GridFS (mongo types) or S3.",
    )
    # sqlite
    path: str = Field(
        "database",
        description="Database directory (holds <database>.sqlite), relative to the campaign directory unless absolute.",
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
    server_selection_timeout_s: float = Field(
        3.0,
        gt=0,
        description="Seconds a MongoDB client waits for a reachable server before reporting it unreachable "
        "(pymongo's default is 30).",
    )
    # mongo_uri
    uri_env: str | None = Field(
        None, description="Environment variable holding the mongodb(+srv):// URI."
    )
    # s3
    s3_bucket: str | None = Field(None, description="S3 bucket for large data.")
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint (non-AWS).")
    s3_profile: str | None = Field(None, description="AWS credentials profile.")
    s3_prefix: str | None = Field(None, description="Key prefix inside the bucket.")

    @model_validator(mode="before")
    @classmethod
    def _drop_monty_storage(cls, data: Any) -> Any:
        # Earlier versions had a montydb backend and wrote monty_storage into every store config
        # they saved (a campaign's spec.yaml, flow.json and journal): those must still load.
        if isinstance(data, dict) and "monty_storage" in data:
            data = {key: value for key, value in data.items() if key != "monty_storage"}
        return data

    @field_validator("type", mode="before")
    @classmethod
    def _removed_backend(cls, value: Any) -> Any:
        if value == "monty":
            raise PydanticCustomError("removed_backend", REMOVED_MONTY)
        return value

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
        return f"sqlite {database_dir(config, campaign_dir) / (config.database + '.sqlite')}"
    if config.type == "mongo":
        return f"mongodb {config.host}:{config.port}/{config.database}"
    if config.type == "mongo_uri":
        return f"mongodb URI from ${config.uri_env} /{config.database}"
    return f"memory /{config.database}"


def database_dir(config: StoreConfig, campaign_dir: str | Path | None) -> Path:
    """The directory of an embedded database (``config.path``; a relative one is in the campaign directory)."""
    path = Path(config.path)
    if not path.is_absolute():
        if campaign_dir is None:
            raise StoreConfigError("a relative database path needs the campaign directory")
        path = Path(campaign_dir) / path
    return path
