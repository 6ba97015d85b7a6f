"""Can a campaign's store be used at all? Reach its servers once before anything is written, and say why not.

:func:`check_store` runs before a campaign directory is created, so a store that cannot work
(a malformed URI, missing credentials, an unreachable server, a refused bucket) leaves nothing
behind; :func:`unusable_reason` is the one-line reason, without credentials, that the CLI prints.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maggma.core import Store

from matris_flows.stores.backends import mongo_store, s3_data_store
from matris_flows.stores.config import StoreConfig, StoreConfigError

logger = logging.getLogger(__name__)


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
    a store that cannot work. Embedded stores (SQLite, memory) are created with
    the campaign: there is nothing to reach.

    Raises:
        StoreConfigError: The store cannot be used (the message says why).
    """
    from maggma.stores import MemoryStore

    checks: list[tuple[str, Store]] = []
    if config.type in ("mongo", "mongo_uri"):
        where = f"URI from ${config.uri_env}" if config.type == "mongo_uri" else f"{config.host}:{config.port}"
        checks.append((f"MongoDB store ({where}, database {config.database})", mongo_store(config, campaign_dir, config.docs_collection)))
    if config.data_store == "s3":
        # the bucket only: its index lives with the other collections (checked above, or embedded)
        bucket = s3_data_store(config, campaign_dir, index=MemoryStore(collection_name="s3-check"))
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
