"""Read a finished (or running) campaign: query, export and plot its candidates.

Each function is what one CLI command does, callable from Python with the same arguments.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from maggma.core import Store
from pymatgen.core import Composition
from pymatgen.entries.computed_entries import ComputedEntry

from matris_flows.campaign.flow import _references
from matris_flows.campaign.runner import SPEC_FILE
from matris_flows.campaign.spec import load_spec
from matris_flows.core.chemsys import chemsys_of
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
    """Convex hull of ``chemsys`` with the campaign's candidates on it.

    MP-scale campaigns are drawn on their reference entries. Campaign-internal hulls
    (potentials whose energies are not MP-compatible) are drawn in formation-energy
    space, elements at zero, which is the same hull without needing the reference
    relaxations again.
    """
    directory = Path(directory)
    spec = load_spec(directory / SPEC_FILE)
    elements = set(chemsys.split("-"))
    chemsys = chemsys_of(elements)
    docs = [d for d in query_campaign(directory) if d.get("chemsys") and set(d["chemsys"].split("-")) <= elements]
    if docs and all(d.get("hull_kind") == "campaign_internal" for d in docs):
        docs = [{**d, "corrected_energy_per_atom": d.get("formation_energy_per_atom")} for d in docs]
        entries = [ComputedEntry(Composition(element), 0.0, entry_id=f"{element} (reference)") for element in sorted(elements)]
    else:
        entries = _references(spec, directory).get_entries(chemsys)
    return plot_hull(chemsys, docs, entries, path)
