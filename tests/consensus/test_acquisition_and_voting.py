"""How second opinions vote, and how validation spends its budget with them (consensus ranking, exploration)."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure

from matris_flows.campaign.spec import SpecError, spec_from_dict
from matris_flows.consensus.voting import consensus_value, spread, stable_by_rule
from matris_flows.validation.selection import SelectionSettings, select_for_validation


def test_statistics_spread_and_rules():
    values = [0.03, -0.01, 0.08]
    assert consensus_value(values, "median") == pytest.approx(0.03)
    assert consensus_value(values, "mean") == pytest.approx(0.10 / 3)
    assert consensus_value(values, "max") == pytest.approx(0.08)
    assert consensus_value([], "median") is None
    assert spread(values) == pytest.approx(0.09) and spread([0.1]) is None
    assert stable_by_rule(values, 0.03, "consensus", 0.05) is True
    assert stable_by_rule(values, 0.03, "all", 0.05) is False  # one model says 0.08
    assert stable_by_rule([], None, "all", 0.05) is None
    with pytest.raises(ValueError, match="median, mean or max"):
        consensus_value(values, "mode")


def _candidate(candidate_id: str, species: tuple[str, str], primary: float, consensus: float, model_spread: float) -> dict:
    structure = Structure(Lattice.cubic(4.0), list(species), [[0, 0, 0], [0.5, 0.5, 0.5]])
    return {
        "candidate_id": candidate_id, "formula": structure.composition.reduced_formula,
        "chemsys": structure.composition.chemical_system, "structure": structure, "formation_energy_per_atom": -1.8,
        "e_above_hull": primary, "thermo_status": "ok", "relaxation": {"status": "converged"},
        "e_above_hull_consensus": consensus, "consensus_spread": model_spread,
    }


CANDIDATES = [
    _candidate("a", ("Na", "Cl"), 0.00, 0.04, 0.01),
    _candidate("b", ("K", "Br"), 0.03, 0.00, 0.02),
    _candidate("c", ("Li", "F"), 0.01, 0.02, 0.03),
    _candidate("d", ("Cs", "I"), 0.02, 0.03, 0.12),
    _candidate("e", ("Rb", "F"), 0.20, 0.04, 0.30),  # the primary puts it far off; the others near the hull
]


def test_primary_ranking_is_unchanged_by_second_opinions():
    result = select_for_validation(CANDIDATES, SelectionSettings(top_k=1, budget=2))
    assert result.selected_ids == ["a", "c"]
    assert result.reasons["a"].startswith("primary: rank 1 in Cl-Na by e_above_hull 0.000")
    assert "e_above_hull 0.2000 > 0.05" in result.skipped["e"]


def test_consensus_ranking_and_a_share_for_the_most_uncertain():
    result = select_for_validation(CANDIDATES, SelectionSettings(top_k=1, budget=4, acquisition="consensus"))
    assert result.selected_ids == ["b", "c", "d", "a"]  # by the consensus value; e (0.04 ties a) loses on the tie-break
    assert result.reasons["b"] == "consensus: rank 1 in Br-K by e_above_hull_consensus 0.000 eV/atom"

    explored = select_for_validation(
        CANDIDATES, SelectionSettings(top_k=1, budget=2, acquisition="consensus", explore_fraction=0.5)
    )
    # one pick by rank (b), one for the largest spread among the rest (e: 0.30 eV/atom)
    assert explored.selected_ids == ["b", "e"]
    assert explored.reasons["e"].startswith("uncertainty: consensus_spread 0.300")
    assert {"a", "c", "d"} <= set(explored.skipped)
    assert set(explored.selected_ids) | set(explored.skipped) == {c["candidate_id"] for c in CANDIDATES}


def test_spec_rules_for_consensus():
    base = {"name": "x", "generation": {"prototypes": {"element_lists": [["Li"], ["O"]], "prototypes": ["rocksalt"]}},
            "potential": {"name": "chgnet"}}
    spec = spec_from_dict(base | {"consensus": {"potentials": ["sevennet", {"name": "hienet", "device": "cpu"}]}})
    assert [p.label for p in spec.consensus.potentials] == ["sevennet", "hienet"]
    assert spec.consensus.mode == "single_point" and spec.consensus.shortlist.max_e_above_hull == 0.1
    with pytest.raises(SpecError, match="is the campaign's potential"):
        spec_from_dict(base | {"consensus": {"potentials": ["chgnet"]}})
    with pytest.raises(SpecError, match="lists a potential twice"):
        spec_from_dict(base | {"consensus": {"potentials": ["sevennet", "sevennet"]}})
    with pytest.raises(SpecError, match="need a consensus section"):
        spec_from_dict(base | {"validation": {"enabled": True, "acquisition": "consensus"}})
    with pytest.raises(SpecError, match="consensus.potentials"):
        spec_from_dict(base | {"consensus": {"potentials": []}})
