"""Results stage: query the candidates collection, list, export and plot what a campaign found.

``query`` filters the collection through any maggma Store, ``formatting`` turns
documents into tables, JSON or CSV, ``export`` writes relaxed structures to
files and ``plot`` draws a chemical system's convex hull with the candidates.
"""

from matris_flows.results.export import EXTENSIONS, export_structures, structure_filename, structure_of
from matris_flows.results.formatting import COLUMNS, DEFAULT_COLUMNS, Column, format_candidates
from matris_flows.results.plot import candidate_entry, hull_phase_diagram, plot_hull
from matris_flows.results.query import CandidateQuery, query_candidates

__all__ = [
    "COLUMNS",
    "DEFAULT_COLUMNS",
    "EXTENSIONS",
    "CandidateQuery",
    "Column",
    "candidate_entry",
    "export_structures",
    "format_candidates",
    "hull_phase_diagram",
    "plot_hull",
    "query_candidates",
    "structure_filename",
    "structure_of",
]
