"""The campaign's JobStore for plain jobflow: run ``ScreeningMaker.make()`` with ``run_locally`` (or another manager).

The campaign's jobs read and write more than jobflow's output store: each chunk's hull job
publishes candidate documents to a ``candidates`` store, the campaign-wide step reads them back,
relaxation records go to ``data``, reference phases to ``references``. :func:`campaign_job_store`
builds all of them from the spec's store config, as ``matris-flows screen`` does, and records the
spec in the directory, so that ``status``, ``query``, ``plot`` and the reading functions work on
the result of a plain jobflow run too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from matris_flows.campaign.directory import SPEC_FILE, recorded_spec_differs, start_campaign_directory, write_spec
from matris_flows.campaign.spec import SpecError, SpecLike
from matris_flows.stores.backends import make_job_store

if TYPE_CHECKING:
    from jobflow import JobStore


def campaign_job_store(spec: SpecLike, directory: str | Path | None = None) -> JobStore:
    """The JobStore (not connected) that the Flow of ``ScreeningMaker.from_spec(spec, directory)`` needs.

    Args:
        spec: A :class:`~matris_flows.campaign.spec.CampaignSpec`, a mapping, or a spec file's path.
        directory: The campaign directory (default ``campaigns/<name>``, as for ``from_spec`` and
            ``matris-flows screen``): the embedded database lives there, and the spec is written
            there (store config inlined) unless it already holds this spec.

    Raises:
        SpecError: a bad spec, or a directory that holds another campaign's spec.
        StoreUnavailableError: the store's servers cannot be reached (MongoDB, S3).
    """
    spec, _, directory, config = start_campaign_directory(spec, directory)
    resolved = spec.model_copy(update={"store": config})
    if not (directory / SPEC_FILE).exists():
        write_spec(directory, resolved)
    elif recorded_spec_differs(directory, resolved):
        raise SpecError(f"campaign directory {str(directory)!r} holds another spec; use another directory")
    return make_job_store(config, directory)
