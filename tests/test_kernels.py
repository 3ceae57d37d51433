"""The first run of an installation says it compiles the kernels, once."""

from __future__ import annotations

import io

import pytest

from earlyia.kernels import FirstCompile, marker


def test_first_run_says_so_and_later_runs_are_quiet(monkeypatch, tmp_path):
    monkeypatch.setenv("EARLYIA_CACHE_DIR", str(tmp_path / "cache"))
    first = io.StringIO()
    with FirstCompile(first):
        pass
    assert (
        "first run of this installation" in first.getvalue()
        and "kernels cached" in first.getvalue()
    )
    assert marker().exists()
    again = io.StringIO()
    with FirstCompile(again):
        pass
    assert again.getvalue() == ""


def test_a_failed_first_run_does_not_mark_the_kernels_compiled(monkeypatch, tmp_path):
    monkeypatch.setenv("EARLYIA_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError), FirstCompile(io.StringIO()):
        raise RuntimeError("boom")
    assert not marker().exists()


def test_the_marker_is_keyed_by_the_earlyia_version(monkeypatch, tmp_path):
    monkeypatch.setenv("EARLYIA_CACHE_DIR", str(tmp_path))
    import earlyia.kernels as kernels

    a = kernels.marker()
    monkeypatch.setattr(kernels, "__version__", "0.0.0-other")
    assert kernels.marker() != a and kernels.marker().parent == a.parent
