"""Where the shared data is found: the environment, a source checkout, or an installed package's
cwd."""

from __future__ import annotations

from pathlib import Path

import pytest

from earlyia import data


def test_environment_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("EARLYIA_DATA", str(tmp_path / "d"))
    assert data.data_dir() == (tmp_path / "d").resolve()


def test_source_checkout_uses_the_repository_root(monkeypatch, tmp_path):
    monkeypatch.delenv("EARLYIA_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    repo = Path(data.__file__).resolve().parents[2]
    assert (repo / "pyproject.toml").is_file()
    assert data.data_dir() == (repo.parent / "shared" / "data").resolve()


def test_installed_package_uses_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("EARLYIA_DATA", raising=False)
    monkeypatch.setattr(
        data, "_REPO_ROOT", tmp_path / "site-packages-like"
    )  # no pyproject.toml there
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert data.data_dir() == (tmp_path / "shared" / "data").resolve()
    with pytest.raises(data.DataNotFoundError, match="EARLYIA_DATA"):
        data.shared_path("nothing/here.csv")
