"""Read a finished (or running) campaign: query, export and plot its candidates.

Each function is what one CLI command does, callable from Python with the same arguments.
Nothing here imports jobflow, Dask or torch, and the plots' modules (pymatgen's phase
diagrams, matplotlib) are imported by :func:`plot_campaign` only: ``query`` and ``export``
answer in well under a second on a finished campaign.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from matris_flows.campaign.directory import SPEC_FILE, campaign_spec_file
from matris_flows.campaign.spec import load_spec
from matris_flows.stores.backends import make_candidates_store, make_collection_store

if TYPE_CHECKING:
    import pandas
    from maggma.core import Store
    from pymatgen.core import Structure

    from matris_flows.results.hull_data import HullData
    from matris_flows.results.query import CandidateQuery


@contextmanager
def open_candidates(directory: str | Path) -> Iterator[Store]:
    """The campaign's candidates collection, connected, closed afterwards."""
    directory = Path(directory)
    spec = load_spec(campaign_spec_file(directory))
    store = make_candidates_store(spec.store_config(directory), directory)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def open_references(directory: str | Path) -> Iterator[Store]:
    """The campaign's ``references`` collection (one document per reference phase), connected, closed afterwards."""
    directory = Path(directory)
    spec = load_spec(directory / SPEC_FILE)
    config = spec.store_config(directory)
    store = make_collection_store(config, directory, config.references_collection)
    store.key = "reference_id"
    store.connect()
    try:
        yield store
    finally:
        store.close()


def query_campaign(directory: str | Path, query: CandidateQuery | None = None) -> list[dict]:
    """Candidate documents of the campaign in ``directory`` matching ``query``."""
    from matris_flows.results.query import CandidateQuery, query_candidates

    with open_candidates(directory) as store:
        return query_candidates(store, query or CandidateQuery())


def candidates_dataframe(
    directory: str | Path, query: CandidateQuery | None = None, columns: Sequence[str] | None = None
) -> pandas.DataFrame:
    """The matching candidates as a pandas DataFrame, one row per candidate, indexed by ``candidate_id``.

    ``columns`` are names of ``query --columns`` (``e_above_hull``, ``source``, ``relax_status``,
    ...) or dotted paths into the documents (``relaxation.n_steps``); by default every named
    column. Values are as stored (floats, booleans, None), not formatted.
    """
    import pandas

    from matris_flows.results.formatting import COLUMNS, column, get_path

    names = list(columns) if columns is not None else list(COLUMNS)
    if "candidate_id" not in names:
        names.insert(0, "candidate_id")
    docs = query_campaign(directory, query)
    rows = {name: [get_path(doc, column(name).path) for doc in docs] for name in names}
    return pandas.DataFrame(rows, columns=names).set_index("candidate_id")


def relaxed_structures(directory: str | Path, query: CandidateQuery | None = None) -> dict[str, Structure]:
    """The relaxed structures of the matching candidates that have one, by candidate id (the query's order)."""
    from matris_flows.results.export import structure_of

    found = ((doc["candidate_id"], structure_of(doc)) for doc in query_campaign(directory, query))
    return {candidate: structure for candidate, structure in found if structure is not None}


def export_campaign(
    directory: str | Path, out_dir: str | Path, fmt: str = "cif", query: CandidateQuery | None = None
) -> list[Path]:
    """Write the relaxed structures of the matching candidates to ``out_dir``."""
    from matris_flows.results.export import export_structures

    return export_structures(query_campaign(directory, query), out_dir, fmt)


def plot_campaign(
    directory: str | Path, chemsys: str, path: str | Path | None = None, *, html: str | Path | None = None,
    color_by: str = "e_above_hull",
) -> Path:
    """Hull picture of ``chemsys`` with the campaign's candidates on it, read from the campaign store only.

    Reference phases come from the ``references`` collection the hull step fills, candidates
    from ``candidates``; only this campaign's documents within ``chemsys`` are drawn.

    Args:
        directory: Campaign directory (``spec.yaml`` and its store).
        chemsys: 2 to 4 elements, any order, e.g. ``"Fe-Li-O"``.
        path: Static picture (.png, .svg or .pdf).
        html: Interactive plotly page (self-contained HTML).
        color_by: Colour candidates by ``e_above_hull``, ``consensus`` or ``spread`` (the consensus stage's numbers).

    Returns:
        ``path`` when given, else ``html``.

    Raises:
        ValueError: one-line message for a bad chemical system or output, or when the store
            holds no reference phases for ``chemsys``.
    """
    from matris_flows.results.hull_data import plot_elements
    from matris_flows.results.hull_matplotlib import save_hull_figure
    from matris_flows.results.hull_plotly import write_hull_html

    if path is None and html is None:
        raise ValueError("give a picture path, an html path or both")
    plot_elements(chemsys)  # a typo is reported before the campaign is opened
    directory = Path(directory)
    campaign = load_spec(directory / SPEC_FILE).name
    with open_references(directory) as references, open_candidates(directory) as candidates:
        data = campaign_hull_data(candidates, references, campaign, chemsys, color_by)  # once for both pictures
    written = []
    if path is not None:
        written.append(save_hull_figure(data, path))
    if html is not None:
        written.append(write_hull_html(data, html))
    return written[0]


def campaign_hull_data(
    candidates: Store, references: Store, campaign: str, chemsys: str, color_by: str = "e_above_hull",
    scope: dict | None = None,
) -> HullData:
    """What the hull picture of ``chemsys`` shows, read from a campaign's connected candidates and references collections.

    Only the campaign's documents within ``chemsys`` (its subsystems included) are read; ``scope``
    selects the campaign's documents (default ``{"campaign": campaign}``; ``{}`` where the
    collections hold no other campaign, see :meth:`~matris_flows.campaign.status.CampaignStores.scope`).

    Raises:
        ValueError: one-line message for a bad chemical system or ``color_by``, or when the store
            holds no reference phases for ``chemsys``.
    """
    from matris_flows.results.hull_data import hull_data, plot_elements, subsystem_chemsys

    elements = plot_elements(chemsys)
    criteria = {**({"campaign": campaign} if scope is None else scope), "chemsys": {"$in": subsystem_chemsys(elements)}}
    found = [d for d in references.query(criteria=criteria) if d.get("formation_energy_per_atom") is not None]
    if not found:
        raise ValueError(
            f"the store of campaign {campaign} holds no reference phases within {'-'.join(elements)} "
            "(no candidates there, or a campaign from before references were recorded: resume it)"
        )
    # thermo_status is filtered here, not in the query: SQLite (no statistics) would read an equality on it through
    # its index, which holds nearly every candidate, rather than the chemsys index (0.34 s instead of 1 ms at 10⁵)
    drawn = [d for d in candidates.query(criteria=criteria) if d.get("thermo_status") == "ok"]
    return hull_data(chemsys, drawn, found, color_by=color_by)
