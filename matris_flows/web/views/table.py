"""The candidate table: the ``query`` command's filters, sortable columns, pages read from the store, downloads.

Only the page on screen travels: each page is one sorted, skipped and limited query in the
store (the fields of the columns only) and one count, so 10⁵ candidates page as fast as 10.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from dash import Dash, Input, Output, ctx, dash_table, dcc, html

from matris_flows.results.formatting import COLUMNS, CONSENSUS_COLUMNS, cell_text, get_path
from matris_flows.results.query import CandidateQuery
from matris_flows.web.filters import FLAG_FILTERS, NUMBER_FILTERS, SOURCES, TEXT_FILTERS, build_query, params_of
from matris_flows.web.reader import CampaignReader
from matris_flows.web.views.common import error_message

PAGE_SIZE = 50

TABLE_COLUMNS = (
    "candidate_id", "formula", "chemsys", "e_above_hull", "e_above_hull_campaign", "formation_energy_per_atom",
    "is_stable", "is_stable_campaign", "matches_reference", "duplicate_of", "source", "thermo_status", "relax_status",
    "validation_status",
)
"""The table's columns (names of the ``query`` command's columns); the consensus ones join when the campaign has them."""


def columns_of(reader: CampaignReader) -> list[str]:
    """This campaign's table columns."""
    if not reader.has_consensus:
        return list(TABLE_COLUMNS)
    at = TABLE_COLUMNS.index("e_above_hull_campaign") + 1
    return [*TABLE_COLUMNS[:at], *CONSENSUS_COLUMNS, *TABLE_COLUMNS[at:]]


def number_filters(reader: CampaignReader) -> list[str]:
    """This campaign's upper-bound filters (the spread only with a consensus stage): the page's controls and the callback's inputs."""
    return [name for name in NUMBER_FILTERS if name != "max_consensus_spread" or reader.has_consensus]


def flag_filters(reader: CampaignReader) -> list[str]:
    """This campaign's yes/no filters ("stable by consensus" only with a consensus stage)."""
    return [name for name in FLAG_FILTERS if name != "stable_consensus_only" or reader.has_consensus]


def layout(reader: CampaignReader, initial: CandidateQuery | None = None) -> html.Div:
    """The page: filters (prefilled from ``initial``, e.g. the URL's), the table, the count and the download links."""
    initial = initial or CandidateQuery()
    texts = [_labelled(label, dcc.Input(id=f"filter-{name}", type="text", placeholder=label.split(" (")[-1].rstrip(")"),
                                        debounce=True, value=",".join(v) if isinstance(v := getattr(initial, name), list) else v))
             for name, label in TEXT_FILTERS.items()]
    numbers = [_labelled(NUMBER_FILTERS[name], dcc.Input(id=f"filter-{name}", type="number", debounce=True, step="any", min=0,
                                                         value=getattr(initial, name)))
               for name in number_filters(reader)]
    flags = flag_filters(reader)
    names = columns_of(reader)
    columns = [{"id": name, "name": COLUMNS[name].header, "presentation": "markdown" if name == "candidate_id" else "input"}
               for name in names]
    first = table_page(reader, lambda: initial, 0)  # the first page comes with the page: no second round trip
    return html.Div([
        html.H2("Candidates"),
        html.Div(className="filters", children=[
            *texts,
            _labelled("source", dcc.Dropdown(id="filter-source", options=list(SOURCES), placeholder="any",
                                             value=initial.source.value if initial.source else None)),
            *numbers,
        ]),
        html.Div(className="flags", children=[
            dcc.Checklist(id="filter-flags", inline=True, value=[n for n in flags if getattr(initial, n)],
                          options=[{"label": FLAG_FILTERS[n], "value": n} for n in flags]),
        ]),
        html.Div(className="selection", children=[
            html.Span(first.count, id="table-count"), html.Span(" · download the selection: "),
            html.A("CSV", id="download-csv", href=first.csv), html.Span(" "),
            html.A("JSON", id="download-json", href=first.json),
        ]),
        html.Div(first.error, id="table-error"),
        dash_table.DataTable(
            id="table", columns=columns, data=first.rows, page_count=first.n_pages, page_current=0, page_size=PAGE_SIZE,
            page_action="custom",
            sort_action="custom", sort_mode="single", sort_by=_sort_by(initial), markdown_options={"link_target": "_self"},
            style_table={"overflowX": "auto"}, style_cell={"fontFamily": "inherit", "fontSize": "13px", "padding": "4px 8px"},
            style_header={"fontWeight": "bold", "backgroundColor": "#f3f4f6"},
            css=[{"selector": ".dash-cell p", "rule": "margin: 0"}],  # markdown links sit on the row's line
            style_cell_conditional=[{"if": {"column_id": name}, "textAlign": "right"}
                                    for name in names if COLUMNS[name].decimals is not None],
        ),
    ])


