"""`earlyia demo` end to end at small sizes: the report, its numbers against the written outputs,
reproducibility, the page in headless Chromium; and `earlyia learn` on a feature table."""

from __future__ import annotations

import dataclasses
import html
import json
import math
import sqlite3
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import served_page
from earlyia.cli.main import main
from earlyia.demo import DemoConfig, html_table, paired_test, run_demo, simulate_season
from earlyia.sim import simulate

SMALL = DemoConfig(
    n_objects=360,
    seed=5,
    trees=10,
    fink_trees=10,
    augment_copies=1,
    impostors=5,
    cv_folds=3,
    al_realisations=4,
    al_loops=12,
    al_trees=10,
    targets=8,
    n_jobs=1,
)
ARGS = [
    "--n-objects",
    "360",
    "--seed",
    "5",
    "--trees",
    "10",
    "--fink-trees",
    "10",
    "--impostors",
    "5",
    "--realisations",
    "4",
    "--loops",
    "12",
    "--al-trees",
    "10",
    "--targets",
    "8",
    "--n-jobs",
    "1",
]
pytestmark = pytest.mark.xdist_group(
    "demo"
)  # one worker runs the demo once for every test of this file
#: a folder name a browser would run if the report did not escape it (the report prints the command
#: with --out)
ODD = 'demo <img src=x onerror="alert(1)"><script>alert(2)</script> & "q"'


