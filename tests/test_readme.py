"""The README's tour runs as written: every command of its tested blocks, in order, from a fresh
folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import shared

REPO = Path(__file__).resolve().parents[1]


def readme_blocks(text: str) -> dict[str, str]:
    """The shell blocks the README marks with ``<!-- readme-test: NAME -->``, by name."""
    return dict(re.findall(r"<!-- readme-test: (\S+) -->\s*```bash\n(.*?)```", text, flags=re.S))


def test_the_readme_marks_its_tour():
    blocks = readme_blocks((REPO / "README.md").read_text())
    assert "tour" in blocks and "earlyia tonight" in blocks["tour"]


@pytest.mark.slow
def test_the_readme_tour_runs_as_written(tmp_path):
    data = shared("ztf_fink_alerts_pool/ztf_alerts_pool.parquet").parents[1]
    # the README's paths: a clone (the working folder) beside ../shared/data
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(data, target_is_directory=True)
    work = tmp_path / "clone"
    work.mkdir()
    script = readme_blocks((REPO / "README.md").read_text())["tour"]
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    env.pop("EARLYIA_DATA", None)  # the README's relative paths, not the test's environment
    res = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = work / "earlyia-out"
    assert (out / "tonight" / "index.html").stat().st_size > 0
    assert (
        (out / "scores.parquet").exists()
        and (out / "model.eia").exists()
        and (out / "loop.db").exists()
    )
    assert "Traceback" not in res.stderr
    # nothing written outside the one ignored output folder
    assert sorted(p.name for p in work.iterdir()) == ["earlyia-out"]
