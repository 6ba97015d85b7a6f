"""Read a campaign directory without importing jobflow, Dask or torch: the CLI's fast commands.

``query``, ``export`` and ``status`` answer in well under a second on a finished campaign;
:mod:`matris_flows.campaign.inspect` has the same queries next to the (heavier) plots.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from matris_flows.campaign.spec import SpecError, load_spec
from matris_flows.stores.backends import make_candidates_store

if TYPE_CHECKING:
    from maggma.core import Store

    from matris_flows.results.query import CandidateQuery

SPEC_FILE = "spec.yaml"


@contextmanager
def open_candidates(directory: str | Path) -> Iterator[Store]:
    """The campaign's candidates collection, connected, closed afterwards."""
    directory = Path(directory)
    if not (directory / SPEC_FILE).is_file():
        raise SpecError(f"{str(directory)!r} is not a campaign directory (it has no {SPEC_FILE})")
    spec = load_spec(directory / SPEC_FILE)
    store = make_candidates_store(spec.store_config(directory), directory)
    try:
        yield store
    finally:
        store.close()


def find_candidates(directory: str | Path, query: CandidateQuery | None = None) -> list[dict]:
    """Candidate documents of the campaign in ``directory`` matching ``query``."""
    from matris_flows.results.query import CandidateQuery, query_candidates

    with open_candidates(directory) as store:
        return query_candidates(store, query or CandidateQuery())


def export_candidates(
    directory: str | Path, out_dir: str | Path, fmt: str = "cif", query: CandidateQuery | None = None
) -> list[Path]:
    """Write the relaxed structures of the matching candidates to ``out_dir``."""
    from matris_flows.results.export import export_structures

    return export_structures(find_candidates(directory, query), out_dir, fmt)
