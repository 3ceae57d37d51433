"""The replay protocol: reproduces the reference's Fink figures and a slow per-threshold
reference."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import reference, shared
from earlyia.errors import InputError
from earlyia.evaluate import best_at_purity, efficiency_purity_curve, evaluate_early
from earlyia.labels import TypeMap


def test_reproduces_fink_reference_table():
    replay = pd.read_parquet(
        reference("ztf_replay_alerts_with_anchor.parquet"),
        columns=["objectId", "ndethist", "anchor_score"],
    )
    objects = pd.read_csv(shared("ztf_fink_tns_labelled/objects.csv"))
    rep = evaluate_early(
        replay, objects.set_index("objectId")["tns_type"], score_column="anchor_score"
    )
    s = rep.summary.set_index("max_detections")
    # figures published in fink-early-ia.md for Fink's production model on this replay
    assert (s.loc[10, "tp"], s.loc[10, "fp"]) == (74, 72)
    assert (s.loc[20, "tp"], s.loc[20, "fp"]) == (123, 105)
    assert s.loc[5, "tp"] + s.loc[5, "fp"] == 0
    assert s.loc[20, "efficiency"] == pytest.approx(0.216, abs=5e-4)
    assert s.loc[20, "purity"] == pytest.approx(0.539, abs=5e-4)
    assert rep.per_alert["efficiency"] == pytest.approx(0.106, abs=5e-4)
    assert rep.per_alert["purity"] == pytest.approx(0.625, abs=5e-4)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 12), st.integers(1, 8), st.floats(0, 1)), min_size=1, max_size=80
    ),
    st.sampled_from([0.0, 0.3, 0.5, 0.77]),
)
def test_matches_slow_reference(rows, threshold):
    df = pd.DataFrame(rows, columns=["obj", "ndethist", "score"])
    df["object_id"] = "o" + df["obj"].astype(str)
    df["label"] = np.where(df["obj"] % 3 == 0, "SN Ia", np.where(df["obj"] % 3 == 1, "SN II", "SN"))
    if not (df["label"] == "SN Ia").any():
        with pytest.raises(InputError):
            evaluate_early(df, threshold=threshold, max_detections=[2, 5], type_map=TypeMap())
        return
    rep = evaluate_early(df, threshold=threshold, max_detections=[2, 5], type_map=TypeMap())
    lab = df[df["label"] != "SN"]
    n_pos = lab.loc[lab["label"] == "SN Ia", "object_id"].nunique()
    for n in (2, 5):
        tp = fp = 0
        for _oid, g in lab.groupby("object_id"):
            flagged = any(
                s > threshold for s, k in zip(g["score"], g["ndethist"], strict=True) if k <= n
            )
            if flagged:
                if g["label"].iloc[0] == "SN Ia":
                    tp += 1
                else:
                    fp += 1
        row = rep.summary.set_index("max_detections").loc[n]
        assert (row["tp"], row["fp"]) == (tp, fp)
        assert row["efficiency"] == pytest.approx(tp / n_pos)
        # the curve at the fixed threshold agrees with the direct count
        c = rep.curves[n]
        at = c[c["threshold"] >= threshold]
        assert (at["tp"].iloc[-1] if len(at) else 0) == tp


def test_cli_on_replay_file(tmp_path, capsys):
    from earlyia.cli.main import main

    rc = main(
        [
            "evaluate-early",
            str(reference("ztf_replay_alerts_with_anchor.parquet")),
            "--labels",
            str(shared("ztf_fink_tns_labelled/objects.csv")),
            "--score-column",
            "anchor_score",
            "--max-detections",
            "10",
            "20",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "| 20 | 570 |" in out and "| 123 | 105 |" in out
    assert (tmp_path / "efficiency_vs_detections.png").stat().st_size > 1000
    curves = pd.read_csv(tmp_path / "curves.csv")
    assert set(curves["max_detections"]) == {10, 20}
    assert (
        main(
            [
                "evaluate-early",
                str(reference("ztf_replay_alerts_with_anchor.parquet")),
                "--score-column",
                "nope",
            ]
        )
        == 2
    )


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0.0, 0.2, 0.5, 0.55, 0.9, 1.0]), st.booleans()),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from([0.5, 0.8, 0.95]),
)
def test_per_row_curve_and_best_at_purity_match_direct_counts(rows, min_purity):
    score = np.array([r[0] for r in rows])
    y = np.array([r[1] for r in rows])
    curve = efficiency_purity_curve(score, y)
    for _, c in curve.iterrows():  # every point: flag score > threshold, count directly
        flagged = score > c["threshold"]
        assert (c["tp"], c["fp"]) == ((flagged & y).sum(), (flagged & ~y).sum())
    # slow reference of the best point: try every distinct score as the lowest flagged one
    best = 0.0
    for s in np.unique(score):
        flagged = score >= s
        tp = (flagged & y).sum()
        if tp and tp / flagged.sum() >= min_purity:
            best = max(best, tp / max(y.sum(), 1))
    assert best_at_purity(curve, min_purity)["efficiency"] == pytest.approx(best)


def test_plot_leaves_undefined_purity_as_a_gap_and_counts_whole_detections(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from earlyia.evaluate import plot_efficiency_vs_detections

    # nothing scores above the threshold before the 3rd detection: purity is undefined there
    df = pd.DataFrame(
        {
            "object_id": ["a", "a", "a", "b", "b", "b"],
            "ndethist": [1, 2, 3, 1, 2, 3],
            "score": [0.1, 0.2, 0.9, 0.1, 0.1, 0.2],
            "label": ["SN Ia", "SN Ia", "SN Ia", "SN II", "SN II", "SN II"],
        }
    )
    rep = evaluate_early(df, max_detections=(3,))
    assert rep.by_detections["n_flagged"].tolist() == [0, 0, 1]
    figures = []
    real_savefig = Figure.savefig

    def keep(fig, *args, **kwargs):
        figures.append(fig)
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    plot_efficiency_vs_detections(rep, tmp_path / "p.png")
    ax = figures[0].axes[0]
    purity = np.asarray(ax.lines[1].get_ydata(), float)
    assert np.isnan(purity[:2]).all() and purity[2] == 1.0
    assert all(float(t).is_integer() for t in ax.get_xticks())
    assert (tmp_path / "p.png").stat().st_size > 0
