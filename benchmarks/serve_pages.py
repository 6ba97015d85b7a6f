"""``matris-flows serve`` on a 10⁵-candidate store: page loads and a filtered table page, in a real browser.

A synthetic finished campaign of ``--candidates`` candidates (default 100 000, 50 per chemical
system: 2000 systems, each with its reference phases; ``matris_flows.testing.synthetic_store``)
is written to an embedded SQLite store; ``serve`` runs on it in its own process and headless
chromium (selenium) loads each page, timed from the navigation to the page's content being drawn:

- progress ``/`` (the counts of ``status``),
- hull ``/hull`` (the largest system's interactive hull),
- candidates ``/candidates`` (first page of 50, all candidates, sorted by e_above_hull),
- filtered ``/candidates?...`` (the table opened on a filter: stable on the campaign hull, containing O, by e_above_hull_campaign),
- next page: a click on the filtered table's "next" (one callback round trip),
- candidate ``/candidate/<id>`` (3D structure, symmetry, provenance).

Each is the median of ``--repeat`` loads (the browser keeps its cache of the app's scripts, as a
user's does after the first page). Two baselines are measured in the same run: what the ``query``
command does for the filtered page in-process (``query_candidates`` with limit 50 on the same
store: what the browser, Dash and HTTP add to the store's own query), and a bare Dash page holding
one plotly 3D point (the floor of any page that draws in WebGL: this machine's browser has no GPU,
so WebGL runs in software).

Run: ``python benchmarks/serve_pages.py [--candidates 100000] [--dir DIR (kept, reused)]``.
Last line: ``serve_slowest_page_s: <value>`` (the slowest median; the target is ≤ 1 s).
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from matris_flows.testing.browser import headless_chrome, serving  # noqa: E402
from matris_flows.testing.synthetic_store import candidate_count, write_synthetic_campaign  # noqa: E402

FILTER = "stable_campaign_only=1&elements=O&sort=e_above_hull_campaign"


def _ready(driver, script: str, timeout: float = 60) -> None:
    WebDriverWait(driver, timeout, poll_frequency=0.01).until(lambda d: d.execute_script(script))


def _timed_load(driver, url: str, ready: str) -> float:
    driver.get("about:blank")
    start = time.perf_counter()
    driver.get(url)
    _ready(driver, ready)
    return time.perf_counter() - start


@contextmanager
def _bare_3d_page() -> Iterator[str]:
    """A Dash app whose page is one plotly 3D point, served in a thread: the WebGL floor's URL."""
    import logging

    import plotly.graph_objects as go
    from dash import Dash, dcc, html
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request after the results
    app = Dash(__name__)
    app.layout = html.Div([dcc.Graph(id="bare", figure=go.Figure([go.Scatter3d(x=[0], y=[0], z=[0], mode="markers")]))])
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.socket.getsockname()[1]}/"
    finally:
        server.shutdown()


def _baseline(directory: Path, repeat: int) -> tuple[float, int]:
    """The filtered page as ``query`` computes it in-process: (median seconds, matches)."""
    from matris_flows.campaign.status import campaign_stores
    from matris_flows.results.query import CandidateQuery, query_candidates

    query = CandidateQuery(stable_campaign_only=True, elements=["O"], sort="e_above_hull_campaign", limit=50)
    times = []
    with campaign_stores(directory) as stores:
        for _ in range(repeat):
            start = time.perf_counter()
            docs = query_candidates(stores.candidates, query)
            total = stores.candidates.count(query.to_mongo())
            times.append(time.perf_counter() - start)
    return statistics.median(times), total if docs else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", help="campaign directory to write (or reuse when it holds the right count)")
    args = parser.parse_args(argv)

    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="serve-bench-")) / "campaign"
    if not (directory / "spec.yaml").is_file() or candidate_count(directory) != args.candidates:
        start = time.perf_counter()
        write_synthetic_campaign(directory, args.candidates, name="serve-bench")
        print(f"wrote {args.candidates} synthetic candidates in {time.perf_counter() - start:.0f} s to {directory}")
    size_mb = sum(p.stat().st_size for p in (directory / "database").iterdir()) / 1e6
    print(f"store: {candidate_count(directory)} candidates, {size_mb:.0f} MB (embedded SQLite)")

    baseline, matches = _baseline(directory, args.repeat)
    print(f"baseline: query (in-process) of the filtered page: {baseline * 1000:.0f} ms ({matches} matches, 50 shown)")

    with serving(directory, timeout_s=120) as url, headless_chrome() as driver:
        first_id = None
        pages = {
            "progress": ("", "const e = document.querySelector('#progress-screened'); return e && e.innerText.length > 0"),
            "hull": ("hull", "return document.querySelector('#hull-graph .main-svg .scatterlayer') !== null"),
            "candidates": ("candidates", "return document.querySelectorAll('#table td').length > 0"),
            "filtered": (f"candidates?{FILTER}",
                         "const c = document.querySelector('#table-count'); return c && c.innerText.includes('match')"
                         " && document.querySelectorAll('#table td').length > 0"),
        }
        _timed_load(driver, url, pages["progress"][1])  # the browser caches the app's scripts, as after a user's first page
        results: dict[str, list[float]] = {}
        for name, (path, ready) in pages.items():
            results[name] = [_timed_load(driver, url + path, ready) for _ in range(args.repeat)]
        # the next page of the filtered table: one click, until the first row changes
        results["next page"] = []
        for _ in range(args.repeat):
            _timed_load(driver, url + f"candidates?{FILTER}", pages["filtered"][1])
            first = driver.execute_script("return document.querySelector('#table td[data-dash-column=candidate_id]').innerText")
            first_id = first_id or first
            button = driver.find_element(By.CSS_SELECTOR, "button.next-page")
            start = time.perf_counter()
            button.click()
            _ready(driver, "return document.querySelector('#table td[data-dash-column=candidate_id]').innerText !== arguments[0]"
                   .replace("arguments[0]", repr(first)))
            results["next page"].append(time.perf_counter() - start)
        results["candidate"] = [_timed_load(driver, url + f"candidate/{first_id}",
                                            "return document.querySelector('#structure-3d .main-svg') !== null")
                                for _ in range(args.repeat)]
        results["candidate (text, before the 3D is drawn)"] = [
            _timed_load(driver, url + f"candidate/{first_id}", "return document.querySelector('table.facts') !== null")
            for _ in range(args.repeat)]
        with _bare_3d_page() as bare:
            _timed_load(driver, bare, "return document.querySelector('#bare .main-svg') !== null")
            floor = statistics.median(_timed_load(driver, bare, "return document.querySelector('#bare .main-svg') !== null")
                                      for _ in range(args.repeat))
    print(f"baseline: a bare Dash page with one plotly 3D point: {floor:.3f} s (the WebGL floor here)")

    slowest = 0.0
    for name, times in results.items():
        median = statistics.median(times)
        slowest = max(slowest, median) if not name.startswith("candidate (") else slowest
        if name in ("filtered", "next page"):
            ratio = f"  ({median / baseline:.0f}x the baseline query)"
        else:
            ratio = f"  ({median / floor:.2f}x the bare 3D page)" if name == "candidate" else ""
        print(f"{name:<11} median {median:.3f} s  worst {max(times):.3f} s  (n={len(times)}){ratio}")
    print(f"serve_slowest_page_s: {slowest:.3f}")


if __name__ == "__main__":
    sys.exit(main())