def _labelled(label: str, control) -> html.Div:
    return html.Div(className="filter", children=[html.Label(label, className="filter-label"), control])


def _sort_by(query: CandidateQuery) -> list[dict]:
    by_path = {c.path: name for name, c in COLUMNS.items()}
    name = by_path.get(query.sort_field, query.sort_field)
    return [{"column_id": name, "direction": "desc" if query.sort_direction < 0 else "asc"}]


def register(app: Dash, reader: CampaignReader) -> None:
    """One callback: the filters, the page and the order in; the rows, the page count and the links out."""
    numbers = number_filters(reader)
    inputs = [Input(f"filter-{name}", "value") for name in (*TEXT_FILTERS, *numbers)]

    @app.callback(
        Output("table", "data"), Output("table", "page_count"), Output("table-count", "children"),
        Output("download-csv", "href"), Output("download-json", "href"), Output("table-error", "children"),
        Output("table", "page_current"),
        *inputs, Input("filter-source", "value"), Input("filter-flags", "value"),
        Input("table", "page_current"), Input("table", "sort_by"),
        prevent_initial_call=True,
    )
    def page(*values):
        texts = dict(zip(TEXT_FILTERS, values[: len(TEXT_FILTERS)], strict=True))
        rest = values[len(TEXT_FILTERS):]
        number_values = dict(zip(numbers, rest[: len(numbers)], strict=True))
        source, flags, current, sort_by = rest[len(numbers):]
        if ctx.triggered_id != "table":  # new filters: back to the first page
            current = 0
        return table_page(reader, lambda: build_query(texts, number_values, flags or [], source, _sort_field(sort_by)), current)


class TablePage(NamedTuple):
    """What the table shows for one query and page (the callback's outputs, in order)."""

    rows: list[dict]
    n_pages: int
    count: str
    csv: str
    json: str
    error: html.Div | None
    current: int


def table_page(reader: CampaignReader, make_query: Callable[[], CandidateQuery], current: int) -> TablePage:
    """Page ``current`` of the query ``make_query`` builds (an error in either becomes the one-line error above the table)."""
    columns = columns_of(reader)
    try:
        query = make_query()
        total = reader.count(query)
        n_pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        current = min(current or 0, n_pages - 1)
        docs = reader.candidates(query.model_copy(update={"skip": current * PAGE_SIZE, "limit": PAGE_SIZE}),
                                 properties=[COLUMNS[name].path for name in columns])
    except Exception as exc:  # noqa: BLE001 - one line above the table
        return TablePage([], 1, "", "", "", html.Div(f"error: {error_message(exc)}", className="error", role="alert"), 0)
    params = params_of(query)
    suffix = f"?{params}" if params else ""
    return TablePage([_row(doc, columns) for doc in docs], n_pages, f"{total} candidate{'s' if total != 1 else ''} match",
                     f"/download/candidates.csv{suffix}", f"/download/candidates.json{suffix}", None, current)


def _sort_field(sort_by: list[dict] | None) -> str:
    """The query's sort (a document path, '-' for descending) of the table's sort state; e_above_hull by default."""
    if not sort_by:
        return "e_above_hull"
    name, direction = sort_by[0]["column_id"], sort_by[0]["direction"]
    path = COLUMNS[name].path if name in COLUMNS else name
    return f"-{path}" if direction == "desc" else path


def _row(doc: dict, columns: list[str]) -> dict:
    row = {name: cell_text(get_path(doc, COLUMNS[name].path), COLUMNS[name].decimals) for name in columns}
    ident = doc["candidate_id"]
    row["candidate_id"] = f"[{ident}](/candidate/{ident})"
    return row
