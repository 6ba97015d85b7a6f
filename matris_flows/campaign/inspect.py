"""Read a finished (or running) campaign: query, export and plot its candidates.

Each function is what one CLI command does, callable from Python with the same arguments.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from maggma.core import Store

from matris_flows.campaign.flow import _references
from matris_flows.campaign.runner import SPEC_FILE
from matris_flows.campaign.spec import load_spec
from matris_flows.results import CandidateQuery, export_structures, plot_hull, query_candidates
from matris_flows.stores import make_candidates_store


@contextmanager
def candidates_store(directory: str | Path) -> Iterator[Store]:
    """The campaign's candidates collection, connected, closed afterwards."""
    directory = Path(directory)
    spec = load_spec(directory / SPEC_FILE)
    store = make_candidates_store(spec.store_config(directory), directory)
    try:
        yield store
    finally:
        store.close()


def query_campaign(directory: str | Path, query: CandidateQuery | None = None) -> list[dict]:
    """Candidate documents of the campaign in ``directory`` matching ``query``."""
    with candidates_store(directory) as store:
        return query_candidates(store, query or CandidateQuery())


def export_campaign(
    directory: str | Path, out_dir: str | Path, fmt: str = "cif", query: CandidateQuery | None = None
) -> list[Path]:
    """Write the relaxed structures of the matching candidates to ``out_dir``."""
    return export_structures(query_campaign(directory, query), out_dir, fmt)


def plot_campaign(directory: str | Path, chemsys: str, path: str | Path) -> Path:
    """Convex hull of ``chemsys`` (the campaign's reference entries) with its candidates on it."""
    directory = Path(directory)
    spec = load_spec(directory / SPEC_FILE)
    chemsys = "-".join(sorted(chemsys.split("-")))
    entries = _references(spec, directory).get_entries(chemsys)
    elements = set(chemsys.split("-"))
    docs = [d for d in query_campaign(directory) if d.get("chemsys") and set(d["chemsys"].split("-")) <= elements]
    return plot_hull(chemsys, docs, entries, path)
