"""Read a finished (or running) campaign: query, export and plot its candidates.

Each function is what one CLI command does, callable from Python with the same arguments. The
queries are :mod:`matris_flows.campaign.reading`'s (which imports no jobflow or torch), under
their historical names here.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from maggma.core import Store

from matris_flows.campaign.reading import SPEC_FILE
from matris_flows.campaign.reading import export_candidates as export_campaign
from matris_flows.campaign.reading import find_candidates as query_campaign
from matris_flows.campaign.reading import open_candidates as candidates_store
from matris_flows.campaign.spec import load_spec
from matris_flows.results.hull_data import plot_elements, subsystem_chemsys
from matris_flows.results.hull_matplotlib import plot_hull
from matris_flows.results.hull_plotly import plot_hull_html
from matris_flows.stores import make_collection_store

__all__ = ["candidates_store", "export_campaign", "plot_campaign", "query_campaign", "references_store"]


@contextmanager
def references_store(directory: str | Path) -> Iterator[Store]:
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


def plot_campaign(
    directory: str | Path, chemsys: str, path: str | Path | None = None, *, html: str | Path | None = None
) -> Path:
    """Hull picture of ``chemsys`` with the campaign's candidates on it, read from the campaign store only.

    Reference phases come from the ``references`` collection the hull step fills, candidates
    from ``candidates``; only this campaign's documents within ``chemsys`` are drawn.

    Args:
        directory: Campaign directory (``spec.yaml`` and its store).
        chemsys: 2 to 4 elements, any order, e.g. ``"Fe-Li-O"``.
        path: Static picture (.png, .svg or .pdf).
        html: Interactive plotly page (self-contained HTML).

    Returns:
        ``path`` when given, else ``html``.

    Raises:
        ValueError: one-line message for a bad chemical system or output, or when the store
            holds no reference phases for ``chemsys``.
    """
    if path is None and html is None:
        raise ValueError("give a picture path, an html path or both")
    elements = plot_elements(chemsys)
    directory = Path(directory)
    campaign = load_spec(directory / SPEC_FILE).name
    criteria = {"campaign": campaign, "chemsys": {"$in": subsystem_chemsys(elements)}}
    with references_store(directory) as store:
        references = [d for d in store.query(criteria=criteria) if d.get("formation_energy_per_atom") is not None]
    if not references:
        raise ValueError(
            f"the store of campaign {campaign} holds no reference phases within {'-'.join(elements)} "
            "(no candidates there, or a campaign from before references were recorded: resume it)"
        )
    with candidates_store(directory) as store:
        candidates = list(store.query(criteria={**criteria, "thermo_status": "ok"}))
    written = []
    if path is not None:
        written.append(plot_hull(chemsys, candidates, references, path))
    if html is not None:
        written.append(plot_hull_html(chemsys, candidates, references, html))
    return written[0]
