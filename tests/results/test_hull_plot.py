"""Hull plots of Li-O and Li-Fe-O with the candidates on them."""

import pytest
from pymatgen.analysis.phase_diagram import PDPlotter

from matris_flows.results import hull_phase_diagram, plot_hull
from matris_flows.results.plot import candidate_points


def _by_id(docs):
    return {d["candidate_id"]: d for d in docs}


def test_binary_phase_diagram_holds_candidates(docs, lfo_entries):
    pd, candidates = hull_phase_diagram("O-Li", docs, lfo_entries)
    assert sorted(e.entry_id for e in candidates) == ["c02", "c05"]
    assert {e.entry_id for e in pd.all_entries} >= {"c02", "c05"}
    by_id = _by_id(docs)
    for entry in candidates:
        # no candidate lowers the Li-O hull, so the plotted hull is the reference one
        assert pd.get_e_above_hull(entry) == pytest.approx(by_id[entry.entry_id]["e_above_hull"], abs=1e-6)
        assert pd.get_form_energy_per_atom(entry) == pytest.approx(
            by_id[entry.entry_id]["formation_energy_per_atom"], abs=1e-6
        )


def test_ternary_phase_diagram_holds_candidates(docs, lfo_entries):
    pd, candidates = hull_phase_diagram("Li-Fe-O", docs, lfo_entries)
    # failed (c08) and out-of-system (c09) candidates are left out
    assert sorted(e.entry_id for e in candidates) == ["c01", "c02", "c03", "c04", "c05", "c06", "c07"]
    by_id = _by_id(docs)
    entries = {e.entry_id: e for e in candidates}
    # c01 is below the MP hull: on the plotted hull it is a vertex
    assert entries["c01"] in pd.stable_entries
    assert pd.get_e_above_hull(entries["c01"]) == pytest.approx(0.0, abs=1e-9)
    # the plotted hull is the campaign hull: references plus every candidate
    for cid, entry in entries.items():
        assert pd.get_e_above_hull(entry) == pytest.approx(by_id[cid]["e_above_hull_campaign"], abs=1e-6)
    # candidates on the Li-O and Fe-O edges keep their reference-hull e_above_hull (c01 is ternary)
    for cid in ("c02", "c03", "c05", "c06"):
        assert pd.get_e_above_hull(entries[cid]) == pytest.approx(by_id[cid]["e_above_hull"], abs=1e-6)
    # an interior candidate sits higher above a hull that c01 has lowered
    assert pd.get_e_above_hull(entries["c07"]) > by_id["c07"]["e_above_hull"] + 1e-3
    # drawn points: everything within show_unstable=0.2 eV/atom, so not FeO (c06, 0.3)
    plotter = PDPlotter(pd, show_unstable=0.2, backend="matplotlib")
    assert len(candidate_points(plotter, candidates)) == 6


@pytest.mark.parametrize(("chemsys", "suffix"), [("Li-O", "png"), ("Li-Fe-O", "png"), ("Fe-O-Li", "svg")])
def test_plot_hull_writes_file(docs, lfo_entries, tmp_path, chemsys, suffix):
    path = plot_hull(chemsys, docs, lfo_entries, tmp_path / "plots" / f"hull.{suffix}")
    assert path == tmp_path / "plots" / f"hull.{suffix}"
    assert path.stat().st_size > 10_000
    head = path.read_bytes()[:200]
    assert head.startswith(b"\x89PNG") if suffix == "png" else b"<svg" in path.read_bytes()[:2000] or b"<?xml" in head


def test_plot_hull_rejects_bad_requests(docs, lfo_entries, tmp_path):
    with pytest.raises(ValueError, match="use one of"):
        plot_hull("Li-O", docs, lfo_entries, tmp_path / "hull.gif")
    with pytest.raises(ValueError, match="2 to 4 elements"):
        plot_hull("Li", docs, lfo_entries, tmp_path / "hull.png")
