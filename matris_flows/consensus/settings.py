"""The ``consensus`` section of a campaign spec: which potentials give a second opinion, on what, and how they vote."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from matris_flows.potentials.naming import check_import_allowed, parse_potential

_STRICT = ConfigDict(extra="forbid")


class OpinionPotential(BaseModel):
    """One potential that re-scores the shortlist (any name the campaign's ``potential.name`` takes)."""

    model_config = _STRICT
    name: str = Field(description="MatRIS key, checkpoint path, chgnet, sevennet, hienet or ASE import path.")
    options: dict = Field(default_factory=dict, description="Loader options, as for the campaign's potential.")
    device: str = Field("auto", description="auto, cpu or cuda[:n].")
    allow_import: bool = Field(False, description="Allow an import-path potential outside the allowlist (runs its code).")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _known_name(self):
        parse_potential(self.name, self.options)
        check_import_allowed(self.name, self.allow_import, self.options)
        return self

    @property
    def label(self) -> str:
        """How documents name this model: the potential's name, plus its weight-choosing variant when set."""
        spec = parse_potential(self.name, self.options)
        return spec.name if not self.options else f"{spec.name}[{spec.variant or ','.join(sorted(self.options))}]"


class ShortlistSettings(BaseModel):
    """Which candidates get a second opinion: near the primary model's reference hull, bounded per chemical system."""

    model_config = _STRICT
    max_e_above_hull: float = Field(
        0.1, ge=0, description="Candidates at most this far above the reference hull by the primary model, eV/atom."
    )
    max_per_system: int = Field(
        200, ge=1, description="At most this many per chemical system, lowest primary e_above_hull first (no job grows with the campaign)."
    )


class ConsensusSettings(BaseModel):
    """A second opinion before DFT: re-score the shortlist with other potentials and record their agreement."""

    model_config = _STRICT
    potentials: list[OpinionPotential] = Field(
        min_length=1, description="Potentials giving a second opinion (names, or {name, options, device})."
    )
    mode: Literal["single_point", "relax"] = Field(
        "single_point",
        description="single_point: one model call at the primary's relaxed structure; relax: each potential re-relaxes from it "
        "(FIRE + the campaign's cell filter, each potential's benchmarked fmax and steps).",
    )
    shortlist: ShortlistSettings = Field(default_factory=ShortlistSettings)
    statistic: Literal["median", "mean", "max"] = Field(
        "median", description="Consensus e_above_hull over the primary and the opinions: median, mean or max (most cautious)."
    )
    stable_rule: Literal["consensus", "all"] = Field(
        "consensus",
        description="is_stable_consensus: the consensus value is at most the threshold ('consensus'), or every model's is ('all').",
    )
    stability_threshold: float | None = Field(
        None, ge=0, description="Threshold of is_stable_consensus, eV/atom; None: the hull's stability_threshold."
    )
    chunk_size: int = Field(
        200, ge=1,
        description="Most candidates per scoring job (one job per potential and chunk; chunks split evenly). A single "
        "point costs one model call and loading a model several seconds, so chunks are large; relax mode may want fewer.",
    )

    @model_validator(mode="after")
    def _distinct(self):
        labels = [p.label for p in self.potentials]
        if len(set(labels)) != len(labels):
            raise ValueError(f"consensus.potentials lists a potential twice: {', '.join(labels)}")
        return self
