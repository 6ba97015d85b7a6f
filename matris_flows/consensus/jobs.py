"""jobflow Makers of the consensus stage: shortlist → one scoring job per potential and chunk → consensus step.

The shortlist job reads the candidates store (it runs where the store is), leaves out what an
earlier run already scored with the same model and settings, and is replaced by the scoring
jobs, which run anywhere (they only publish to the ``opinions`` store). The consensus step runs
once they are all done, whatever failed among them: a model that failed leaves its candidates
marked, the others' numbers stand.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from jobflow import Flow, Maker, OutputReference, Response, job
from jobflow.core.job import JobConfig
from jobflow.core.reference import OnMissing
from pymatgen.core import Structure

from matris_flows.consensus.schemas import ConsensusOutput, ScoringOutput, ShortlistChunk, ShortlistOutput
from matris_flows.consensus.scoring import opinion_key, opinion_relax_settings, score_chunk
from matris_flows.consensus.settings import ConsensusSettings, OpinionPotential
from matris_flows.consensus.shortlist import input_fingerprint, shortlist_systems, shortlisted
from matris_flows.core.publishing import CANDIDATES_STORE_NAME, OPINIONS_STORE_NAME, publish, write_only_config
from matris_flows.core.serialization import json_document
from matris_flows.generation.jobs import split_evenly
from matris_flows.relax.schemas import RelaxSettings
from matris_flows.thermo.consistent_references import ConsistentReferences
from matris_flows.thermo.references import LocalFileReferences, ReferenceProvider

_FETCH_BATCH = 500
_SHORTLIST = ": shortlist"


@dataclass
class ScoreMaker(Maker):
    """One potential's opinion on one chunk of the shortlist."""

    name: str = "consensus score"
    opinion: OpinionPotential | None = None
    mode: str = "single_point"
    relax: RelaxSettings | None = None
    references: ReferenceProvider | None = None
    campaign: str | None = None

    @job(output_schema=ScoringOutput, config=write_only_config())
    def make(self, chunk: Any, consistent_references: Any = None) -> ScoringOutput:
        """Score ``chunk`` (a :class:`ShortlistChunk`) and publish one opinion per candidate."""
        chunk = chunk if isinstance(chunk, ShortlistChunk) else ShortlistChunk.model_validate(chunk)
        references = (
            ConsistentReferences.from_output(consistent_references) if consistent_references is not None
            else self.references or LocalFileReferences()
        )
        structures = [s if isinstance(s, Structure) else Structure.from_dict(s) for s in chunk.structures]
        opinions = score_chunk(
            self.opinion, self.mode, chunk.candidate_ids, structures, chunk.input_fingerprints, references,
            campaign=self.campaign, relax=self.relax,
        )
        published = publish([json_document(o) for o in opinions], OPINIONS_STORE_NAME, key="opinion_id")
        return ScoringOutput(
            model=self.opinion.label,
            n_ok=sum(o.status == "ok" for o in opinions),
            n_failed=sum(o.status != "ok" for o in opinions),
            elapsed_s=sum(o.elapsed_s or 0.0 for o in opinions),
            published=published,
            opinions=None if published else opinions,
        )


