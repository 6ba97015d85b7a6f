"""One candidate: its relaxed structure in 3D, lattice and symmetry, relaxation, energies, provenance, DFT; CIF/POSCAR."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from dash import dcc, html
from pymatgen.core import Structure

from matris_flows.results.export import structure_of
from matris_flows.web.reader import CampaignReader
from matris_flows.web.structure_figure import element_colors, structure_figure
from matris_flows.web.views.common import error_box, error_message

MP_URL = "https://next-gen.materialsproject.org/materials/{}"
"""Where an MP id links to (opened by the user's browser, which may be online where the server is not)."""


def layout(reader: CampaignReader, candidate_id: str) -> html.Div:
    """The page of ``candidate_id`` (a one-line message when the campaign has no such candidate)."""
    try:
        doc = reader.candidate(candidate_id)
        if doc is None:
            return error_box(f"campaign {reader.name} has no candidate {candidate_id!r}")
        duplicates = reader.duplicates_of(candidate_id)
        structure = structure_of(doc)
    except Exception as exc:  # noqa: BLE001 - one line on the page
        return error_box(error_message(exc))
    return html.Div(className="candidate", children=[
        html.H2([doc["formula"], html.Span(f"  {candidate_id}", className="muted")]),
        html.P(_verdict(doc), className="verdict"),
        html.Div(className="columns", children=[
            html.Div(className="left", children=[
                html.Div(className="legend", id="structure-legend", children=[
                    html.Span([html.Span(className="chip", style={"background": color}), symbol], className="element")
                    for symbol, color in element_colors(structure)
                ] + [html.Span("drag to turn, scroll to zoom; pale atoms belong to the next cells", className="muted")])
                if structure is not None else None,
                dcc.Graph(id="structure-3d", figure=structure_figure(structure), config={"displaylogo": False})
                if structure is not None else html.P("No relaxed structure (the relaxation failed).", className="muted"),
                html.P(["download: ",
                        html.A("CIF", id="download-cif", href=f"/download/candidate/{quote(candidate_id)}.cif"), " · ",
                        html.A("POSCAR", id="download-poscar", href=f"/download/candidate/{quote(candidate_id)}.poscar")])
                if structure is not None else None,
            ]),
            html.Div(className="right", children=[
                *(_section("Lattice and symmetry", _lattice(structure)) if structure is not None else []),
                *_section("Energies", _energies(doc)),
                *_section("Relaxation", _relaxation(doc.get("relaxation") or {})),
                *_section("Provenance", _provenance(doc.get("provenance") or {}, doc)),
            ]),
        ]),
        *_decomposition(doc),
        *_identity(doc, duplicates),
        *_consensus(doc.get("consensus")),
        *_validation(doc.get("validation")),
    ])


def _verdict(doc: dict[str, Any]) -> str:
    if doc.get("thermo_status") != "ok":
        return f"not assessed: {doc.get('thermo_status')}: {doc.get('thermo_failure_reason') or 'no reason recorded'}"
    parts = [f"{_num(doc.get('e_above_hull'))} eV/atom above the reference hull"]
    if doc.get("e_above_hull_campaign") is not None:
        parts.append(f"{_num(doc['e_above_hull_campaign'])} above the campaign hull")
    flags = [label for field, label in (("is_stable", "stable (reference hull)"),
                                         ("is_stable_campaign", "stable (campaign hull)"),
                                         ("is_stable_consensus", "stable by consensus")) if doc.get(field)]
    return "; ".join(parts) + (" — " + ", ".join(flags) if flags else "")


def _num(value: Any, decimals: int = 3) -> str:
    return "-" if value is None else f"{value:.{decimals}f}"


def _section(title: str, rows: list[tuple[str, Any]]) -> list:
    return [html.H3(title), html.Table(className="facts", children=[
        html.Tr([html.Th(label), html.Td(value if value not in (None, "") else "-")]) for label, value in rows
    ])]


def _lattice(structure: Structure) -> list[tuple[str, Any]]:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    lattice = structure.lattice
    try:
        analyzer = SpacegroupAnalyzer(structure, symprec=0.1)
        symmetry = f"{analyzer.get_space_group_symbol()} (No. {analyzer.get_space_group_number()}), {analyzer.get_crystal_system()}"
    except Exception as exc:  # noqa: BLE001 - spglib refuses some cells; the rest of the page stands
        symmetry = f"not determined ({type(exc).__name__})"
    return [
        ("space group (symprec 0.1 Å)", symmetry),
        ("a, b, c (Å)", ", ".join(f"{x:.3f}" for x in lattice.abc)),
        ("α, β, γ (°)", ", ".join(f"{x:.2f}" for x in lattice.angles)),
        ("volume (Å³)", f"{lattice.volume:.2f} ({lattice.volume / len(structure):.2f} per atom)"),
        ("density (g/cm³)", f"{structure.density:.3f}"),
        ("sites", len(structure)),
    ]


def _energies(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    reference = doc.get("reference") or {}
    return [
        ("energy (eV/atom)", _num(doc.get("energy_per_atom"), 4)),
        ("corrected energy (eV/atom)", _num(doc.get("corrected_energy_per_atom"), 4)),
        ("formation energy (eV/atom)", _num(doc.get("formation_energy_per_atom"))),
        ("above the reference hull (eV/atom)", _num(doc.get("e_above_hull"))),
        ("above the campaign hull (eV/atom)", _num(doc.get("e_above_hull_campaign"))),
        ("stability threshold (eV/atom)", _num(doc.get("stability_threshold"))),
        ("reference data", f"{reference.get('provider', '-')}: {reference.get('snapshot') or reference.get('source') or '-'}"),
    ]


def _relaxation(relax: dict[str, Any]) -> list[tuple[str, Any]]:
    settings, potential = relax.get("settings") or {}, relax.get("potential") or {}
    volume = relax.get("volume_ratio")
    return [
        ("status", relax.get("status") if not relax.get("failure_reason") else f"{relax.get('status')}: {relax['failure_reason']}"),
        ("steps", f"{relax.get('n_steps', '-')} of at most {settings.get('max_steps', '-')}"),
        ("max force (eV/Å)", f"{_num(relax.get('max_force'), 4)} (fmax {settings.get('fmax', '-')})"),
        ("volume change", "-" if volume is None else f"{100 * (volume - 1):+.1f} %"),
        ("optimizer", f"{settings.get('optimizer', '-')} + {settings.get('cell_filter', '-')}, engine {relax.get('engine', '-')}"),
        ("potential", f"{potential.get('name', '-')} {potential.get('variant') or ''}".strip()),
        ("checkpoint SHA-256", (potential.get("checkpoint_sha256") or "-")[:16]),
        ("wall time (s)", _num(relax.get("wall_time_s"), 1)),
    ]


def _link(ident: str | None) -> Any:
    """An MP id as a link to its Materials Project page, a candidate id to its page; anything else as text."""
    if not ident:
        return None
    if ident.startswith("mp-") or ident.startswith("mvc-"):
        return html.A(ident, href=MP_URL.format(ident), target="_blank", rel="noopener")
    if ident.startswith("cand-"):
        return dcc.Link(ident, href=f"/candidate/{ident}")
    return ident


def _provenance(provenance: dict[str, Any], doc: dict[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [("source", provenance.get("source")), ("parent template", _link(provenance.get("parent_id")))]
    if provenance.get("substitution"):
        rows.append(("substitution", ", ".join(f"{a} → {b}" for a, b in provenance["substitution"].items())))
        rows.append(("substitution probability", _num(provenance.get("substitution_probability"))))
    if provenance.get("prototype"):
        decoration = ", ".join(f"{k}={v}" for k, v in (provenance.get("decoration") or {}).items())
        rows.append(("prototype", f"{provenance['prototype']} ({decoration})" if decoration else provenance["prototype"]))
    for field, label in (("spacegroup", "requested space group"), ("formula_units", "formula units"), ("seed", "random seed"),
                         ("file_path", "file"), ("file_index", "index in file"), ("ordering", "ordering")):
        if provenance.get(field) is not None:
            rows.append((label, str(provenance[field])))
    rows.append(("campaign", doc.get("campaign")))
    return rows


def _decomposition(doc: dict[str, Any]) -> list:
    products = doc.get("decomposes_to") or []
    if not products:
        return []
    return [html.H3("Decomposition (reference hull)"), html.Table(className="facts", id="decomposition", children=[
        html.Tr([html.Th("phase"), html.Th("id"), html.Th("fraction")]),
        *[html.Tr([html.Td(p.get("formula")), html.Td(_link(p.get("material_id") or p.get("entry_id"))),
                   html.Td(_num(p.get("amount")))]) for p in products],
    ])]


def _identity(doc: dict[str, Any], duplicates: list[str]) -> list:
    rows = [("known phase (StructureMatcher)", _link(doc.get("matches_reference")) or "no match: not a known reference phase"),
            ("duplicate of", _link(doc.get("duplicate_of")) or "none"),
            ("duplicates of it", html.Span([item for ident in duplicates for item in (_link(ident), " ")]) if duplicates else "none")]
    return _section("Known phase and duplicates", rows)


def _consensus(consensus: dict[str, Any] | None) -> list:
    if not consensus:
        return []
    header = html.Tr([html.Th(h) for h in ("model", "role", "status", "above reference hull", "above campaign hull", "note")])
    rows = [html.Tr([html.Td(m.get("model")), html.Td(m.get("role")), html.Td(m.get("status")),
                     html.Td(_num(m.get("e_above_hull"))), html.Td(_num(m.get("e_above_hull_campaign"))),
                     html.Td(m.get("failure_reason") or "")]) for m in consensus.get("models") or []]
    summary = (f"{consensus.get('statistic')} of {consensus.get('n_models')} models, rule {consensus.get('stable_rule')} "
               f"at {consensus.get('threshold')} eV/atom, {consensus.get('mode')}: {consensus.get('status')}")
    return [html.H3("Second opinions (consensus)"), html.P(summary), html.Table([header, *rows], className="facts")]


def _validation(validation: dict[str, Any] | None) -> list:
    if not validation:
        return []
    rows = [
        ("status", validation.get("status") if not validation.get("failure_reason")
         else f"{validation.get('status')}: {validation['failure_reason']}"),
        ("selected by", validation.get("selected_by")),
        ("code", f"{validation.get('code', '-')} {validation.get('code_version') or ''} ({validation.get('backend', '-')})"),
        ("DFT energy above the hull (eV/atom)", _num(validation.get("dft_e_above_hull"))),
        ("DFT formation energy (eV/atom)", _num(validation.get("dft_formation_energy_per_atom"))),
        ("hull", validation.get("hull_description")),
        ("DFT decomposition", ", ".join(validation.get("dft_decomposes_to") or []) or None),
    ]
    return _section("DFT validation", rows)
