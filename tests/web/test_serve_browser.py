"""``matris-flows serve`` driven in a real headless browser (Debian's chromium + chromedriver, selenium).

One campaign, the demo's spec with chunks of 2 structures (so the count grows in steps) and a
stability threshold of 0.1 eV/atom (so that "stable on the campaign hull" selects some of the
candidates, not none), is screened by the CLI in a subprocess. The app is started while the
campaign runs: the first test watches its progress page count up to the end; the others drive
the finished campaign's four pages and compare what they show with what ``matris-flows query``
prints. Screenshots of the four views land in ``$MATRIS_FLOWS_SCREENSHOTS`` (default: the test's
temporary folder).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from matris_flows.testing.browser import headless_chrome, requested_urls, serving

ROOT = Path(__file__).resolve().parents[2]
DEMO_SPEC = ROOT / "workflows" / "demo_li_fe_o.yaml"


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "matris_flows.cli", *args], capture_output=True, text=True, env=env, check=False)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """The demo campaign (chunks of 2, threshold 0.1) screening in a subprocess: (directory, process)."""
    folder = tmp_path_factory.mktemp("web")
    spec = yaml.safe_load(DEMO_SPEC.read_text())
    spec["name"] = "web-demo"
    spec["generation"]["chunk_size"] = 2
    spec["hull"]["stability_threshold"] = 0.1
    spec_path = folder / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    directory = folder / "campaign"
    log = open(folder / "screen.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "matris_flows.cli", "screen", str(spec_path), "--dir", str(directory)],
                               stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    yield directory, process
    if process.poll() is None:
        process.kill()
    log.close()


@pytest.fixture(scope="module")
def app_url(campaign):
    directory, _ = campaign
    with serving(directory, refresh_s=0.5, timeout_s=120) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with headless_chrome() as driver:
        yield driver


@pytest.fixture(scope="module")
def finished(campaign, app_url):
    """The campaign once its screen has ended (successfully)."""
    directory, process = campaign
    assert process.wait(timeout=900) == 0, (directory.parent / "screen.log").read_text()[-3000:]
    return directory


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("MATRIS_FLOWS_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _wait(driver, css: str, timeout: float = 30):
    return WebDriverWait(driver, timeout).until(lambda d: d.find_elements(By.CSS_SELECTOR, css))


def _text(driver, css: str) -> str:
    """The text of the first element matching ``css``, read in one step (the progress panel is replaced as it refreshes)."""
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText.trim() : null;", css)


def _texts(driver, css: str) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => (e.innerText ?? e.textContent).trim());", css)


def _query_ids(directory: Path, *flags: str) -> list[str]:
    result = _cli("query", str(directory), "--format", "json", *flags)
    assert result.returncode == 0, result.stderr
    return [doc["candidate_id"] for doc in json.loads(result.stdout)]


def _table_ids(driver) -> list[str]:
    return _texts(driver, "#table td[data-dash-column=candidate_id] a")


def test_the_progress_page_counts_up_while_the_campaign_runs(campaign, app_url, browser, shots):
    directory, process = campaign
    browser.get(app_url)
    _wait(browser, "#progress-screened")
    seen: list[tuple[int, int, str]] = []  # (screened, total, state) as the page showed them
    pictured = False
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        seen.append(tuple(browser.execute_script(
            "return ['#progress-screened', '#progress-total', '#progress-state']"
            ".map(s => document.querySelector(s).innerText.trim());")))
        seen[-1] = (int(seen[-1][0]), int(seen[-1][1]), seen[-1][2])
        if seen[-1][2].startswith("running") and seen[-1][0] > 0 and not pictured:
            time.sleep(1)  # a refresh later: the rate is measured by then
            browser.save_screenshot(str(shots / "progress.png"))  # mid-run: the count, rate and ETA
            pictured = True
        if process.poll() is not None and seen and seen[-1][2] == "finished":
            break
        time.sleep(0.25)
    assert process.wait(timeout=60) == 0
    running = [s for s in seen if s[2].startswith("running")]
    assert running, f"the page never showed the campaign running: {seen[:5]}"
    screened = [s[0] for s in seen]
    assert screened == sorted(screened), "the screened count went down"
    status = json.loads(_cli("status", str(directory)).stdout)
    assert screened[0] < screened[-1] == status["screened"] == status["generated"] > 0
    assert seen[-1][2] == "finished"
    print("screened counts seen:", sorted(set(screened)))


def test_the_progress_page_shows_the_counts_of_status(finished, app_url, browser):
    status = json.loads(_cli("status", str(finished)).stdout)
    browser.get(app_url)
    _wait(browser, "#progress-counts")
    WebDriverWait(browser, 10).until(lambda d: _text(d, "#progress-state") == "finished")
    assert int(_text(browser, "#progress-screened")) == status["screened"]
    assert int(_text(browser, "#progress-total")) == status["generated"]
    assert int(_text(browser, "#progress-failed")) == status["jobs_failed"] == 0
    rows = dict(row.rsplit(maxsplit=1) for row in _texts(browser, "#progress-counts tr"))
    assert int(rows["stable on the campaign hull (once every chunk is in)"]) == status["stable_campaign"] > 0
    assert int(rows["assessed (energy above the hull)"]) == status["candidates_by_status"]["ok"]
    # the header's links change the page inside the app (no reload)
    browser.execute_script("window.notReloaded = true")
    browser.find_element(By.ID, "nav-candidates").click()
    _wait(browser, "#table td")
    browser.find_element(By.ID, "nav-hull").click()
    _wait(browser, "#hull-graph .main-svg")
    assert browser.execute_script("return window.notReloaded === true")


def test_the_hull_shows_the_candidates_and_a_click_opens_one(finished, app_url, browser, shots):
    browser.get(app_url + "hull")
    _wait(browser, "#hull-graph .main-svg")
    assert "Fe-Li-O" in _text(browser, "#hull-chemsys")
    drawn = browser.execute_script(
        "const gd = document.getElementById('hull-graph').querySelector('.js-plotly-plot');"
        "return gd.data.filter(t => t.customdata).flatMap(t => t.customdata);")
    docs = json.loads(_cli("query", str(finished), "--format", "json").stdout)
    expected = {d["candidate_id"] for d in docs if d["thermo_status"] == "ok" and d["duplicate_of"] is None}
    assert set(drawn) == expected and len(expected) >= 5
    browser.save_screenshot(str(shots / "hull.png"))
    # a real click on a candidate's marker (the trace that carries candidate ids)
    index = browser.execute_script(
        "const gd = document.getElementById('hull-graph').querySelector('.js-plotly-plot');"
        "return gd.data.findIndex(t => t.customdata);")
    trace = browser.find_elements(By.CSS_SELECTOR, "#hull-graph .scatterlayer .trace")[index]
    for marker in trace.find_elements(By.CSS_SELECTOR, ".points path"):
        # hover first: where a reference phase sits at the same spot, plotly picks that one
        ActionChains(browser).move_to_element(marker).pause(0.3).perform()
        hover = " ".join(_texts(browser, ".hovertext"))
        if "(candidate" in hover:
            ActionChains(browser).click().perform()
            break
    else:
        pytest.fail("no candidate marker could be hovered")
    assert "source: " in hover and "E above hull" in hover
    WebDriverWait(browser, 15).until(lambda d: "/candidate/cand-" in d.current_url)
    opened = browser.current_url.rsplit("/", 1)[1]
    assert opened in expected
    _wait(browser, "#structure-3d")


def test_the_stable_campaign_filter_gives_the_ids_query_gives(finished, app_url, browser, shots):
    browser.get(app_url + "candidates")
    _wait(browser, "#table td")
    everything = _query_ids(finished)
    assert _text(browser, "#table-count") == f"{len(everything)} candidates match"
    assert _table_ids(browser) == everything  # the same order: e_above_hull, nulls last
    box = next(label for label in browser.find_elements(By.CSS_SELECTOR, "#filter-flags label")
               if label.text == "stable (campaign hull)")
    box.find_element(By.TAG_NAME, "input").click()
    expected = _query_ids(finished, "--stable-campaign")
    assert 0 < len(expected) < len(everything)
    WebDriverWait(browser, 15).until(lambda d: _text(d, "#table-count") == f"{len(expected)} candidates match")
    WebDriverWait(browser, 15).until(lambda d: _table_ids(d) == expected)
    browser.save_screenshot(str(shots / "candidates.png"))
    # the CSV link downloads the same selection, as `query --stable-campaign --format csv` prints it
    href = browser.find_element(By.ID, "download-csv").get_attribute("href")
    with urllib.request.urlopen(href) as response:
        rows = list(csv.DictReader(io.StringIO(response.read().decode())))
    assert [row["candidate_id"] for row in rows] == expected
    with urllib.request.urlopen(browser.find_element(By.ID, "download-json").get_attribute("href")) as response:
        assert [doc["candidate_id"] for doc in json.loads(response.read())] == expected


def test_a_candidate_page_shows_its_structure_in_3d_and_its_cif_parses(finished, app_url, browser, shots):
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure
    from pymatgen.io.cif import CifParser

    doc = json.loads(_cli("query", str(finished), "--format", "json", "--stable-campaign").stdout)[0]
    browser.get(app_url + f"candidate/{doc['candidate_id']}")
    _wait(browser, "#structure-3d .gl-container canvas, #structure-3d canvas")
    traces = browser.execute_script(
        "const gd = document.getElementById('structure-3d').querySelector('.js-plotly-plot');"
        "return Object.fromEntries(gd.data.map(t => [t.name, t.hovertext || []]));")
    atoms = [text.split(" ")[0] for text in traces["atoms"] if "next cell" not in text]
    assert set(atoms) == set(doc["elements"]) and len(atoms) >= doc["nsites"]  # face, edge and corner atoms twice
    assert "cell and bonds" in traces
    legend = _texts(browser, "#structure-legend .element")
    assert legend == sorted(doc["elements"])
    page = _text(browser, "main")
    assert doc["formula"] in page and "Lattice and symmetry" in page and "Relaxation" in page and "Provenance" in page
    time.sleep(1)  # let WebGL draw before the picture is taken
    browser.save_screenshot(str(shots / "candidate.png"))
    with urllib.request.urlopen(browser.find_element(By.ID, "download-cif").get_attribute("href")) as response:
        cif = response.read().decode()
    parsed = CifParser.from_str(cif).parse_structures(primitive=False)[0]
    stored = Structure.from_dict(doc["structure"])
    assert parsed.composition.reduced_formula == doc["formula"]
    assert StructureMatcher().fit(parsed, stored)
    with urllib.request.urlopen(browser.find_element(By.ID, "download-poscar").get_attribute("href")) as response:
        assert StructureMatcher().fit(Structure.from_str(response.read().decode(), fmt="poscar"), stored)


def test_nothing_is_fetched_from_outside_the_machine(finished, app_url, browser):
    requested_urls(browser)  # drop what earlier tests requested
    for path in ("", "hull", "candidates", "candidate/" + _query_ids(finished)[0]):
        browser.get(app_url + path)
        time.sleep(1.5)
    urls = requested_urls(browser)
    assert urls and all(url.startswith(app_url) or url.startswith(("data:", "blob:")) for url in urls), \
        [u for u in urls if not u.startswith(app_url)]
