"""Hull pictures read from a campaign store: Li-O, Li-Fe-O and Li-Fe-P-O with the known candidate set on them."""

import re
from contextlib import contextmanager
from functools import cache
from types import SimpleNamespace

import matplotlib.pyplot as plt
import pytest
from maggma.stores import MemoryStore
from pymatgen.analysis.phase_diagram import PhaseDiagram
from reference_data import shared_data_dir
from results_dataset import candidate_docs, reference_entries

import matris_flows.campaign.reading as reading_module
from matris_flows.cli import main
from matris_flows.results.hull_data import hull_data
from matris_flows.results.hull_matplotlib import hull_figure, plot_hull
from matris_flows.results.hull_plotly import write_hull_html
from matris_flows.thermo.references import LocalFileReferences

CAMPAIGN = "alpha"


def reference_docs(entries) -> list[dict]:
    """One document per reference phase, as the campaign hull step stores them."""
    pd = PhaseDiagram(entries)
    docs = []
    for entry in pd.all_entries:
        elements = sorted(el.symbol for el in entry.composition.elements)
        e_hull = pd.get_e_above_hull(entry, allow_negative=True)
        docs.append({
            "reference_id": f"{CAMPAIGN}:{entry.entry_id}", "campaign": CAMPAIGN, "entry_id": entry.entry_id,
            "material_id": entry.data.get("material_id"), "formula": entry.composition.reduced_formula,
            "chemsys": "-".join(elements), "elements": elements,
            "formation_energy_per_atom": pd.get_form_energy_per_atom(entry), "e_above_hull": e_hull,
            "is_stable": e_hull <= 1e-6,
        })
    return docs


@cache
def _lfo_references() -> list[dict]:
    return reference_docs(reference_entries())


@cache
def _lfpo_references() -> list[dict]:
    return reference_docs(LocalFileReferences([shared_data_dir() / "mp_chemsys" / "Li-Fe-P-O.json.gz"]).get_entries("Li-Fe-P-O"))


def _candidates() -> list[dict]:
    """The dataset's candidates in one campaign, c01 (below the MP hull) also stable on the campaign hull."""
    docs = []
    for doc in candidate_docs():
        doc = {**doc, "campaign": CAMPAIGN, "hull_kind": "mp" if doc["thermo_status"] == "ok" else None}
        doc["is_stable_campaign"] = doc["candidate_id"] == "c01"
        docs.append(doc)
    return docs


def _memory_store(name: str, key: str, docs: list[dict]) -> MemoryStore:
    store = MemoryStore(collection_name=name, key=key)
    store.connect()
    store.update(docs, key=key)
    return store


@pytest.fixture
def stores():
    """candidates + references collections of one campaign, as plot_campaign reads them."""
    candidates = _memory_store("candidates", "candidate_id", _candidates())
    references = _memory_store("references", "reference_id", _lfpo_references())
    yield SimpleNamespace(candidates=candidates, references=references)
    candidates.close()
    references.close()


@pytest.fixture
def campaign_dir(stores, tmp_path, monkeypatch):
    """A campaign directory whose stores are the MemoryStores (plot_campaign's own queries run on them)."""

    @contextmanager
    def opened(store):
        yield store

    monkeypatch.setattr(reading_module, "load_spec", lambda _path: SimpleNamespace(name=CAMPAIGN))
    monkeypatch.setattr(reading_module, "open_candidates", lambda _d: opened(stores.candidates))
    monkeypatch.setattr(reading_module, "open_references", lambda _d: opened(stores.references))
    return tmp_path


def _stable_in(references: list[dict], elements: set[str]) -> set[str]:
    return {d["formula"] for d in references if d["is_stable"] and set(d["elements"]) <= elements}


def _figure(chemsys: str, candidates: list[dict], references: list[dict]):
    data = hull_data(chemsys, candidates, references)
    return data, hull_figure(data)


def _by_gid(figure, gid: str) -> list:
    return [a for a in figure.findobj() if getattr(a, "get_gid", lambda: None)() == gid]


def _n_points(figure, gid: str) -> int:
    return sum(len(c.get_offsets()) for c in _by_gid(figure, gid))


