"""Shared test helpers: the one way tests find the shared data.

``shared(relpath)`` returns the path under ``$EARLYIA_DATA`` (default ``../shared/data``) and
skips the test when it is absent, unless ``EARLYIA_STRICT_DATA=1`` (set by ``.ci/run``), in
which case absent data fails the test.

Hypothesis: ``HYPOTHESIS_PROFILE=ci`` (set by ``.ci/run``) derandomises the property tests, so a
clean-clone CI run is reproducible; a developer's run keeps exploring new examples (and a failure
found there becomes an ``@example``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from earlyia.data import data_dir, reference_dir, strict

# The same examples on every run (the README's test command must not fail by chance); HYPOTHESIS_PROFILE=explore
# searches new ones, and what it finds becomes an @example once understood.
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
    """earlyia's cache in a temporary folder, never the user's home; the kernels' first-run note is marked as
    shown (output checks of commands stay independent of test order; tests/test_kernels.py tests the note)."""
    from earlyia.kernels import marker

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EARLYIA_CACHE_DIR", str(tmp_path_factory.mktemp("earlyia-cache")))
        marker().parent.mkdir(parents=True, exist_ok=True)
        marker().write_text("tests\n")
        yield