@dataclass
class ConsensusMaker(Maker):
    """A second opinion on the shortlist, between the campaign hull and validation.

    Parameters
    ----------
    name
        Name of the stage's jobs.
    settings
        Potentials, mode, shortlist, statistic and rule.
    references
        Reference provider of the MP-scale models (the campaign hull's).
    primary
        The campaign's potential (its numbers are the first vote).
    campaign
        Campaign name.
    relax
        The campaign's relaxation settings (relax mode: optimizer, filter and checks).
    stability_threshold
        Threshold of ``is_stable_consensus`` when ``settings`` gives none, eV/atom.
    allow_unconverged
        Let candidates whose primary relaxation did not converge be ``is_stable_consensus``.
    references_uuids
        ``{model label: uuid}`` of the consistent-references job of each model not on the MP scale.
    """

    name: str = "consensus"
    settings: ConsensusSettings | None = None
    references: ReferenceProvider | None = None
    primary: str = ""
    campaign: str | None = None
    relax: RelaxSettings = field(default_factory=RelaxSettings)
    stability_threshold: float = 0.0
    allow_unconverged: bool = False
    references_uuids: dict[str, str] = field(default_factory=dict)

    def opinion_relax(self, opinion: OpinionPotential) -> RelaxSettings | None:
        """relax mode: the settings ``opinion`` relaxes with (None in single-point mode)."""
        return opinion_relax_settings(self.relax, opinion.name) if self.settings.mode == "relax" else None

    def opinion_keys(self) -> dict[str, str]:
        """``{model label: opinion key}`` in the spec's order."""
        return {o.label: opinion_key(o, self.settings.mode, self.opinion_relax(o)) for o in self.settings.potentials}

    def make(self, after: Any = None, references_ready: Any = None) -> Flow:
        """The stage: the shortlist job (replaced by the scoring jobs) and the consensus step after them."""
        # copies named per job: jobflow renames a Maker with its job
        shortlist = replace(self, name=f"{self.name}{_SHORTLIST}").shortlist(after, references_ready)
        consistent = {label: OutputReference(uuid) for label, uuid in self.references_uuids.items()}
        combine = replace(self, name=f"{self.name}: combine").combine(shortlist.output, consistent)
        return Flow([shortlist, combine], output=combine.output, name=self.name)

    @job(output_schema=ShortlistOutput, data="chunks", config=JobConfig(expose_store=True, on_missing_references=OnMissing.NONE))
    def shortlist(self, after: Any = None, references_ready: Any = None) -> Response:
        """Shortlist per system, drop what is already scored, and replace this job by the scoring jobs.

        ``after`` orders it after the campaign hull; ``references_ready`` after the consistent references.
        """
        from jobflow import CURRENT_JOB

        if after is None:
            raise RuntimeError("the campaign hull failed: there is no shortlist to give a second opinion on")
        stores = CURRENT_JOB.store.additional_stores
        candidates, opinions = stores[CANDIDATES_STORE_NAME], stores.get(OPINIONS_STORE_NAME)
        if opinions is None:
            raise RuntimeError("the consensus stage needs a JobStore with an 'opinions' additional store (campaign stores have one)")
        keys = self.opinion_keys()
        todo: dict[str, list[dict]] = {label: [] for label in keys}
        n_shortlisted, systems = 0, 0
        for chemsys in shortlist_systems(candidates, self.campaign):
            docs = shortlisted(candidates, chemsys, self.settings.shortlist, self.campaign)
            if not docs:
                continue
            n_shortlisted += len(docs)
            systems += 1
            done = {
                (d["opinion_key"], d["candidate_id"]): d.get("input_fingerprint")
                for d in opinions.query(
                    {"candidate_id": {"$in": [d["candidate_id"] for d in docs]}, "status": "ok"},
                    properties=["opinion_key", "candidate_id", "input_fingerprint"],
                )
            }
            for doc in docs:
                wanted = input_fingerprint(doc.get("energy_per_atom"))
                for label, key in keys.items():
                    if done.get((key, doc["candidate_id"])) != wanted:
                        todo[label].append(doc)
        chunks, chunk_models = [], []
        structures = self._structures(candidates, {d["candidate_id"] for docs in todo.values() for d in docs})
        for label, docs in todo.items():
            docs = [d for d in docs if d["candidate_id"] in structures]
            for start, stop in split_evenly(len(docs), self.settings.chunk_size):  # no chunk of one left over
                part = docs[start:stop]
                chunks.append(ShortlistChunk(
                    candidate_ids=[d["candidate_id"] for d in part],
                    structures=[structures[d["candidate_id"]] for d in part],
                    input_fingerprints=[input_fingerprint(d.get("energy_per_atom")) for d in part],
                ))
                chunk_models.append(label)
        output = ShortlistOutput(
            n_shortlisted=n_shortlisted, n_systems=systems, n_to_score={label: len(docs) for label, docs in todo.items()},
            chunks=chunks, chunk_models=chunk_models,
        )
        if not chunks:
            return Response(output=output)
        own = OutputReference(CURRENT_JOB.job.uuid)
        by_label = {o.label: o for o in self.settings.potentials}
        jobs = []
        for k, label in enumerate(chunk_models):
            opinion = by_label[label]
            scorer = ScoreMaker(
                name=f"{self.name.removesuffix(_SHORTLIST)}: {label} {k}", opinion=opinion, mode=self.settings.mode,
                relax=self.opinion_relax(opinion), references=self.references, campaign=self.campaign,
            )
            consistent = OutputReference(self.references_uuids[label]) if label in self.references_uuids else None
            jobs.append(scorer.make(own.chunks[k], consistent))
        # replace, as a generation shard does: the scoring jobs read this job's stored chunks
        return Response(output=output, replace=Flow(jobs, name=f"{self.name} scoring"))

    @staticmethod
    def _structures(candidates, ids: set[str]) -> dict[str, Structure]:
        out: dict[str, Structure] = {}
        ordered = sorted(ids)
        for start in range(0, len(ordered), _FETCH_BATCH):
            for doc in candidates.query({"candidate_id": {"$in": ordered[start : start + _FETCH_BATCH]}},
                                        properties=["candidate_id", "structure"]):
                if doc.get("structure"):
                    out[doc["candidate_id"]] = Structure.from_dict(doc["structure"])
        return out

    @job(output_schema=ConsensusOutput, config=JobConfig(expose_store=True, on_missing_references=OnMissing.NONE))
    def combine(self, shortlist: Any = None, consistent_references: dict[str, Any] | None = None) -> ConsensusOutput:
        """Per-model campaign hulls and every shortlisted candidate's consensus record (whatever scoring job failed)."""
        from jobflow import CURRENT_JOB

        from matris_flows.consensus.builder import ConsensusBuilder

        if shortlist is None:
            raise RuntimeError("the consensus shortlist job failed: no candidate got a second opinion")
        stores = CURRENT_JOB.store.additional_stores
        mp_references = self.references or LocalFileReferences()
        references: dict[str, ReferenceProvider] = {}
        for opinion in self.settings.potentials:
            output = (consistent_references or {}).get(opinion.label)
            if opinion.label in self.references_uuids and output is None:
                raise RuntimeError(f"the consistent-references job of {opinion.label} failed: its opinions have no hull")
            references[opinion.label] = ConsistentReferences.from_output(output) if output is not None else mp_references
        builder = ConsensusBuilder(
            candidates=stores[CANDIDATES_STORE_NAME], opinions=stores[OPINIONS_STORE_NAME], settings=self.settings,
            opinion_keys=self.opinion_keys(), references=references, primary=self.primary, campaign=self.campaign,
            stability_threshold=self.stability_threshold, allow_unconverged=self.allow_unconverged,
        )
        return builder.build()
