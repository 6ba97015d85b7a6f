"""The progress page: structures screened of those generated, rate and ETA, candidates by outcome, jobs, failures."""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, dcc, html

from matris_flows.web.rate import ScreeningRate
from matris_flows.web.reader import CampaignReader
from matris_flows.web.views.common import guarded


def layout(refresh_s: float) -> html.Div:
    """The page; its panel is filled, and refreshed every ``refresh_s`` seconds, by :func:`register`'s callback."""
    return html.Div([
        html.H2("Progress"),
        dcc.Interval(id="progress-timer", interval=int(refresh_s * 1000)),
        html.Div(id="progress-panel", children=html.P("reading the store…", className="muted")),
    ])


def register(app: Dash, reader: CampaignReader) -> None:
    """The panel's refresh: one ``status`` read of the store per tick."""
    rate = ScreeningRate()

    @app.callback(Output("progress-panel", "children"), Input("progress-timer", "n_intervals"))
    @guarded
    def refresh(_ticks: int | None):
        status = reader.status()
        rate.add(status["screened"])
        return panel(status, rate)


def panel(status: dict[str, Any], rate: ScreeningRate) -> list:
    """The panel's content for one ``status`` read."""
    total, screened = max(status["generated"], status["screened"]), status["screened"]
    fraction = screened / total if total else 0.0
    per_minute = rate.per_minute() if status["running"] else None
    eta = rate.eta_minutes(total - screened) if status["running"] else None
    finished = bool(total) and screened >= total and not status["jobs_failed"]
    if status["running"]:
        state = f"running (driver PID {status['driver_pid']})"
    else:
        state = "finished" if finished else "not running"
    by_status = status["candidates_by_status"]
    counts = [
        ("candidates generated", status["generated"]),
        ("screened (relaxed and on the hull)", screened),
        ("  assessed (energy above the hull)", by_status["ok"]),
        ("  relaxation failed", by_status["relax_failed"]),
        ("  rejected (bad input)", by_status["rejected"]),
        ("  no reference hull", by_status["no_reference"]),
        ("  in a failed job (resume reruns them)", by_status["job_failed"]),
        ("stable on the reference hull", status["stable"]),
        ("stable on the campaign hull (once every chunk is in)", status["stable_campaign"]),
    ]
    if status["consensus"]:
        counts += [("second opinions", status["consensus"]["second_opinions"]),
                   ("  stable by consensus", status["consensus"]["stable_consensus"])]
    stages = ", ".join(f"{stage} {n}" for stage, n in sorted(status["finished_by_stage"].items())) or "none yet"
    return [
        html.Div(className="headline", children=[
            html.Span("screened "), html.Span(str(screened), id="progress-screened"), html.Span(" / "),
            html.Span(str(total), id="progress-total"), html.Span(f" structures ({100 * fraction:.0f} %)"),
        ]),
        html.Progress(value=str(screened), max=str(max(total, 1)), className="bar"),
        html.P([
            html.Span(f"campaign {status['name']}: "), html.Strong(state, id="progress-state"),
            html.Span(f" · rate {per_minute:.1f} structures/min" if per_minute is not None else
                      (" · rate: measuring…" if status["running"] else "")),
            html.Span(f" · ETA {eta:.1f} min" if eta is not None else ""),
            html.Span([" · ", html.Code(f"matris-flows resume {status['directory']}"), " continues it"])
            if not status["running"] and not finished else None,
        ]),
        html.Table(className="counts", id="progress-counts", children=[
            html.Tr([html.Td(label), html.Td(str(value), className="number")]) for label, value in counts
        ]),
        html.H3("Jobs"),
        html.P([
            html.Span(f"finished {status['jobs_finished']} ({stages})"),
            html.Span(f" · in flight {status['in_flight']}" if status["running"] and status["in_flight"] is not None else ""),
            html.Span(" · failed "), html.Span(str(status["jobs_failed"]), id="progress-failed"),
        ]),
        _failures(status),
    ]


def _failures(status: dict[str, Any]) -> html.Div:
    if not status["failed_jobs"]:
        return html.Div()
    return html.Div(className="failures", children=[
        html.Table([html.Tr([html.Th("failed job"), html.Th("reason")])] + [
            html.Tr([html.Td(job["name"]), html.Td(job["error"], className="reason")]) for job in status["failed_jobs"]
        ]),
        html.P(["tracebacks: ", html.Code(status["log_file"]), " · fix the cause, then ",
                html.Code(f"matris-flows resume {status['directory']}")]),
    ])