class Page(HTMLParser):
    """Elements with their attributes, and the text of every table cell, as a browser would build
    them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.tables: list[list[list[str]]] = []
        self.text: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / ODD
    lines: list[str] = []
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["demo", "--out", str(out), *ARGS])
    assert code == 0
    lines = buf.getvalue().splitlines()
    return out, lines


def test_demo_writes_one_self_contained_report(demo):
    out, lines = demo
    for name in (
        "index.html",
        "summary.json",
        "early_flagging.png",
        "early_flagging.csv",
        "active_learning.png",
        "active_learning.csv",
        "night.png",
        "heldout_scores.parquet",
        "earlyia_model.eia",
        "fink_model.eia",
        "night/scores.parquet",
        "night/candidates.csv",
        "night/targets.csv",
        "night/spectra.csv",
        "night/followup.db",
    ):
        assert (out / name).stat().st_size > 0, name
    page = parse(out / "index.html")
    tags = [t for t, _ in page.elements]
    assert "script" not in tags and "iframe" not in tags
    images = [a["src"] for t, a in page.elements if t == "img"]
    assert sorted(images) == ["active_learning.png", "early_flagging.png", "night.png"]
    for src in images:  # every image is a file of the folder and decodes
        assert "/" not in src and ":" not in src
        with Image.open(out / src) as im:
            im.verify()
        with Image.open(out / src) as im:
            assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200
    # the folder name (printed in the reproduce command) reaches the page as text, never as markup
    assert any(ODD in t for t in page.text)
    assert sum(1 for t, _ in page.elements if t == "img") == 3
    # progress on every step, printed as it goes (not a terminal here)
    for step in ("1/4", "2/4", "3/4", "4/4"):
        assert any(line.startswith(step) for line in lines), step
    assert sum("realisations of each strategy done" in line for line in lines) >= 1
    assert any(
        line.startswith("report: ") and "Reproduce: earlyia demo --out" in line for line in lines
    )


def _reference_flagging(
    scores: pd.DataFrame, column: str, threshold: float, n: int
) -> tuple[float, float, int, int]:
    """Efficiency and purity of flagging within ``n`` detections, object by object (the slow
    obvious way)."""
    tp = fp = n_pos = 0
    for _, g in scores.groupby("object_id"):
        ia = g["label"].iloc[0] == "SN Ia"
        n_pos += ia
        flagged = bool((g.loc[g["ndethist"] <= n, column] > threshold).any())
        tp += flagged and ia
        fp += flagged and not ia
    return tp / n_pos, (tp / (tp + fp) if tp + fp else 0.0), tp, fp


def test_flagging_table_agrees_with_the_written_scores(demo):
    out, _ = demo
    summary = json.loads((out / "summary.json").read_text())
    scores = pd.read_parquet(out / "heldout_scores.parquet")
    table = pd.read_csv(out / "early_flagging.csv")
    split = pd.read_csv(out / "split.csv", dtype=str)
    held = set(split.loc[split["role"] == "held out", "object_id"])
    assert set(scores["object_id"]) <= held  # scored objects were never trained on
    models = [
        (
            k,
            sorted(
                pd.read_parquet(out / "earlyia_training_rows.parquet")["object_id"]
                .astype(str)
                .unique()
            ),
        )
        for k in ("earlyia",)
    ]
    assert not held & set(models[0][1])
    thresholds = {
        "earlyia": ("score_earlyia", summary["early_flagging"]["threshold"]),
        "earlyia_05": ("score_earlyia", 0.5),
        "fink": ("score_fink", 0.5),
    }
    assert table["max_detections"].tolist() == list(range(1, 21))
    for key, (col, thr) in thresholds.items():
        for n in (1, 3, 5, 10, 20):
            eff, pur, tp, fp = _reference_flagging(scores, col, thr, n)
            row = table[table["max_detections"] == n].iloc[0]
            assert row[f"{key}_efficiency"] == pytest.approx(eff) and row[
                f"{key}_purity"
            ] == pytest.approx(pur), (key, n)
            assert (row[f"{key}_flagged_ia"], row[f"{key}_flagged_other"]) == (tp, fp)
    assert table["n_ia"].iloc[0] == scores.groupby("object_id")["label"].first().eq("SN Ia").sum()
    # equal purity: the best efficiency over every threshold whose purity reaches the target (brute
    # force over thresholds)
    for key, col in (("earlyia", "score_earlyia"), ("fink", "score_fink")):
        top: dict[str, float] = {}
        ia: dict[str, bool] = {}
        for o, nd, lab, sc in zip(
            scores["object_id"], scores["ndethist"], scores["label"], scores[col], strict=True
        ):
            ia[o] = lab == "SN Ia"
            if nd <= 20:
                top[o] = max(top.get(o, -np.inf), sc)
        best = 0.0
        for t in set(top.values()):  # flag every object whose best score reaches t
            tp = sum(1 for o, v in top.items() if v >= t and ia[o])
            fp = sum(1 for o, v in top.items() if v >= t and not ia[o])
            if tp / (tp + fp) >= summary["config"]["min_purity"]:
                best = max(best, tp / sum(ia.values()))
        assert summary["early_flagging"]["at_purity"][key]["efficiency"] == pytest.approx(best), key
    # the page shows the same numbers (3 decimals)
    page = parse(out / "index.html")
    by_n = next(t for t in page.tables if t[0][0] == "N detections")
    for row in by_n[1:]:
        ref = table[table["max_detections"] == int(row[0])].iloc[0]
        assert row[1:] == [
            f"{ref[c]:.3f}"
            for c in (
                "earlyia_efficiency",
                "earlyia_purity",
                "earlyia_05_efficiency",
                "earlyia_05_purity",
                "fink_efficiency",
                "fink_purity",
            )
        ]


def test_active_learning_statistics_agree_with_the_experiment(demo):
    out, lines = demo
    summary = json.loads((out / "summary.json").read_text())["active_learning"]
    table = pd.read_csv(out / "active_learning.csv")
    metrics = pd.read_parquet(out / "active_learning" / "metrics.parquet")
    last = metrics[metrics["loop"] == 12]
    assert len(table) == 4 and len(last) == 8
    for _, r in table.iterrows():
        u = last[(last["strategy"] == "uncertainty") & (last["realisation"] == r["realisation"])][
            "fom"
        ].item()
        rnd = last[(last["strategy"] == "random") & (last["realisation"] == r["realisation"])][
            "fom"
        ].item()
        assert r["fom_difference"] == pytest.approx(u - rnd)
    d = table["fom_difference"].to_numpy()
    got = summary["fom_difference"]
    assert got["mean"] == pytest.approx(d.mean())
    from scipy import stats

    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    k = wins + losses
    tail = sum(math.comb(k, i) for i in range(0, min(wins, losses) + 1)) / 2**k
    assert got["sign_p"] == pytest.approx(min(1.0, 2 * tail))
    assert summary["verdict"] in lines[-4] or any(summary["verdict"] in line for line in lines)


def test_paired_test_says_real_only_when_it_is():
    rng = np.random.default_rng(0)
    clear = paired_test(0.05 + 0.01 * rng.standard_normal(30))
    assert clear["ci_low"] > 0 and clear["sign_p"] < 1e-6 and clear["wins"] == 30
    noise = paired_test(0.05 * rng.standard_normal(30))
    assert noise["ci_low"] < 0 < noise["ci_high"]
    from earlyia.demo import al_verdict

    assert "a real difference" in al_verdict(clear) and "no real difference" in al_verdict(noise)


def test_the_night_follows_the_loop(demo):
    out, _ = demo
    summary = json.loads((out / "summary.json").read_text())["night"]
    truth = pd.read_csv(out / "split.csv", dtype=str).set_index("object_id")["label"]
    scores = pd.read_parquet(out / "night" / "scores.parquet")
    assert (np.floor(scores["mjd"]) == summary["night_mjd"]).all() and len(scores) == summary[
        "n_alerts"
    ]
    cand = pd.read_csv(out / "night" / "candidates.csv", dtype={"object_id": str})
    thr = summary["candidate_threshold"]
    # every candidate passes the rule on one of tonight's alerts; every object that does is a
    # candidate
    rule = (
        scores["passed"]
        & (scores["score"] > thr)
        & (scores["ndethist"] <= 20)
        & (scores["drb"] > 0.5)
        & (scores["classtar"] > 0.4)
    )
    assert set(cand["object_id"]) <= set(scores.loc[rule, "object_id"])
    assert len(cand) == summary["n_candidates"]
    targets = pd.read_csv(out / "night" / "targets.csv", dtype={"object_id": str})
    assert len(targets) == summary["n_targets_al"] + summary["n_targets_early"] >= 1
    assert set(targets["object_id"]) <= set(scores["object_id"])
    assert (targets["true_type"] == truth.reindex(targets["object_id"]).to_numpy()).all()
    with sqlite3.connect(out / "night" / "followup.db") as con:
        labels = dict(con.execute("SELECT object_id, type FROM labels").fetchall())
        models = con.execute("SELECT version, status FROM models ORDER BY rowid").fetchall()
    assert labels == dict(
        zip(targets["object_id"], targets["true_type"], strict=True)
    )  # the spectra are the true types
    rt = summary["retrain"]
    assert len(models) == 2 and models[1][0] == rt["candidate_version"]
    assert dict(models)[rt["candidate_version"]] == (
        "production" if rt["promoted"] else "candidate"
    )
    assert rt["n_new_labels"] == sum(1 for t in labels.values() if t and t not in ("SN", "Unknown"))


def _numbers(summary: dict) -> dict:
    """The summary without what legitimately changes between runs (times, paths, model hashes
    that include the date)."""
    s = json.loads(json.dumps(summary))
    s.pop("timings")
    s.pop("command")
    s["early_flagging"].pop("models")
    s["night"].pop("database")
    for k in ("candidate_version", "parent"):
        s["night"]["retrain"].pop(k)
    s["config"].pop("n_jobs")
    return s


def _differences(a, b, path: str = "") -> list[str]:
    """Paths where two JSON trees differ. Floats agree to 1e-6: scikit-learn sums the trees'
    probabilities over threads in any order, and the calibration carries those last-bit
    differences into the thresholds (~1e-8)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            d
            for k in sorted(set(a) | set(b))
            for d in _differences(a.get(k), b.get(k), f"{path}/{k}")
        ]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _differences(x, y, f"{path}[{i}]")
        ]
    if (
        isinstance(a, float)
        and isinstance(b, float)
        and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    ):
        return []
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def test_same_seed_same_numbers_serial_or_parallel(demo, tmp_path):
    out, _ = demo
    first = json.loads((out / "summary.json").read_text())
    run_demo(tmp_path / "again", dataclasses.replace(SMALL, n_jobs=2), say=lambda _line: None)
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert _differences(_numbers(again), _numbers(first)) == []
    for name in (
        "early_flagging.csv",
        "active_learning.csv",
        "night/targets.csv",
        "night/candidates.csv",
    ):
        pd.testing.assert_frame_equal(
            pd.read_csv(tmp_path / "again" / name), pd.read_csv(out / name)
        )
    # and the seed matters
    lc5, arch5, _ = simulate_season(SMALL)
    lc6, arch6, _ = simulate_season(dataclasses.replace(SMALL, seed=6))
    assert not np.array_equal(arch5, arch6) and not np.array_equal(lc5.flux[:50], lc6.flux[:50])


