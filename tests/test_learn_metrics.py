"""Vectorised metrics agree with an obvious per-row reference and with scikit-learn."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score, roc_auc_score

from earlyia.errors import InputError
from earlyia.metrics import binary_metrics, metrics_by_detections, roc_auc


def slow_metrics(y, p, thr=0.5, w=3.0):
    tp = fp = tn = fn = 0
    for yi, pi in zip(y, p, strict=True):
        flagged = pi > thr
        if flagged and yi:
            tp += 1
        elif flagged:
            fp += 1
        elif yi:
            fn += 1
        else:
            tn += 1
    n = tp + fp + tn + fn
    eff = tp / (tp + fn) if tp + fn else 0.0
    # slow AUC: every positive/negative pair
    pos = [pi for yi, pi in zip(y, p, strict=True) if yi]
    neg = [pi for yi, pi in zip(y, p, strict=True) if not yi]
    if pos and neg:
        auc = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg) / (
            len(pos) * len(neg)
        )
    else:
        auc = float("nan")
    return {
        "accuracy": (tp + tn) / n if n else 0.0,
        "efficiency": eff,
        "purity": tp / (tp + fp) if tp + fp else 0.0,
        "fom": eff * (tp / (tp + w * fp) if tp + fp else 0.0),
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
        "roc_auc": auc,
    }


labels_scores = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.booleans(), min_size=n, max_size=n),
        st.lists(
            st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.5000001, 0.7, 0.9, 1.0]), min_size=n, max_size=n
        ),
        st.lists(st.integers(3, 7), min_size=n, max_size=n),
    )
)


def _close(a, b):
    return (np.isnan(a) and np.isnan(b)) or abs(a - b) < 1e-12


@settings(max_examples=150, deadline=None)
@given(labels_scores)
def test_binary_metrics_match_reference(data):
    y, p, _ = data
    got = binary_metrics(np.array(y), np.array(p))
    ref = slow_metrics(y, p)
    for k, v in ref.items():
        assert _close(got[k], v), (k, got[k], v)
    assert got["n"] == len(y) and got["n_pos"] == sum(y)


@settings(max_examples=150, deadline=None)
@given(labels_scores, st.booleans())
def test_metrics_by_detections_match_reference(data, cumulative):
    y, p, d = (np.array(a) for a in data)
    df = metrics_by_detections(y, p, d, cumulative=cumulative)
    assert list(df["n_detections"]) == sorted(set(d.tolist()))
    for _, row in df.iterrows():
        sel = d <= row["n_detections"] if cumulative else d == row["n_detections"]
        ref = slow_metrics(y[sel].tolist(), p[sel].tolist())
        for k, v in ref.items():
            assert _close(row[k], v), (k, row[k], v)
        assert row["n"] == sel.sum()


def test_against_sklearn_and_errors():
    rng = np.random.default_rng(1)
    y = rng.random(500) < 0.3
    p = np.clip(0.3 * y + rng.random(500) * 0.7, 0, 1)
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert binary_metrics(y, p)["f1"] == pytest.approx(f1_score(y, p > 0.5), abs=1e-12)
    # (n, 2) probabilities are accepted
    assert binary_metrics(y, np.column_stack([1 - p, p])) == binary_metrics(y, p)
    with pytest.raises(InputError, match="same length"):
        binary_metrics(y, p[:-1])
    with pytest.raises(InputError, match="boolean"):
        binary_metrics(np.full(500, 2), p)
    with pytest.raises(InputError, match="n_detections"):
        metrics_by_detections(y, p, np.ones(3))


def test_one_formula_two_conventions_for_what_cannot_be_measured():
    from earlyia.metrics import binary_metrics, counts_to_metrics
    from earlyia.model.operating import card_metrics

    y = np.array([True, True, False, False])
    nothing = np.zeros(4)  # nothing flagged: purity undefined
    assert binary_metrics(y, nothing)["purity"] == 0.0  # active-learning curves average over loops
    assert np.isnan(binary_metrics(y, nothing, undefined=np.nan)["purity"])
    card = card_metrics(y, nothing)
    assert np.isnan(card["purity"]) and np.isnan(card["fom"]) and card["efficiency"] == 0.0
    some = np.array([0.9, 0.2, 0.8, 0.1])
    m, c = binary_metrics(y, some), card_metrics(y, some)
    for k in ("accuracy", "efficiency", "purity", "fom"):
        assert m[k] == c[k]
    assert (c["tp"], c["fp"]) == (1, 1)
    assert counts_to_metrics(1, 1, 1, 1)["fom"] == 0.5 * (1 / (1 + 3))
