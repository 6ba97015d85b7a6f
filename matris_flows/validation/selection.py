"""Pick the candidates worth a DFT calculation: top-k per chemical system, deduplicated, on a budget."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry

from matris_flows.validation.utils import (
    CandidateLike,
    candidate_chemsys,
    candidate_field,
    candidate_relax_status,
    candidate_structure,
)


class SelectionSettings(BaseModel):
    """How many candidates go to DFT, and which."""

    top_k: int = Field(3, ge=1, description="Most candidates validated per chemical system.")
    max_e_above_hull: float = Field(
        0.05, description="Only candidates at or below this MLIP e_above_hull are validated, eV/atom."
    )
    budget: int | None = Field(None, ge=0, description="Most DFT validations in total; None for no cap.")
    allow_unconverged: bool = Field(
        False, description="Also validate candidates whose MLIP relaxation did not converge (relaxation.status)."
    )
    acquisition: Literal["primary", "consensus"] = Field(
        "primary",
        description="Rank by the primary model's e_above_hull, or by e_above_hull_consensus (the second opinions' "
        "statistic; a candidate without one keeps the primary's).",
    )
    explore_fraction: float = Field(
        0.0, ge=0, le=1,
        description="Share of the picks given to the candidates the models disagree on most (largest consensus_spread) "
        "among the eligible ones that ranking left out.",
    )
    deduplicate: bool = Field(True, description="Drop candidates matching a selected candidate or a reference.")
    ltol: float = Field(0.2, gt=0, description="StructureMatcher fractional length tolerance.")
    stol: float = Field(0.3, gt=0, description="StructureMatcher site tolerance.")
    angle_tol: float = Field(5.0, gt=0, description="StructureMatcher angle tolerance, degrees.")


@dataclass
class SelectionResult:
    """Candidates chosen for DFT, in validation order, and why the others were left out."""

    selected: list[Any] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    """Why each selected candidate was picked (the rule and its number)."""

    @property
    def selected_ids(self) -> list[str]:
        """Ids of the selected candidates, in order."""
        return [candidate_field(c, "candidate_id") for c in self.selected]


def _reference_structures_by_chemsys(
    references: Iterable[Structure | ComputedStructureEntry] | Mapping[str, Structure] | None,
) -> dict[str, list[tuple[str, Structure]]]:
    """Group reference structures (bare or inside entries) by chemical system, with a label each."""
    grouped: dict[str, list[tuple[str, Structure]]] = defaultdict(list)
    if references is None:
        return grouped
    items = references.items() if isinstance(references, Mapping) else enumerate(references)
    for key, ref in items:
        structure = ref.structure if isinstance(ref, ComputedStructureEntry) else ref
        if not isinstance(structure, Structure):  # entries without structures cannot be matched
            continue
        label = str(getattr(ref, "entry_id", None) or key)
        grouped[structure.composition.chemical_system].append((label, structure))
    return grouped


def ranking_value(candidate: CandidateLike | Mapping[str, Any], acquisition: str = "primary") -> float | None:
    """The e_above_hull a candidate is ranked by: the consensus value under 'consensus' where it has one, else the primary's."""
    if acquisition == "consensus":
        value = candidate_field(candidate, "e_above_hull_consensus")
        if value is not None:
            return value
    return candidate_field(candidate, "e_above_hull")


def _sort_key(candidate: CandidateLike | Mapping[str, Any], acquisition: str = "primary") -> tuple[float, float, str]:
    """Most promising first; ties broken by formation energy, then id, so the order is reproducible."""
    formation = candidate_field(candidate, "formation_energy_per_atom")
    return (
        ranking_value(candidate, acquisition),
        formation if formation is not None else 0.0,
        str(candidate_field(candidate, "candidate_id")),
    )