@pytest.mark.parametrize("chemsys", ["O-Li", "Li-Fe-O", "Fe-Li-O-P"])
def test_picture_shows_the_stored_hull_and_candidates(chemsys):
    references, candidates = _lfpo_references(), _candidates()
    elements = set(chemsys.split("-"))
    data, figure = _figure(chemsys, candidates, references)
    try:
        stable = _stable_in(references, elements)
        # every stable reference phase (elements included) is drawn and labelled once
        assert {p.formula for p in data.stable_references} == stable
        labels = [t.get_text() for t in _by_gid(figure, "reference-label")]
        assert len(labels) == len(stable) and all(label for label in labels)
        assert _n_points(figure, "stable-references") == len(stable)
        # candidates: only those with energies, within the system (NaCl, the failed LiFeO2 and,
        # for Li-O, the iron compounds are not drawn)
        expected = {"O-Li": {"c02", "c05"}}.get(chemsys, {"c01", "c02", "c03", "c04", "c05", "c06", "c07"})
        assert {p.ident for p in data.candidates} == expected
        assert _n_points(figure, "candidates") + _n_points(figure, "stable-candidates") == len(expected)
        # stars for is_stable: Li2O2 (on the hull), LiFeO2 (below it) where it is in the system
        assert _n_points(figure, "stable-candidates") == len({"c01", "c05"} & expected)
        # colour bar of the candidates' e_above_hull, clipped to 0 .. 0.2 eV/atom
        (candidates_scatter,) = _by_gid(figure, "candidates")
        colorbar = candidates_scatter.colorbar
        assert colorbar is not None and "above" in colorbar.ax.get_ylabel()
        assert (candidates_scatter.norm.vmin, candidates_scatter.norm.vmax) == (0.0, 0.2)
        assert "MP reference hull" in figure.axes[0].get_title()
        assert _by_gid(figure, "hull") and len(_by_gid(figure, "hull")[0].get_segments()) == len(data.hull_edges) > 0
    finally:
        plt.close(figure)


def test_labels_do_not_overlap():
    references, candidates = _lfpo_references(), _candidates()
    for chemsys in ("Li-O", "Fe-Li-O"):
        _, figure = _figure(chemsys, candidates, references)
        try:
            renderer = figure.canvas.get_renderer()
            labels = [*_by_gid(figure, "reference-label"), *_by_gid(figure, "candidate-label")]
            boxes = [plt.Text.get_window_extent(t, renderer) for t in labels]
            for i, a in enumerate(boxes):
                for b in boxes[i + 1:]:
                    assert not a.overlaps(b), chemsys
        finally:
            plt.close(figure)


def test_campaign_hull_is_dashed_only_where_candidates_change_it():
    # c01 deepens LiFeO2's vertex: the binary Li-O hull is unchanged, the ternary tie lines are too
    assert hull_data("Li-Fe-O", _candidates(), _lfo_references()).campaign_hull_edges == []
    # a made-up Li3O2 far below the hull adds a vertex to the Li-O hull
    deep = {**_candidates()[1], "candidate_id": "deep", "formula": "Li3O2", "formation_energy_per_atom": -2.5}
    data = hull_data("Li-O", [deep], _lfo_references())
    vertices = {round(p[0], 6) for edge in data.campaign_hull_edges for p in edge}
    assert 0.6 in vertices  # Li3O2: x(Li) = 0.6


def test_campaign_internal_hull_is_drawn_from_the_candidates():
    elements_only = [d for d in _lfo_references() if len(d["elements"]) == 1 and d["is_stable"]]
    candidates = [{**d, "hull_kind": "campaign_internal"} for d in _candidates()]
    data = hull_data("Li-O", candidates, elements_only)
    assert data.hull_kind == "campaign_internal"
    assert {p.formula for p in data.stable_references} == {"Li", "O2"}
    # the drawn hull passes through the candidates (Li2O, Li2O2), not only the elements
    assert len(data.hull_edges) == 3
    assert data.candidates[0].e_above_hull == pytest.approx(
        next(d for d in candidates if d["candidate_id"] == data.candidates[0].ident)["e_above_hull_campaign"]
    )


@pytest.mark.parametrize(("chemsys", "suffix"), [("Li-O", "png"), ("Li-Fe-O", "png"), ("Fe-Li-O-P", "png"), ("Li-Fe-O", "svg")])
def test_plot_campaign_writes_pictures_from_the_store(campaign_dir, tmp_path, chemsys, suffix):
    path = reading_module.plot_campaign(campaign_dir, chemsys, tmp_path / "plots" / f"hull.{suffix}")
    assert path == tmp_path / "plots" / f"hull.{suffix}"
    data = path.read_bytes()
    assert len(data) > 20_000
    assert data.startswith(b"\x89PNG") if suffix == "png" else b"<svg" in data[:2000]


