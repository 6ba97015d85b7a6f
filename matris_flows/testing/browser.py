"""A real headless browser (Debian's chromium + chromedriver, driven by selenium) and a ``serve`` process, for tests and benchmarks."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


class BrowserMissing(RuntimeError):
    """No chromium or chromedriver on this machine."""


def _first(paths: tuple[str, ...], name: str) -> str:
    for path in (*paths, shutil.which(name) or ""):
        if path and os.access(path, os.X_OK):
            return path
    raise BrowserMissing(f"no {name} found: apt-get install chromium chromium-driver (bash .ci/setup does)")


@contextmanager
def headless_chrome(width: int = 1400, height: int = 1000) -> Iterator:
    """A selenium Chrome driver of a headless chromium; its performance log records every request the pages make."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = _first(CHROMIUM_CANDIDATES, "chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}",
                     "--enable-unsafe-swiftshader", "--disable-gpu-sandbox"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(_first(CHROMEDRIVER_CANDIDATES, "chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver) -> list[str]:
    """URLs the browser requested since the performance log was last read."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


@contextmanager
def serving(directory: str | Path, refresh_s: float = 2.0, timeout_s: float = 60.0) -> Iterator[str]:
    """``matris-flows serve DIRECTORY --port 0`` in a subprocess; yields its URL, stops it afterwards.

    Retried until it starts (a campaign that is starting has no store yet) or ``timeout_s`` passes.
    """
    deadline = time.monotonic() + timeout_s
    command = [sys.executable, "-m", "matris_flows.cli", "serve", str(directory), "--port", "0", "--refresh", str(refresh_s)]
    while True:
        errors = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a chatty server never blocks on it
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        line = process.stdout.readline()
        if match := re.search(r"http://\S+/", line):
            break
        process.wait()
        errors.seek(0)
        error = errors.read()
        if time.monotonic() > deadline:
            raise RuntimeError(f"serve did not start: {error.strip()}")
        time.sleep(0.5)
    try:
        yield match.group(0)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