def select_for_validation(
    candidates: Sequence[CandidateLike | Mapping[str, Any]],
    settings: SelectionSettings | None = None,
    reference_structures: Iterable[Structure | ComputedStructureEntry] | Mapping[str, Structure] | None = None,
) -> SelectionResult:
    """Choose the candidates to validate with DFT.

    Per chemical system, candidates with a successful hull result, a converged relaxation
    (unless ``settings.allow_unconverged``) and ``e_above_hull <= settings.max_e_above_hull``
    are ranked by e_above_hull; a candidate
    that ``StructureMatcher`` matches to a better-ranked candidate or to a reference
    structure is dropped; the first ``top_k`` survivors are kept. The budget is then spent
    rank by rank across systems (every system's best candidate before any second-best),
    systems in order of their best e_above_hull, so a tight budget still covers the most
    systems. Deterministic for a given input.

    With ``acquisition='consensus'`` the ranking value is ``e_above_hull_consensus`` (the
    primary's where a candidate has none). ``explore_fraction`` of the picks (rounded, at
    least one when it is above zero and a candidate qualifies) go to the eligible candidates
    ranking left out with the largest ``consensus_spread``: where the models disagree, DFT
    teaches the most. Every pick's reason is in ``reasons``.

    Args:
        candidates: Hull-stage candidate documents (objects or dicts).
        settings: Selection settings; defaults to :class:`SelectionSettings`.
        reference_structures: Known phases (e.g. MP entries) to deduplicate against.

    Returns:
        The selected candidates in validation order and, for each left-out candidate, why.
    """
    settings = settings or SelectionSettings()
    skipped: dict[str, str] = {}
    by_chemsys: dict[str, list[Any]] = defaultdict(list)
    for candidate in candidates:
        cid = str(candidate_field(candidate, "candidate_id"))
        status = candidate_field(candidate, "thermo_status", "ok")
        e_hull = ranking_value(candidate, settings.acquisition)
        if status != "ok" or e_hull is None:
            skipped[cid] = f"no hull result (thermo_status={str(status)!r})"
        elif candidate_field(candidate, "structure") is None:
            skipped[cid] = "no relaxed structure"
        elif not settings.allow_unconverged and candidate_relax_status(candidate) == "not_converged":
            # An unconverged structure's energy is not a minimum: DFT on it says little about the candidate.
            skipped[cid] = "MLIP relaxation not converged (allow_unconverged is off)"
        elif e_hull > settings.max_e_above_hull:
            skipped[cid] = f"e_above_hull {e_hull:.4f} > {settings.max_e_above_hull} eV/atom"
        else:
            by_chemsys[candidate_chemsys(candidate)].append(candidate)

    references = _reference_structures_by_chemsys(reference_structures)
    matcher = StructureMatcher(ltol=settings.ltol, stol=settings.stol, angle_tol=settings.angle_tol)
    ranked: dict[str, list[Any]] = {}
    left_out: list[Any] = []  # eligible and unique, beyond top_k: what exploration picks from
    explore = settings.explore_fraction > 0

    def sort_key(candidate):
        return _sort_key(candidate, settings.acquisition)

    for chemsys in sorted(by_chemsys):
        kept: list[tuple[str, Structure, Any]] = []
        for candidate in sorted(by_chemsys[chemsys], key=sort_key):
            cid = str(candidate_field(candidate, "candidate_id"))
            if len(kept) >= settings.top_k and not explore:
                skipped[cid] = f"beyond top_k={settings.top_k} in {chemsys}"
                continue
            structure = candidate_structure(candidate)
            duplicate_of = None
            if settings.deduplicate:
                for label, other in [(k[0], k[1]) for k in kept] + references.get(chemsys, []):
                    # The composition check first: the matcher is the expensive part.
                    if other.composition.reduced_composition == structure.composition.reduced_composition and (
                        matcher.fit(structure, other)
                    ):
                        duplicate_of = label
                        break
            if duplicate_of is not None:
                skipped[cid] = f"duplicate of {duplicate_of}"
                continue
            kept.append((cid, structure, candidate))
        ranked[chemsys] = [k[2] for k in kept[: settings.top_k]]
        left_out += [k[2] for k in kept[settings.top_k :]]

    systems = sorted(ranked, key=lambda cs: (sort_key(ranked[cs][0]) if ranked[cs] else (float("inf"),), cs))
    ordered = [
        ranked[cs][rank] for rank in range(settings.top_k) for cs in systems if rank < len(ranked[cs])
    ]
    rank_in_system = {str(candidate_field(c, "candidate_id")): (cs, k + 1) for cs in systems for k, c in enumerate(ranked[cs])}
    budget = len(ordered) if settings.budget is None else settings.budget
    n_explore = 0
    if explore:
        # uncertain candidates take their share of the budget from the end of the ranked list
        left_out += ordered[budget:]
        uncertain = [c for c in left_out if candidate_field(c, "consensus_spread") is not None]
        n_explore = min(len(uncertain), max(1, round(settings.explore_fraction * budget))) if budget else 0
        uncertain.sort(key=lambda c: (-candidate_field(c, "consensus_spread"), str(candidate_field(c, "candidate_id"))))
        explored = uncertain[:n_explore]
        picked = ordered[: budget - n_explore] + explored
        left = [c for c in ordered[budget - n_explore :] + left_out if all(c is not p for p in picked)]
    else:
        picked, left = ordered[:budget], ordered[budget:]
    value_name = "e_above_hull_consensus" if settings.acquisition == "consensus" else "e_above_hull"
    reasons: dict[str, str] = {}
    for k, candidate in enumerate(picked):
        cid = str(candidate_field(candidate, "candidate_id"))
        if k >= len(picked) - n_explore:
            reasons[cid] = (
                f"uncertainty: consensus_spread {candidate_field(candidate, 'consensus_spread'):.3f} eV/atom, "
                f"{k - (len(picked) - n_explore) + 1} of {n_explore} explored"
            )
        else:
            chemsys, rank = rank_in_system[cid]
            has_consensus = candidate_field(candidate, "e_above_hull_consensus") is not None
            used = value_name if settings.acquisition == "primary" or has_consensus else "e_above_hull (no consensus)"
            value = ranking_value(candidate, settings.acquisition)
            reasons[cid] = f"{settings.acquisition}: rank {rank} in {chemsys} by {used} {value:.3f} eV/atom"
        skipped.pop(cid, None)
    for candidate in left:
        cid = str(candidate_field(candidate, "candidate_id"))
        if cid not in reasons:
            skipped[cid] = (f"over the DFT budget of {budget}" if cid in rank_in_system
                            else f"beyond top_k={settings.top_k} in {candidate_chemsys(candidate)}")
    return SelectionResult(selected=picked, skipped=skipped, reasons=reasons)
