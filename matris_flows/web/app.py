"""The Dash app of ``matris-flows serve``: a header, four pages chosen by the URL, the download routes.

``/`` progress · ``/hull`` hull explorer (``?chemsys=Fe-Li-O``) · ``/candidates`` the table (the
filters as URL parameters, as in the download links) · ``/candidate/<id>`` one candidate.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import flask
from dash import Dash, Input, Output, dcc, html

from matris_flows.results.query import CandidateQuery
from matris_flows.web import downloads
from matris_flows.web.filters import query_from_params
from matris_flows.web.reader import CampaignReader
from matris_flows.web.views import candidate, hull, progress, table
from matris_flows.web.views.common import error_box, error_message

ASSETS = Path(__file__).parent / "assets"

DEFAULT_REFRESH_S = 2.0
"""How often the progress page reads the store again, seconds."""


def create_app(reader: CampaignReader, refresh_s: float = DEFAULT_REFRESH_S) -> Dash:
    """The app over ``reader``'s campaign; its Flask server is ``app.server``.

    Every script and style sheet is served from the installed packages (Dash's and plotly's
    bundles, this package's ``assets``): the pages work without internet.
    """
    app = Dash(
        __name__, title=f"matris-flows · {reader.name}", assets_folder=str(ASSETS), serve_locally=True,
        suppress_callback_exceptions=True,  # the pages' components exist only while their page is shown
        update_title=None,
    )
    def page(pathname: str | None, search: str | None):
        """The content of the page at ``pathname`` (``search``: its URL parameters, with the '?')."""
        params = dict(parse_qsl((search or "").lstrip("?")))
        path = (pathname or "/").rstrip("/") or "/"
        if path == "/":
            return progress.layout(refresh_s)
        if path == "/hull":
            return hull.layout(reader, params.get("chemsys"))
        if path == "/candidates":
            try:
                initial = query_from_params(params) if params else CandidateQuery()
            except Exception as exc:  # noqa: BLE001 - a bad link: say so, show the unfiltered table
                return html.Div([error_box(error_message(exc)), table.layout(reader)])
            return table.layout(reader, initial)
        if path.startswith("/candidate/"):
            return candidate.layout(reader, unquote(path.removeprefix("/candidate/")))
        return error_box(f"no page {path}: the pages are /, /hull, /candidates and /candidate/<id>")

    def shell() -> html.Div:
        """The header and, already filled, the page the browser asked for.

        Dash fetches the layout from the page's own URL (the request's referrer): building that page
        here saves a round trip to a routing callback at every load; the callback routes the
        navigation inside the app. The Location starts at that URL, so it does not fire the callback.
        """
        pathname, search = None, None
        if flask.has_request_context() and flask.request.referrer:
            url = urlsplit(flask.request.referrer)
            pathname, search = url.path or "/", f"?{url.query}" if url.query else ""
        return html.Div([
            dcc.Location(id="url", pathname=pathname, search=search),
            html.Header(className="top", children=[
                html.Span("matris-flows", className="brand"),
                html.Span(f"campaign {reader.name}", className="campaign", id="campaign-name"),
                html.Nav([dcc.Link("Progress", href="/", id="nav-progress"),
                          dcc.Link("Hull explorer", href="/hull", id="nav-hull"),
                          dcc.Link("Candidates", href="/candidates", id="nav-candidates")]),
            ]),
            html.Main(id="page", children=page(pathname, search) if pathname is not None else None),
            # plotly.js (4.6 MB) starts loading with the shell, while the page is drawn, not after it (Dash's
            # eager_loading would also parse the date picker, MathJax and the upload widget, unused here)
            dcc.Graph(id="plotly-preload", figure={}, style={"display": "none"}),
        ])

    app.layout = shell

    @app.callback(Output("page", "children"), Input("url", "pathname"), Input("url", "search"), prevent_initial_call=True)
    def route(pathname: str | None, search: str | None):
        return page(pathname, search)

    progress.register(app, reader)
    hull.register(app, reader)
    table.register(app, reader)
    downloads.register(app.server, reader)
    return app