def test_tables_escape_every_string():
    evil = '<img src=x onerror="alert(1)">&amp;<script>alert(2)</script>'
    text = html_table(
        pd.DataFrame({"object_id": [evil], "score": [0.5]}), {"object_id": evil, "score": "score"}
    )
    page = Page()
    page.feed(text)
    assert [t for t, _ in page.elements] == [
        "table",
        "thead",
        "tr",
        "th",
        "th",
        "tbody",
        "tr",
        "td",
        "td",
    ]
    assert page.tables[0] == [[evil, "score"], [evil, "0.500"]]


def test_bad_sizes_are_one_line_errors(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--n-objects", "50"]) == 2
    err = capsys.readouterr().err
    assert (
        "n_objects must be >= 200" in err
        and "Traceback" not in err
        and len(err.strip().splitlines()) == 1
    )
    assert main(["demo", "--out", str(tmp_path / "d"), "--realisations", "0"]) == 2
    assert "realisations must be >= 1" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "d"), "--min-purity", "1.5"]) == 2
    assert "min-purity must be strictly between 0 and 1" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# headless Chromium
def test_report_renders_in_headless_chromium(demo, browser):
    out, _ = demo
    with served_page(browser, out) as (page, dialogs, failed):
        images = page.evaluate(
            "Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, "
            "i.naturalWidth])"
        )
        assert sorted(src for src, _, _ in images) == [
            "active_learning.png",
            "early_flagging.png",
            "night.png",
        ]
        assert all(done and width > 300 for _, done, width in images), images
        assert page.locator("script").count() == 0 and not dialogs and not failed
        assert ODD in page.locator("body").inner_text()
        assert page.locator("h2").all_text_contents()[:3] == [
            "1. Early flagging: earlyia against Fink's configuration",
            "2. Active learning against random sampling",
            "3. One night of the live loop",
        ]