def test_plot_campaign_writes_interactive_html(campaign_dir, tmp_path):
    html = tmp_path / "hull.html"
    assert reading_module.plot_campaign(campaign_dir, "Fe-Li-O", html=html) == html
    text = html.read_text()
    assert "plotly" in text and "scatterternary" in text
    assert len(text) > 1_000_000  # plotly.js embedded: opens offline
    # hover texts name the candidates; NaCl (outside the system) is not in it (the ids as hover lines:
    # plotly's random div ids may hold any three hex digits)
    hover_ids = set(re.findall(r"br(?:>|\\u003e)(c\d\d)(?:<|\\u003c)br", text))  # "<br>" is JSON-escaped in the page
    assert "c01" in hover_ids and "c09" not in hover_ids


def test_write_hull_html_binary_and_quaternary(tmp_path):
    for chemsys, trace in (("Li-O", '"type":"scatter"'), ("Fe-Li-O-P", '"type":"scatter3d"')):
        path = write_hull_html(hull_data(chemsys, _candidates(), _lfpo_references()), tmp_path / f"{chemsys}.html")
        assert trace in path.read_text().replace(" ", "")


def test_cli_plot(campaign_dir, tmp_path, capsys):
    png, html = tmp_path / "hull.png", tmp_path / "hull.html"
    assert main(["plot", str(campaign_dir), "--chemsys", "Li-O", "--out", str(png), "--html", str(html)]) == 0
    assert png.stat().st_size > 10_000 and html.stat().st_size > 100_000
    assert capsys.readouterr().out.splitlines() == [f"wrote {png}", f"wrote {html}"]


@pytest.mark.parametrize(
    ("chemsys", "message"),
    [
        ("Zr-Qq", "invalid chemical system 'Zr-Qq': Qq is not an element"),
        ("Li", "2 to 4 elements"),
        ("Fe-Li-Mn-O-P", "plot a subsystem"),
    ],
)
def test_cli_bad_chemsys_is_one_line(tmp_path, capsys, chemsys, message):
    assert main(["plot", str(tmp_path), "--chemsys", chemsys, "--out", str(tmp_path / "hull.png")]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert "Traceback" not in captured.err and not (tmp_path / "hull.png").exists()


def test_bad_requests(tmp_path, campaign_dir, stores):
    with pytest.raises(ValueError, match="use one of"):
        plot_hull("Li-O", _candidates(), _lfo_references(), tmp_path / "hull.gif")
    # nothing recorded for the system: say so rather than draw an empty hull
    stores.references.remove_docs({})
    with pytest.raises(ValueError, match="no reference phases within Li-O"):
        reading_module.plot_campaign(campaign_dir, "Li-O", tmp_path / "hull.png")


def test_candidates_of_one_composition_show_the_lowest_on_top_with_a_count():
    references = _lfpo_references()
    base = next(d for d in _candidates() if d["candidate_id"] == "c03")
    # three polymorphs of one composition, listed lowest first: drawn last-on-top it must be the lowest
    energies = [0.03, 0.15, 0.4]
    candidates = [
        {**base, "candidate_id": f"poly{k}", "e_above_hull": e, "is_stable": False, "is_stable_campaign": False}
        for k, e in enumerate(energies)
    ]
    data, figure = _figure("Li-Fe-O", candidates, references)
    try:
        (scatter,) = _by_gid(figure, "candidates")
        drawn = list(scatter.get_array())
        assert drawn[-1] == min(energies) and sorted(drawn, reverse=True) == drawn
        counts = [t.get_text() for t in _by_gid(figure, "candidate-count")]
        assert counts == ["×3"]
        legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
        assert any("×n" in text for text in legend)
    finally:
        plt.close(figure)
    # a binary picture has energy as an axis: no point hides another, so no counts
    data, figure = _figure("Li-O", [{**c, "formula": "Li2O", "chemsys": "Li-O"} for c in candidates], references)
    try:
        assert len(data.candidates) == 3 and _by_gid(figure, "candidate-count") == []
    finally:
        plt.close(figure)
