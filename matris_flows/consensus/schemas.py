"""Documents of the consensus stage: one opinion per candidate and model, the consensus in the candidate's document."""

from typing import Literal

from pydantic import BaseModel, Field

from matris_flows.core.serialization import JsonStructure
from matris_flows.potentials.naming import PotentialInfo
from matris_flows.thermo.schemas import HullKind

OpinionStatus = Literal["ok", "failed"]
ConsensusStatus = Literal["ok", "partial", "failed"]


class ModelOpinion(BaseModel):
    """One model's energy for one shortlisted candidate (a document of the ``opinions`` collection)."""

    opinion_id: str = Field(description="'<candidate_id>:<opinion_key>': the key of the opinions collection.")
    opinion_key: str = Field(description="Hash of the potential's weights and options, the mode and the relax settings.")
    candidate_id: str = Field(description="Candidate this opinion is about.")
    campaign: str | None = Field(None, description="Campaign of the candidate.")
    chemsys: str = Field(description="Chemical system of the candidate.")
    formula: str = Field(description="Reduced formula of the candidate.")
    model: str = Field(description="The model's label (potential name, plus its variant when options choose one).")
    mode: Literal["single_point", "relax"] = Field(description="single_point at the primary's relaxed structure, or a relaxation from it.")
    input_fingerprint: str = Field(description="The primary's energy it was scored after: a re-relaxed candidate is scored again.")
    status: OpinionStatus = Field(description="ok, or failed (the reason says why).")
    failure_reason: str | None = Field(None, description="Why the model gave no energy.")
    energy_per_atom: float | None = Field(None, description="Raw model energy per atom, eV/atom (model convention).")
    corrected_energy_per_atom: float | None = Field(None, description="On the hull's scale (MP2020 where the model needs it), eV/atom.")
    formation_energy_per_atom: float | None = Field(None, description="Formation energy on that model's reference hull, eV/atom.")
    e_above_hull: float | None = Field(None, description="Energy above that model's reference hull, eV/atom.")
    hull_kind: HullKind | None = Field(None, description="'mp' (MP2020 scale) or 'campaign_internal' (the model's consistent hull).")
    converged: bool | None = Field(None, description="relax mode: whether the relaxation converged; None for single points.")
    n_steps: int | None = Field(None, description="relax mode: optimizer steps.")
    max_force: float | None = Field(None, description="Largest atomic force at the scored structure, eV/Å.")
    structure: JsonStructure | None = Field(None, description="relax mode: the model's relaxed structure.")
    potential: PotentialInfo | None = Field(None, description="The model's identity: versions, checkpoint path and SHA-256, device.")
    elapsed_s: float | None = Field(None, description="Wall time of this candidate's model calls, s (a batch's share).")
    scored_at: str | None = Field(None, description="When the opinion was computed (UTC, ISO 8601).")


class ModelVote(BaseModel):
    """One model's numbers as the candidate's document records them."""

    model: str = Field(description="The model's label; the primary is the campaign's potential.")
    role: Literal["primary", "opinion"] = Field(description="primary (the campaign's relaxation) or opinion.")
    status: OpinionStatus = Field(description="ok, or failed (no energy: see failure_reason).")
    failure_reason: str | None = Field(None, description="Why the model gave no energy (or why it was not scored).")
    e_above_hull: float | None = Field(None, description="Above that model's reference hull, eV/atom.")
    e_above_hull_campaign: float | None = Field(
        None, description="Above that model's campaign hull (its references + the candidates it scored), eV/atom."
    )
    hull_kind: HullKind | None = Field(None, description="'mp' or 'campaign_internal'.")
    converged: bool | None = Field(None, description="Whether that model's relaxation converged (None for single points).")
    version: str | None = Field(None, description="Version of the package the model comes from.")
    checkpoint_sha256: str | None = Field(None, description="SHA-256 of its weights file, when it has one.")


class ConsensusRecord(BaseModel):
    """The second opinion on one candidate: every model's numbers and how they were combined."""

    status: ConsensusStatus = Field(description="ok (every model scored), partial (some failed: see models) or failed (none did).")
    mode: Literal["single_point", "relax"] = Field(description="How the opinions were scored.")
    statistic: str = Field(description="How the consensus value combines the models: median, mean or max.")
    stable_rule: str = Field(description="is_stable_consensus rule: 'consensus' (value <= threshold) or 'all' (every model <=).")
    threshold: float = Field(description="Stability threshold of the rule, eV/atom.")
    n_models: int = Field(description="Models with an energy (the primary included).")
    models: list[ModelVote] = Field(description="The primary first, then each opinion in the spec's order.")
    fingerprint: str = Field(description="Hash of the inputs: an unchanged system is not recomputed on resume.")


class ShortlistChunk(BaseModel):
    """The structures one scoring job receives."""

    candidate_ids: list[str] = Field(description="Candidates of this chunk.")
    structures: list[JsonStructure] = Field(description="The primary's relaxed structures, in order.")
    input_fingerprints: list[str] = Field(description="The primary's energy each was scored after, in order.")


class ShortlistOutput(BaseModel):
    """What the shortlist job found and sent out (its chunks go to the data store)."""

    n_shortlisted: int = Field(description="Candidates on the shortlist (all systems).")
    n_systems: int = Field(description="Chemical systems with a shortlisted candidate.")
    n_to_score: dict[str, int] = Field(description="Per model, candidates scored by this run (the rest were already).")
    chunks: list[ShortlistChunk] = Field(default_factory=list, description="Scoring chunks (stored in the data store).")
    chunk_models: list[str] = Field(default_factory=list, description="The model each chunk is for, in order.")


class ScoringOutput(BaseModel):
    """What one scoring job did."""

    model: str = Field(description="The model's label.")
    n_ok: int = Field(description="Candidates scored.")
    n_failed: int = Field(description="Candidates the model gave no energy for.")
    elapsed_s: float = Field(description="Wall time of the job's model calls and hull work, s.")
    published: bool = Field(description="True when the opinions went to the JobStore's 'opinions' store.")
    opinions: list[ModelOpinion] | None = Field(None, description="The opinions, when there is no opinions store to publish to.")


class ConsensusOutput(BaseModel):
    """The campaign-wide consensus step's counts."""

    n_candidates: int = Field(description="Shortlisted candidates with a consensus record.")
    n_systems_updated: int = Field(description="Chemical systems recomputed by this run.")
    n_partial: int = Field(description="Candidates where some model failed (consensus over the others).")
    n_failed: int = Field(description="Candidates where no second opinion could be had.")
    n_stable_consensus: int = Field(description="Candidates with is_stable_consensus.")
    n_stable_primary: int = Field(description="Of the shortlisted candidates, those the primary alone calls stable (is_stable).")