# ------------------------------------------------------------------------------------------------
# earlyia learn
def test_learn_on_a_feature_table_resumes(tmp_path, capsys):
    from earlyia.features import get_extractor, write_features

    lc = simulate(300, random_state=11)
    ext = get_extractor("sigmoid", mode="robust")
    feats = ext.transform(lc.replay(min_detections=3, max_detections=20), per="alert")
    write_features(
        feats, tmp_path / "features.parquet", ext, survey=lc.survey, bands=tuple(lc.bands)
    )
    args = [
        "learn",
        str(tmp_path / "features.parquet"),
        "--strategy",
        "random",
        "--loops",
        "4",
        "--realisations",
        "2",
        "--trees",
        "8",
        "--n-jobs",
        "1",
        "--out",
        str(tmp_path / "learn"),
    ]
    assert main(args) == 0
    assert "| random | 2 | 14 |" in capsys.readouterr().out
    assert main(args) == 0
    assert "2 realisation(s) were already complete" in capsys.readouterr().out
    assert (tmp_path / "learn" / "learning_curves.png").exists()
    # the same bytes under another path are the same experiment (the content is hashed, not the
    # path)
    moved = tmp_path / "elsewhere" / "feats.parquet"
    moved.parent.mkdir()
    (tmp_path / "features.parquet").rename(moved)
    assert main([*args[:1], str(moved), *args[2:]]) == 0
    assert "2 realisation(s) were already complete" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "learn" / "manifest.json").read_text())
    assert str(moved) in json.dumps(manifest)  # provenance names the file actually read
    assert main(["learn", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "l")]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["learn", "x.parquet"])  # --out is required


def test_odd_folder_name_is_escaped_in_the_raw_page(demo):
    out, _ = demo
    raw = (out / "index.html").read_text(encoding="utf-8")
    assert html.escape(ODD, quote=True) in raw and ODD not in raw
