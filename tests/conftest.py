"""Shared test helpers: the one way tests find the shared data.

``shared(relpath)`` returns the path under ``$EARLYIA_DATA`` (default ``../shared/data``) and
skips the test when it is absent, unless ``EARLYIA_STRICT_DATA=1`` (set by ``.ci/run``), in
which case absent data fails the test.

Hypothesis: ``HYPOTHESIS_PROFILE=ci`` (set by ``.ci/run``) derandomises the property tests, so a
clean-clone CI run is reproducible; a developer's run keeps exploring new examples (and a failure
found there becomes an ``@example``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import settings

from earlyia.data import data_dir, reference_dir, strict

# The same examples on every run (the README's test command must not fail by chance);
# HYPOTHESIS_PROFILE=explore searches new ones, and what it finds becomes an @example once
# understood.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _require(path: Path) -> Path:
    if path.exists():
        return path
    message = f"shared data not found: {path} (set EARLYIA_DATA)"
    if strict():
        pytest.fail(message + " [strict data mode]")
    pytest.skip(message)


def shared(relative: str) -> Path:
    """Path of ``relative`` under the shared data directory (skip or fail when absent)."""
    return _require(data_dir() / relative)


def reference(relative: str) -> Path:
    """Path of ``relative`` under the shared reference directory (skip or fail when absent)."""
    return _require(reference_dir() / relative)


@pytest.fixture
def shared_data():
    return shared


@pytest.fixture
def reference_data():
    return reference


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """earlyia's cache in a temporary folder, never the user's home; the kernels' first-run note
    is marked as shown (output checks of commands stay independent of test order;
    tests/test_kernels.py tests the note)."""
    from earlyia.kernels import marker

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EARLYIA_CACHE_DIR", str(tmp_path_factory.mktemp("earlyia-cache")))
        marker().parent.mkdir(parents=True, exist_ok=True)
        marker().write_text("tests\n")
        yield


#: Chromium without the background connections this closed network refuses.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright, offline (no browser download; .ci/run installs the
    package)."""
    exe = (
        os.environ.get("EARLYIA_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    sync_api = (
        pytest.importorskip("playwright.sync_api")
        if not strict()
        else __import__("playwright.sync_api").sync_api
    )
    if exe is None:
        message = "no headless Chromium (apt-get install chromium, or set EARLYIA_CHROMIUM)"
        if strict():
            pytest.fail(message + " [strict mode]")
        pytest.skip(message)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@contextlib.contextmanager
def served_page(browser, directory: Path):
    """``directory``'s index.html served on 127.0.0.1 and loaded in ``browser``: (page, dialogs,
    failed requests)."""
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(directory))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = browser.new_page()
        dialogs, failed = [], []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html", wait_until="load")
        yield page, dialogs, failed
        page.close()
    finally:
        server.shutdown()
        server.server_close()
