"""Experiment runner: files written, same seed same numbers, parallel = serial, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from earlyia.errors import ConfigError, InputError
from earlyia.learn.experiment import realisation_seed, run_experiment
from earlyia.learn.report import SUMMARY_METRICS

SMALL = dict(
    n_loops=12, n_realisations=3, classifier={"n_estimators": 15}, n_jobs=1, progress=False
)


def make_features(n_objects: int = 160, alerts: int = 3, seed: int = 0) -> pd.DataFrame:
    """A small labelled feature table: one informative feature, one weak, one noise; several
    alerts per object."""
    rng = np.random.default_rng(seed)
    types = rng.choice(
        ["SN Ia", "SN II", "SN Ic", "SN"], size=n_objects, p=[0.45, 0.35, 0.15, 0.05]
    )
    rows = []
    for i, t in enumerate(types):
        shift = 1.0 if t == "SN Ia" else 0.0
        for k in range(alerts):
            rows.append(
                {
                    "object_id": f"obj{i:04d}",
                    "alert_id": f"obj{i:04d}_{k + 3}",
                    "mjd": 59000.0 + k,
                    "n_detections": k + 3,
                    "label": t,
                    "valid": bool(rng.random() > 0.03),
                    "reason": "",
                    "f_strong": shift + (0.6 + 0.3 * k) * rng.standard_normal(),
                    "f_weak": 0.3 * shift + rng.standard_normal(),
                    "f_noise": rng.standard_normal(),
                }
            )
    return pd.DataFrame(rows)


def _numbers(m: pd.DataFrame) -> pd.DataFrame:
    return (
        m.drop(columns=["seconds"])
        .sort_values(["strategy", "realisation", "loop"])
        .reset_index(drop=True)
    )


@pytest.fixture(scope="module")
def df():
    return make_features()


def test_writes_everything_and_the_summary_matches_the_metrics(df, tmp_path):
    res = run_experiment(df, ["uncertainty", "random"], out_dir=tmp_path, **SMALL)
    for name in (
        "metrics.parquet",
        "metrics.csv",
        "early_metrics.parquet",
        "early_metrics.csv",
        "queried.parquet",
        "queried.csv",
        "initial.csv",
        "manifest.json",
        "summary.md",
        "best.json",
        "best_model.eia",
        "learning_curves.png",
        "early_metrics.png",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    for png in ("learning_curves.png", "early_metrics.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = pd.read_parquet(tmp_path / "metrics.parquet")
    assert len(m) == 2 * 3 * (12 + 1)
    assert set(m["strategy"]) == {"uncertainty", "random"}
    # labels grow by the batch size; 10 initial (5 positive)
    assert (
        m.groupby(["strategy", "realisation"])["n_labels"].apply(lambda s: (np.diff(s) == 1).all())
    ).all()
    assert (m.loc[m["loop"] == 0, "n_labels"] == 10).all() and (
        m.loc[m["loop"] == 0, "n_labels_positive"] == 5
    ).all()
    # queried ids: 12 per realisation, never an initial row, never twice, never a test object
    # (honest)
    q = pd.read_csv(tmp_path / "queried.csv", dtype={"id": str, "object_id": str})
    ini = pd.read_csv(tmp_path / "initial.csv", dtype={"id": str, "object_id": str})
    for (s, r), g in q.groupby(["strategy", "realisation"]):
        assert len(g) == 12 and g["id"].is_unique
        assert not set(g["id"]) & set(ini[(ini["strategy"] == s) & (ini["realisation"] == r)]["id"])
    # the summary table is the mean +- std of the final loop
    final = m[m["loop"] == 12]
    text = (tmp_path / "summary.md").read_text()
    for s in ("uncertainty", "random"):
        f = final[final["strategy"] == s]
        row = res.summary.set_index("strategy").loc[s]
        assert row["fom_mean"] == pytest.approx(f["fom"].mean())
        assert row["efficiency_std"] == pytest.approx(f["efficiency"].std(ddof=1))
        assert f"{f['purity'].mean():.3f} ± {f['purity'].std(ddof=1):.3f}" in text
    assert all(v in text for v in SUMMARY_METRICS.values())
    # paired differences: per-realisation final FoM of uncertainty minus random, against a direct
    # computation
    u = final[final["strategy"] == "uncertainty"].set_index("realisation")["fom"]
    r_ = final[final["strategy"] == "random"].set_index("realisation")["fom"]
    d = (u - r_).to_numpy()
    row = res.paired.iloc[0]
    assert (row["strategy"], row["baseline"]) == ("uncertainty", "random")
    assert row["fom_diff_mean"] == pytest.approx(d.mean()) and row["fom_diff_std"] == pytest.approx(
        d.std(ddof=1)
    )
    assert row["fom_wins"] == pytest.approx((d > 0).mean())
    assert "Paired differences" in text
    # manifest: config, seeds, data hash, versions, protocol
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["status"] == "complete" and man["protocol"]["name"] == "honest"
    assert man["seeds"]["r001"] == realisation_seed(42, 1)
    assert len(man["data"]["sha256"]["<DataFrame>"]) == 64 and "numpy" in man["versions"]
    assert man["data"]["dropped"]["unlabelled"] > 0  # the vague 'SN' type is not a negative
    # best model: a safe model file trained on exactly that realisation's labelled rows
    from earlyia.model.artifact import Model

    best = json.loads((tmp_path / "best.json").read_text())
    assert best["final"]["fom"] == pytest.approx(final["fom"].max())
    model = Model.load(tmp_path / "best_model.eia")
    ids = json.loads(
        (
            tmp_path
            / "realisations"
            / best["strategy"]
            / f"r{best['realisation']:03d}"
            / "ids.json"
        ).read_text()
    )
    assert sorted(model.card["training"]["alert_ids"]) == sorted(
        ids["initial_ids"] + ids["queried_ids"]
    )
    p = model.predict_proba(df[["f_strong", "f_weak", "f_noise"]].to_numpy())
    assert p.shape[0] == len(df) and np.all((p >= 0) & (p <= 1))


def test_same_seed_same_numbers_and_parallel_equals_serial(df, tmp_path):
    a = run_experiment(df, ["uncertainty", "random"], out_dir=tmp_path / "a", seed=3, **SMALL)
    b = run_experiment(
        df, ["uncertainty", "random"], out_dir=tmp_path / "b", seed=3, **{**SMALL, "n_jobs": 2}
    )
    c = run_experiment(df, ["uncertainty", "random"], out_dir=tmp_path / "c", seed=4, **SMALL)
    pd.testing.assert_frame_equal(_numbers(a.metrics), _numbers(b.metrics))
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "a" / "queried.csv"), pd.read_csv(tmp_path / "b" / "queried.csv")
    )
    assert not _numbers(a.metrics).equals(_numbers(c.metrics))
    # paired design: realisation r starts from the same labelled rows for every strategy
    ini = pd.read_csv(tmp_path / "a" / "initial.csv")
    for _r, g in ini.groupby("realisation"):
        u, rnd = (sorted(g.loc[g["strategy"] == s, "id"]) for s in ("uncertainty", "random"))
        assert u == rnd


def test_fink_protocol_and_batches(df, tmp_path):
    res = run_experiment(
        df,
        ["random"],
        out_dir=tmp_path,
        protocol="fink",
        batch_size=3,
        n_initial=6,
        save_models=False,
        plots=False,
        **{**SMALL, "n_loops": 4},
    )
    m = res.metrics
    assert (m.loc[m["loop"] == 4, "n_labels"] == 6 + 4 * 3).all()
    # fink: the test set is every row not in training
    assert (m["n"] + m["n_labels"] == m["n"].iloc[0] + 6).all()
    assert not (tmp_path / "best_model.eia").exists()


def test_rerun_skips_and_other_config_is_refused(df, tmp_path):
    first = run_experiment(df, ["random"], out_dir=tmp_path, **SMALL)
    assert first.n_computed == 3
    again = run_experiment(df, ["random"], out_dir=tmp_path, **SMALL)
    assert again.n_computed == 0 and again.n_skipped == 3
    pd.testing.assert_frame_equal(_numbers(first.metrics), _numbers(again.metrics))
    # more realisations and another strategy later: only the new ones are computed, the old ones are
    # reused
    more = run_experiment(
        df, ["random", "uncertainty"], out_dir=tmp_path, **{**SMALL, "n_realisations": 4}
    )
    assert more.n_computed == 1 + 4 and more.n_skipped == 3
    old = more.metrics[(more.metrics["strategy"] == "random") & (more.metrics["realisation"] < 3)]
    pd.testing.assert_frame_equal(_numbers(old).reset_index(drop=True), _numbers(first.metrics))
    with pytest.raises(ConfigError, match="another experiment"):
        run_experiment(df, ["random"], out_dir=tmp_path, **{**SMALL, "n_loops": 5})
    (tmp_path / "mine.txt").write_text("not an experiment file")
    replaced = run_experiment(
        df, ["random"], out_dir=tmp_path, overwrite=True, **{**SMALL, "n_loops": 5}
    )
    assert replaced.n_computed == 3 and (replaced.metrics["loop"].max() == 5)
    assert (
        not (tmp_path / "realisations" / "uncertainty").exists()
        and (tmp_path / "mine.txt").exists()
    )


def test_bad_input_is_a_clear_error(df, tmp_path):
    # a text column that is not a feature is not taken as one
    res = run_experiment(
        df.assign(note="x"),
        ["random"],
        out_dir=tmp_path / "note",
        **{**SMALL, "n_realisations": 1, "n_loops": 1},
    )
    assert res.manifest["data"]["extractor"]["names"] == ["f_strong", "f_weak", "f_noise"]
    with pytest.raises(InputError, match="label"):
        run_experiment(df.drop(columns="label"), ["random"], out_dir=tmp_path, **SMALL)
    with pytest.raises(ConfigError):
        run_experiment(df, ["no-such-strategy"], out_dir=tmp_path, **SMALL)
    with pytest.raises(ConfigError):
        run_experiment(df, ["random"], out_dir=tmp_path, protocol="leaky", **SMALL)
    with pytest.raises(ConfigError, match="classifier"):
        run_experiment(df, ["random"], out_dir=tmp_path, **{**SMALL, "classifier": {"n_trees": 3}})
    with pytest.raises(InputError, match="not found"):
        run_experiment(tmp_path / "missing.parquet", ["random"], out_dir=tmp_path, **SMALL)


def test_kill_and_resume_gives_the_uninterrupted_numbers(df, tmp_path):
    """SIGKILL a run after its first completed realisation; the re-run computes only the rest."""
    data = tmp_path / "features.parquet"
    df.to_parquet(data)
    cfg = dict(
        n_loops=40,
        n_realisations=6,
        classifier={"n_estimators": 40},
        n_jobs=1,
        progress=False,
        seed=9,
    )
    script = textwrap.dedent(f"""
        import pandas as pd
        from earlyia.learn.experiment import run_experiment
        run_experiment(pd.read_parquet({str(data)!r}), ["uncertainty"],
                       out_dir={str(tmp_path / "run")!r}, **{cfg!r})
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    root = tmp_path / "run" / "realisations" / "uncertainty"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if root.exists() and any((d / "done.json").exists() for d in root.glob("r*")):
            break
        time.sleep(0.005)
    assert proc.poll() is None, (
        f"the run finished before it could be killed: {proc.stderr.read()[-2000:]!r}"
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()  # reaps it and closes its pipe
    done_before = sorted(d.name for d in root.glob("r*") if (d / "done.json").exists())
    assert 1 <= len(done_before) < 6
    mtimes = {n: (root / n / "done.json").stat().st_mtime_ns for n in done_before}
    (root / ".r005.abc.tmp").mkdir()  # a half-written realisation folder of a killed run
    resumed = run_experiment(
        pd.read_parquet(data), ["uncertainty"], out_dir=tmp_path / "run", **cfg
    )
    assert resumed.n_computed == 6 - len(done_before)
    assert all((root / n / "done.json").stat().st_mtime_ns == t for n, t in mtimes.items())
    assert not list(root.glob(".*.tmp"))
    clean = run_experiment(
        pd.read_parquet(data), ["uncertainty"], out_dir=tmp_path / "clean", **cfg
    )
    pd.testing.assert_frame_equal(_numbers(resumed.metrics), _numbers(clean.metrics))
