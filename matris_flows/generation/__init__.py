"""Generation stage: candidate structures for a screening campaign.

Sources (ionic substitution, prototype decoration, pyxtal random search, user files) are
Makers in :mod:`.jobs`; :class:`~.jobs.GenerationMaker` combines them into one filtered,
deduplicated candidate set and :class:`~.jobs.ChunkedGenerationMaker` streams it in
chunks to the relaxation stage. Documents are in :mod:`.schemas`.
"""

from matris_flows.generation.jobs import (
    ChunkedGenerationMaker,
    FileSourceMaker,
    GenerationMaker,
    PrototypeMaker,
    RandomSearchMaker,
    SubstitutionMaker,
)
from matris_flows.generation.schemas import Candidate, GenerationChunk, GenerationOutput, GenerationReport

__all__ = [
    "Candidate",
    "ChunkedGenerationMaker",
    "FileSourceMaker",
    "GenerationChunk",
    "GenerationMaker",
    "GenerationOutput",
    "GenerationReport",
    "PrototypeMaker",
    "RandomSearchMaker",
    "SubstitutionMaker",
]
