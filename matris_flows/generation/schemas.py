"""Documents of the generation stage: candidates, rejections and the campaign report.

Every field is described because these documents are what lands in the database and
what the relaxation, hull and validation stages key on (``candidate_id``).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from matris_flows.core.serialization import JsonStructure


class SourceMethod(StrEnum):
    """Which generator proposed a candidate."""

    SUBSTITUTION = "substitution"
    PROTOTYPE = "prototype"
    RANDOM_SEARCH = "random_search"
    FILE = "file"


class RejectionReason(StrEnum):
    """Why a structure or an input did not become a candidate."""

    DUPLICATE = "duplicate"
    """Matches a candidate accepted earlier in the same campaign."""
    DUPLICATE_OF_REFERENCE = "duplicate_of_reference"
    """Matches a reference entry (a known phase) of its chemical system."""
    INVALID_STRUCTURE = "invalid_structure"
    """Not a crystal: non-finite numbers, a degenerate or absurd cell, no sites, or sites that are no element."""
    MIN_DISTANCE = "min_distance"
    DENSITY = "density"
    MAX_ATOMS = "max_atoms"
    UNSUPPORTED_ELEMENT = "unsupported_element"
    NOT_CHARGE_BALANCED = "not_charge_balanced"
    PARTIAL_OCCUPANCY = "partial_occupancy"
    UNPARSEABLE = "unparseable"
    INVALID_INPUT = "invalid_input"
    """Empty element lists, unknown elements, impossible compositions, bad templates."""
    NO_VALID_SPACE_GROUP = "no_valid_space_group"
    GENERATION_FAILED = "generation_failed"
    CRASHED = "crashed"
    """Generating or checking it killed, hung or overfilled the (isolated) process: native code could not handle it."""


class Provenance(BaseModel):
    """Where a candidate came from; enough to regenerate it."""

    model_config = ConfigDict(extra="forbid")

    source: SourceMethod = Field(description="Generator that proposed the candidate.")
    parent_id: str | None = Field(
        None, description="Template the candidate derives from: MP entry id, file path[#index] or prototype name."
    )
    substitution: dict[str, str] | None = Field(
        None, description="Ionic substitution applied, {old species: new species}, e.g. {'Li+': 'Na+'}."
    )
    substitution_probability: float | None = Field(
        None, description="Hautier data-mined probability of the substitution (pymatgen SubstitutionPredictor)."
    )
    substituted_fraction: float | None = Field(
        None, description="Fraction of the substituted site class that was replaced (1 = full substitution)."
    )
    prototype: str | None = Field(None, description="Prototype name for decorated prototypes (rocksalt, spinel, ...).")
    decoration: dict[str, str] | None = Field(None, description="Prototype site label -> element.")
    spacegroup: int | None = Field(None, description="Space group requested from pyxtal.")
    formula_units: int | None = Field(None, description="Formula units per conventional cell requested from pyxtal.")
    seed: int | None = Field(None, description="Random seed given to pyxtal.")
    file_path: str | None = Field(None, description="File the structure was read from.")
    file_index: int | None = Field(None, description="Index of the structure within a multi-structure file.")
    ordering: str | None = Field(
        None, description="How a disordered input was ordered (e.g. 'ewald_rank_0'), None if it was ordered already."
    )


class CandidateIdentity(BaseModel):
    """Which candidate structure a document is about: the fields the stages join and group their documents on."""

    candidate_id: str = Field(
        description="Stable id: short SHA-256 of the rounded structure and its provenance (the key later stages join on)."
    )
    formula: str = Field(description="Reduced formula.")
    chemsys: str = Field(description="Chemical system, elements sorted and joined by '-'.")
    nsites: int = Field(description="Number of sites in the cell.")


class Candidate(CandidateIdentity):
    """One candidate structure handed to the relaxation stage."""

    structure: JsonStructure = Field(description="Ordered candidate structure, element species (no oxidation states).")
    provenance: Provenance = Field(description="Source method, parent template and generation parameters.")


class RejectedCandidate(BaseModel):
    """A structure or an input that was dropped, with the reason; nothing is lost silently."""

    reason: RejectionReason = Field(description="Why it was dropped.")
    message: str = Field(description="Human-readable explanation naming the input.")
    input_name: str | None = Field(None, description="The input at fault: file path, composition, element list, template id.")
    candidate_id: str | None = Field(None, description="Id the structure would have had, when one was built.")
    formula: str | None = Field(None, description="Reduced formula, when a structure was built.")
    duplicate_of: str | None = Field(
        None, description="candidate_id (or reference entry id) of the structure it duplicates."
    )
    provenance: Provenance | None = Field(None, description="Provenance of the dropped structure, when one was built.")
    structure: JsonStructure | None = Field(
        None, description="The dropped structure for sanity-filter failures (None for duplicates and bad inputs)."
    )


class GenerationReport(BaseModel):
    """Counts and reasons for a generation run (cumulative over chunks when streamed)."""

    n_proposed: int = Field(0, description="Structures proposed by all sources, before filters and dedup.")
    n_accepted: int = Field(0, description="Candidates kept.")
    n_rejected: int = Field(0, description="Structures and inputs dropped (sum of rejected_counts).")
    n_input_errors: int = Field(0, description="Inputs that produced no structure (bad files, impossible compositions).")
    accepted_by_source: dict[str, int] = Field(default_factory=dict, description="Accepted candidates per source method.")
    rejected_counts: dict[str, int] = Field(default_factory=dict, description="Rejections per reason.")
    rejected: list[RejectedCandidate] = Field(
        default_factory=list, description="Rejections with reasons (truncated at max_recorded_rejections; counts are exact)."
    )
    n_rejected_not_recorded: int = Field(
        0, description="Rejections counted but not kept in 'rejected' (the record limit was reached)."
    )

    def record(self, rejection: RejectedCandidate, max_recorded: int | None = None) -> None:
        """Count a rejection and keep it unless the record limit is reached."""
        key = rejection.reason.value
        self.rejected_counts[key] = self.rejected_counts.get(key, 0) + 1
        self.n_rejected += 1
        if rejection.reason in _INPUT_ERRORS:
            self.n_input_errors += 1
        else:
            self.n_proposed += 1
        if max_recorded is None or len(self.rejected) < max_recorded:
            self.rejected.append(rejection)
        else:
            self.n_rejected_not_recorded += 1

    def accept(self, candidate: Candidate) -> None:
        """Count an accepted candidate."""
        self.n_proposed += 1
        self.n_accepted += 1
        key = candidate.provenance.source.value
        self.accepted_by_source[key] = self.accepted_by_source.get(key, 0) + 1


_INPUT_ERRORS = frozenset(
    {
        RejectionReason.UNPARSEABLE,
        RejectionReason.INVALID_INPUT,
        RejectionReason.NO_VALID_SPACE_GROUP,
        RejectionReason.GENERATION_FAILED,
        RejectionReason.PARTIAL_OCCUPANCY,
    }
)


class GenerationOutput(BaseModel):
    """Output of a non-streamed generation job: all candidates and the report."""

    candidates: list[Candidate] = Field(description="Accepted candidates in deterministic order.")
    report: GenerationReport = Field(description="Counts and reasons.")


class CandidateChunk(BaseModel):
    """One relaxation job's worth of candidates (what the chunk's downstream jobs reference)."""

    candidate_ids: list[str] = Field(description="Candidate ids, in order.")
    structures: list[JsonStructure] = Field(description="Candidate structures, in the same order.")
    provenance: list[Provenance] = Field(description="Generation provenance of each candidate, in the same order.")


class GenerationPlan(BaseModel):
    """Output of the planning job: how the campaign's work units are split into shards."""

    n_units: list[int] = Field(description="Work units per source, in source order.")
    n_shards: int = Field(description="Number of generation shards (one job each).")
    units_per_shard: int = Field(description="Consecutive work units per shard (the last one may have fewer).")
    chunk_size: int = Field(description="Largest number of candidates per relaxation job.")
    parallelism: int = Field(description="Workers the chunks are sized for.")


class GenerationShard(BaseModel):
    """Output of one generation shard: its candidates in relaxation chunks, and its own report.

    Shards never share state: duplicates are removed within a shard (a shard holds whole
    work units), and across shards after relaxation, per chemical system.
    """

    shard_index: int = Field(description="0-based index of this shard.")
    units: tuple[int, int] = Field(
        description="Positions [start, stop) of this shard's work units in the plan's listing (the units themselves "
        "were handed to the shard job when the campaign was planned)."
    )
    n_candidates: int = Field(description="Candidates accepted in this shard.")
    chunks: list[CandidateChunk] = Field(
        description="Candidates split into relaxation chunks (kept in the 'data' store: never in the output document)."
    )
    report: GenerationReport = Field(description="Counts and (a bounded sample of) rejections of this shard only.")
