"""Results stage: query the candidates collection, list, export and plot what a campaign found.

``query`` filters the collection through any maggma Store, ``formatting`` turns
documents into tables, JSON or CSV, ``export`` writes relaxed structures to files.
Hull pictures of a chemical system: ``hull_data`` computes what they show,
``hull_matplotlib`` draws PNG/SVG/PDF and ``hull_plotly`` the interactive page. Import
them from those modules; this package does not, so that the CLI's query/status/export
answer without loading pymatgen's phase diagrams or matplotlib.
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
    "query_candidates",
    "structure_filename",
    "structure_of",
]

