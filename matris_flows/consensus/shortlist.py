"""The shortlist: per chemical system, the candidates nearest the primary model's reference hull, bounded."""

from __future__ import annotations

from typing import Any

from maggma.core import Store

from matris_flows.consensus.settings import ShortlistSettings
from matris_flows.thermo.schemas import ThermoStatus

SHORTLIST_FIELDS = [
    "candidate_id", "campaign", "chemsys", "formula", "thermo_status", "duplicate_of", "e_above_hull",
    "e_above_hull_campaign", "energy_per_atom", "hull_kind", "relaxation.converged", "relaxation.status", "relaxation.potential",
]


def input_fingerprint(energy_per_atom: float | None) -> str:
    """The primary's energy, as the opinions record what they were scored after (a re-relaxed candidate is rescored)."""
    return "none" if energy_per_atom is None else f"{energy_per_atom:.6f}"


def shortlist_systems(candidates: Store, campaign: str | None) -> list[str]:
    """Chemical systems of the campaign, fewest elements first (a system's subsystems come before it)."""
    systems = candidates.distinct("chemsys", {} if campaign is None else {"campaign": campaign})
    return sorted(systems, key=lambda s: (len(s.split("-")), s))


def shortlisted(
    candidates: Store, chemsys: str, settings: ShortlistSettings, campaign: str | None, properties: list[str] | None = None
) -> list[dict[str, Any]]:
    """Assessed, non-duplicate candidates of ``chemsys`` within ``settings.max_e_above_hull`` (primary, reference
    hull), lowest first, at most ``settings.max_per_system``.

    Selected by the indexed ``chemsys`` and ``e_above_hull`` only (few rows match both); the
    campaign, status and duplicate tests are applied here, as the campaign hull does.
    """
    fields = sorted({*SHORTLIST_FIELDS, *(properties or [])})
    docs = candidates.query(
        {"chemsys": chemsys, "e_above_hull": {"$lte": settings.max_e_above_hull}},
        properties=fields,
        sort={"e_above_hull": 1, "candidate_id": 1},
    )
    chosen = []
    for doc in docs:
        if campaign is not None and doc.get("campaign") != campaign:
            continue
        if doc.get("thermo_status") != ThermoStatus.OK.value or doc.get("duplicate_of") is not None:
            continue
        doc.pop("_id", None)
        chosen.append(doc)
        if len(chosen) >= settings.max_per_system:
            break
    return chosen
