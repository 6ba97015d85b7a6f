"""Selection of candidates for DFT: threshold, top-k, deduplication, budget, determinism."""

from __future__ import annotations

from pymatgen.core import Lattice, Structure
from validation_helpers import make_candidate

from matris_flows.validation.selection import SelectionSettings, select_for_validation


def _rocksalt(a: float, species=("Na", "Cl")) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), list(species), [[0, 0, 0], [0.5, 0.5, 0.5]])


def _cscl(a: float, species=("Na", "Cl")) -> Structure:
    return Structure(Lattice.cubic(a), list(species), [[0, 0, 0], [0.5, 0.5, 0.5]])


def _zincblende(a: float, species=("Na", "Cl")) -> Structure:
    return Structure.from_spacegroup("F-43m", Lattice.cubic(a), list(species), [[0, 0, 0], [0.25, 0.25, 0.25]])


def test_threshold_dedup_topk_budget(nacl_reference_entries):
    candidates = [
        make_candidate("nacl-cscl", _cscl(3.40), 0.030),
        make_candidate("nacl-rs-dup", _rocksalt(5.62), 0.000),  # the MP reference, re-found
        make_candidate("nacl-cscl-dup", _cscl(3.45), 0.031),  # same as nacl-cscl
        make_candidate("nacl-zb", _zincblende(6.1), 0.045),
        make_candidate("nacl-high", _zincblende(6.3), 0.200),
        make_candidate("nacl-no-hull", _cscl(3.3), None, thermo_status="failed"),
        make_candidate("kbr-cscl", _cscl(4.0, ("K", "Br")), 0.010),
        make_candidate("kbr-zb", _zincblende(7.0, ("K", "Br")), 0.020),
    ]
    settings = SelectionSettings(top_k=2, max_e_above_hull=0.05, budget=3)
    result = select_for_validation(candidates, settings, nacl_reference_entries)

    # Rank-major across systems: each system's best first (KBr's is better), then second-bests.
    assert result.selected_ids == ["kbr-cscl", "nacl-cscl", "kbr-zb"]
    assert result.skipped["nacl-rs-dup"] == "duplicate of ref-NaCl"
    assert result.skipped["nacl-cscl-dup"] == "duplicate of nacl-cscl"
    assert "over the DFT budget" in result.skipped["nacl-zb"]
    assert "e_above_hull" in result.skipped["nacl-high"]
    assert "no hull result" in result.skipped["nacl-no-hull"]
    assert set(result.selected_ids) | set(result.skipped) == {c.candidate_id for c in candidates}

    # Deterministic: input order does not matter; dicts work like documents.
    again = select_for_validation([c.model_dump() for c in reversed(candidates)], settings, nacl_reference_entries)
    assert again.selected_ids == result.selected_ids


def test_top_k_without_budget():
    candidates = [make_candidate(f"c{i}", _cscl(3.3 + 0.4 * i), 0.01 * i) for i in range(4)]
    result = select_for_validation(candidates, SelectionSettings(top_k=2, deduplicate=False))
    assert result.selected_ids == ["c0", "c1"]
    assert result.skipped == {"c2": "beyond top_k=2 in Cl-Na", "c3": "beyond top_k=2 in Cl-Na"}


def test_unconverged_relaxations_are_not_selected_unless_allowed():
    candidates = [
        make_candidate("ok", _cscl(3.40), 0.010),
        make_candidate("unconverged", _zincblende(6.1), -0.050, relax_status="not_converged"),  # looks best
    ]
    result = select_for_validation(candidates, SelectionSettings(top_k=2))
    assert result.selected_ids == ["ok"]
    assert result.skipped == {"unconverged": "MLIP relaxation not converged (allow_unconverged is off)"}
    # Dicts from the candidates store (status as a plain string) are read the same way.
    assert select_for_validation([c.model_dump() for c in candidates], SelectionSettings(top_k=2)).selected_ids == ["ok"]
    allowed = select_for_validation(candidates, SelectionSettings(top_k=2, allow_unconverged=True))
    assert allowed.selected_ids == ["unconverged", "ok"]
