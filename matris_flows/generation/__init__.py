"""Generation stage: candidate structures for a screening campaign.

Sources (ionic substitution, prototype decoration, pyxtal random search, user files) are
Makers in :mod:`.jobs`; :class:`~.jobs.GenerationMaker` combines them into one filtered,
deduplicated candidate set and :class:`~.jobs.ShardedGenerationMaker` generates a campaign
of any size as parallel shards, each adding one downstream job per chunk of candidates.
Documents are in :mod:`.schemas`.
"""

from matris_flows.generation.jobs import (
    FileSourceMaker,
    GenerationMaker,
    PrototypeMaker,
    RandomSearchMaker,
    ShardedGenerationMaker,
    SubstitutionMaker,
)
from matris_flows.generation.schemas import (
    Candidate,
    CandidateChunk,
    GenerationOutput,
    GenerationPlan,
    GenerationReport,
    GenerationShard,
)

__all__ = [
    "Candidate",
    "CandidateChunk",
    "FileSourceMaker",
    "GenerationMaker",
    "GenerationOutput",
    "GenerationPlan",
    "GenerationReport",
    "GenerationShard",
    "PrototypeMaker",
    "RandomSearchMaker",
    "ShardedGenerationMaker",
    "SubstitutionMaker",
]
