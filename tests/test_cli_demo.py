"""`earlyia demo` and `earlyia learn` end to end through the CLI entry point, at tiny sizes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from earlyia.cli.main import main
from earlyia.io.table import LightCurves
from earlyia.sim import simulate

TINY = ["--n-objects", "300", "--realisations", "2", "--loops", "6", "--trees", "10", "--n-jobs", "1"]


def _table_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] in ("uncertainty", "random"):
            rows[cells[0]] = cells
    return rows


def test_demo_runs_the_whole_story(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    for name in ("lightcurves.parquet", "selection.csv", "features.parquet", "metrics.parquet", "metrics.csv", "queried.csv",
                 "learning_curves.png", "early_metrics.png", "summary.md", "manifest.json", "best_model.eia"):
        assert (out / name).stat().st_size > 0, name
    # the printed table has both strategies and agrees with the per-loop metrics on disk
    rows = _table_rows(printed)
    assert set(rows) == {"uncertainty", "random"}
    m = pd.read_parquet(out / "metrics.parquet")
    final = m[m["loop"] == 6]
    assert len(final) == 4
    for s, cells in rows.items():
        f = final[final["strategy"] == s]
        assert cells[1] == "2" and cells[2] == "16"  # realisations, labels (10 initial + 6)
        assert cells[6] == f"{f['fom'].mean():.3f} ± {f['fom'].std(ddof=1):.3f}"
    # the experiment learnt from the selected alerts' features of the simulated objects
    sel = pd.read_csv(out / "selection.csv")
    feats = pd.read_parquet(out / "features.parquet")
    assert len(feats) == int(sel["passed"].sum()) > 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["protocol"]["name"] == "honest" and man["config"]["strategies"] == ["uncertainty", "random"]
    assert "Reproduce: earlyia demo" in printed
    # running the demo again with other settings in the same folder replaces the previous experiment
    assert main(["demo", "--out", str(out), *TINY[:4], "--loops", "3", "--trees", "10", "--n-jobs", "1"]) == 0
    assert pd.read_parquet(out / "metrics.parquet")["loop"].max() == 3


def test_demo_on_data_and_learn_resumes(tmp_path, capsys):
    lc = simulate(300, random_state=11)
    lc.to_parquet(tmp_path / "lc.parquet")
    out = tmp_path / "demo"
    assert main(["demo", "--data", str(tmp_path / "lc.parquet"), "--out", str(out), *TINY[2:]]) == 0
    back = LightCurves.read_parquet(out / "lightcurves.parquet")
    np.testing.assert_array_equal(back.object_ids, lc.object_ids)
    capsys.readouterr()
    # earlyia learn on the demo's features; a second run reuses every realisation
    args = ["learn", str(out / "features.parquet"), "--strategy", "random", "--loops", "4", "--realisations", "2", "--trees", "8",
            "--n-jobs", "1", "--out", str(tmp_path / "learn")]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "| random | 2 | 14 |" in first
    assert main(args) == 0
    assert "2 realisation(s) were already complete" in capsys.readouterr().out
    assert (tmp_path / "learn" / "learning_curves.png").exists()
    # the same bytes under another path are the same experiment (the content is hashed, not the path)
    moved = tmp_path / "elsewhere" / "feats.parquet"
    moved.parent.mkdir()
    (out / "features.parquet").rename(moved)
    assert main([*args[:1], str(moved), *args[2:]]) == 0
    assert "2 realisation(s) were already complete" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "learn" / "manifest.json").read_text())
    assert str(moved) in json.dumps(manifest)  # provenance names the file actually read


def test_demo_and_learn_errors_are_one_line(tmp_path, capsys):
    lc = simulate(60, random_state=1)
    lc.objects = lc.objects.drop(columns="label")
    lc.to_parquet(tmp_path / "nolabel.parquet")
    assert main(["demo", "--data", str(tmp_path / "nolabel.parquet"), "--out", str(tmp_path / "d"), "--n-jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert "label" in err and "Traceback" not in err
    assert main(["learn", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "l")]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["learn", "x.parquet"])  # --out is required


def test_chunked_features_equal_one_call():
    from earlyia.cli.demo import _transform_with_bar
    from earlyia.features import get_extractor

    lc = simulate(120, random_state=3)
    ext = get_extractor("sigmoid", mode="robust")
    pd.testing.assert_frame_equal(_transform_with_bar(ext, lc, False, 7), ext.transform(lc, per="alert"))
