"""Results stage: query the candidates collection, list, export and plot what a campaign found.

``query`` filters the collection through any maggma Store, ``formatting`` turns
documents into tables, JSON or CSV, ``export`` writes relaxed structures to
files and ``plot`` draws a chemical system's convex hull with the candidates.
"""

from matris_flows.results.export import EXTENSIONS, export_structures, structure_filename, structure_of
from matris_flows.results.formatting import COLUMNS, DEFAULT_COLUMNS, Column, format_candidates
from matris_flows.results.query import CandidateQuery, query_candidates

__all__ = [
    "COLUMNS",
    "DEFAULT_COLUMNS",
    "EXTENSIONS",
    "CandidateQuery",
    "Column",
    "export_structures",
    "format_candidates",
    "hull_data",
    "plot_hull",
    "plot_hull_html",
    "query_candidates",
    "structure_filename",
    "structure_of",
]

# The plot module (pymatgen's phase diagrams, matplotlib) is imported on first use: the
# CLI's query/status/export must answer in well under a second.
_PLOT_NAMES = ("hull_data", "plot_hull", "plot_hull_html")


def __getattr__(name: str):
    if name in _PLOT_NAMES:
        from matris_flows.results import plot

        return getattr(plot, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
