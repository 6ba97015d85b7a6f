"""Generation stage: candidate structures for a screening campaign.

Sources (ionic substitution, prototype decoration, pyxtal random search, user files) are
Makers in :mod:`.jobs`; :class:`~.jobs.ShardedGenerationMaker` combines them and generates a
campaign of any size as parallel shards, each filtered and deduplicated on its own and
replaced by one downstream job per chunk of candidates.
Documents are in :mod:`.schemas`.
"""

from matris_flows.core.lazy import lazy_exports

# Imported lazily (PEP 562): the spec and the CLI's read-only commands import
# ``generation.filters``/``generation.schemas``/``generation.source_settings`` and must not
# pay for the sources' heavy dependencies (pymatgen analysis, sympy, pyxtal).
_EXPORTS = {
    "FileSourceMaker": ".jobs",
    "PrototypeMaker": ".jobs",
    "RandomSearchMaker": ".jobs",
    "ShardedGenerationMaker": ".jobs",
    "SubstitutionMaker": ".jobs",
    "Candidate": ".schemas",
    "CandidateChunk": ".schemas",
    "GenerationOutput": ".schemas",
    "GenerationPlan": ".schemas",
    "GenerationReport": ".schemas",
    "GenerationShard": ".schemas",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "Candidate",
    "CandidateChunk",
    "FileSourceMaker",
    "GenerationOutput",
    "GenerationPlan",
    "GenerationReport",
    "GenerationShard",
    "PrototypeMaker",
    "RandomSearchMaker",
    "ShardedGenerationMaker",
    "SubstitutionMaker",
]
