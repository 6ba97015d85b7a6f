"""The hull explorer: pick a chemical system, see its hull with the candidates, click one to open it."""

from __future__ import annotations

from dash import Dash, Input, Output, dcc, html, no_update

from matris_flows.results.hull_plotly import hull_plotly
from matris_flows.web.reader import CampaignReader
from matris_flows.web.views.common import error_box, error_message

COLOR_CHOICES = {"e_above_hull": "energy above the hull", "campaign": "energy above the campaign hull",
                 "consensus": "consensus energy above the hull", "spread": "models' spread"}
CONSENSUS_CHOICES = ("consensus", "spread")


def layout(reader: CampaignReader, chemsys: str | None = None) -> html.Div:
    """The page, showing ``chemsys`` (default: the largest system with candidates)."""
    try:
        systems = reader.chemical_systems()
    except Exception as exc:  # noqa: BLE001 - one line on the page
        return error_box(error_message(exc))
    if not systems:
        return html.Div([html.H2("Hull explorer"), html.P("No candidates with a drawable chemical system yet.", className="muted")])
    chosen = chemsys if chemsys in systems else systems[0]
    color = dcc.RadioItems(
        id="hull-color", value="e_above_hull", inline=True, className="colours",
        options=[{"label": label, "value": value} for value, label in COLOR_CHOICES.items()
                 if value not in CONSENSUS_CHOICES or reader.has_consensus],
    )
    return html.Div([
        html.H2("Hull explorer"),
        html.Div(className="controls", children=[
            html.Label("chemical system", htmlFor="hull-chemsys"),
            dcc.Dropdown(id="hull-chemsys", options=systems, value=chosen, clearable=False, className="picker"),
            html.Span("colour candidates by ", className="muted"),
            color,
        ]),
        html.P("Hover a point for its formula, id, energies and source; click a candidate to open its page.", className="muted"),
        dcc.Loading(html.Div(id="hull-body", children=body(reader, chosen, "e_above_hull"))),  # drawn now: no second round trip
        dcc.Location(id="hull-nav", refresh="callback-nav"),
    ])


def body(reader: CampaignReader, chemsys: str, color_by: str) -> list | html.Div:
    """The caption and the interactive hull of ``chemsys`` (a one-line message when it cannot be drawn)."""
    try:
        data = reader.hull(chemsys, color_by)
    except Exception as exc:  # noqa: BLE001 - one line on the page
        return error_box(error_message(exc))
    figure = hull_plotly(data)
    figure.update_layout(height=640, margin={"t": 60})
    caption = (f"{len(data.candidates)} candidates within {data.chemsys} on the {data.hull_name}; "
               f"{len(data.stable_references)} reference phases on the hull")
    return [html.P(caption, id="hull-caption"),
            dcc.Graph(id="hull-graph", figure=figure, config={"displaylogo": False}, className="hull")]


def register(app: Dash, reader: CampaignReader) -> None:
    """Draw the chosen system; a click on a candidate goes to its page."""

    @app.callback(Output("hull-body", "children"), Input("hull-chemsys", "value"), Input("hull-color", "value"),
                  prevent_initial_call=True)
    def draw(chemsys: str, color_by: str):
        return body(reader, chemsys, color_by or "e_above_hull")

    @app.callback(Output("hull-nav", "href"), Input("hull-graph", "clickData"), prevent_initial_call=True)
    def open_candidate(click: dict | None):
        points = (click or {}).get("points") or []
        ident = points[0].get("customdata") if points else None
        if not isinstance(ident, str):  # a reference phase or a line: nothing to open
            return no_update
        return f"/candidate/{ident}"
