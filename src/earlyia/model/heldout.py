"""Held-out estimates of a model: what its card says of objects it never saw.

* :func:`grouped_out_of_fold`: with several rows per object, out-of-bag predictions are optimistic
  (other alerts of the same object sit in the bag): each row's probability comes from a forest
  trained on folds that hold none of its object's rows.
* :func:`held_out_evidence`: the held-out estimates of a model trained on augmented light curves,
  with its calibration by evidence (:mod:`earlyia.model.calibration`). With augmentation and
  generated impostors, many training rows are not objects the model will ever be judged on. Every
  estimate there is made on the *original* labelled alerts (``view`` 0) of objects held out by folds
  split by object, while the forests of each fold learn from every row (augmented copies and
  impostors included) of the other objects:

  1. held-out raw scores of the original alerts, ``folds`` folds stratified by class and grouped by
     object;
  2. a calibration by evidence fitted on all of them: the model's;
  3. cross-fitted calibrated scores (each fold calibrated by the maps of the other folds), from
     which the operating curves (:mod:`earlyia.model.operating`) are measured, so the card's
     thresholds are chosen on scores the calibration never saw: they hold their purity on new
     objects instead of on the training folds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from earlyia.errors import InputError
from earlyia.folds import fold_of_rows
from earlyia.model.calibration import EVIDENCE_EDGES, fit_evidence_calibration
from earlyia.model.operating import OPERATING_POINTS, OperatingCurve

#: How :func:`held_out_evidence` fits each stratum: Platt, with one pseudo-object at the stratum's
#: prevalence.
EVIDENCE_FIT = {"method": "platt", "pseudo_count": 1.0}


def grouped_out_of_fold(
    make_forest: Callable[[], Any],
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    folds: int,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """P(positive) of each row from a forest that saw none of its object's rows (NaN when a fold
    lacks a class)."""
    out = np.full(len(y), np.nan)
    k = min(int(folds), len(set(groups)))
    for train, test in GroupKFold(n_splits=k).split(X, y, groups):
        if y[train].all() or not y[train].any():
            continue
        w = None if weights is None else weights[train]
        f = make_forest().fit(X[train], y[train], sample_weight=w)
        out[test] = f.predict_proba(X[test])[:, list(f.classes_).index(True)]
    return out


def held_out_evidence(
    make_forest: Callable[[], Any],
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    weights: np.ndarray | None,
    view: np.ndarray,
    detections: np.ndarray,
    names: Sequence[str],
    *,
    evidence_feature: str,
    folds: int = 5,
    seed: int = 0,
    targets=OPERATING_POINTS,
) -> dict[str, Any]:
    """Calibration arrays, card entries and held-out metrics of a model trained on ``X`` (see the
    module docstring).

    ``make_forest()`` returns an unfitted classifier; ``view`` is 0 for original labelled alerts,
    anything else for rows that only train; ``detections`` the number of detections of each alert
    (the protocol's N).
    """
    names = list(names)
    if evidence_feature not in names:
        raise InputError(
            f"calibration by evidence needs feature {evidence_feature!r}; the model has "
            f"{names[:6]}..."
        )
    eval_rows = np.asarray(view) == 0
    y = np.asarray(y, bool)
    n_obj = len(set(groups[eval_rows]))
    k = min(int(folds), n_obj)
    if k < 2:
        raise InputError(
            "calibration by evidence needs at least 2 folds of held-out objects "
            f"(folds={folds}, {n_obj} labelled "
            "object(s)); give more folds, or no calibration (--calibrate none)"
        )
    fold = fold_of_rows(groups, y, k, seed, rows=eval_rows)
    raw = np.full(len(y), np.nan)
    for j in range(k):
        train = fold != j
        test = eval_rows & (fold == j)
        if not test.any():
            continue
        if y[train].all() or not y[train].any():
            raise InputError(
                "a training fold holds only one class: too few labelled objects of one class"
            )
        f = make_forest().fit(
            X[train], y[train], sample_weight=None if weights is None else weights[train]
        )
        raw[test] = f.predict_proba(X[test])[:, list(f.classes_).index(True)]
    rows = np.flatnonzero(eval_rows & np.isfinite(raw))
    ev = X[rows, names.index(evidence_feature)]
    g = groups[rows]
    cal = fit_evidence_calibration(
        raw[rows],
        y[rows],
        ev,
        feature=evidence_feature,
        groups=g,
        edges=EVIDENCE_EDGES,
        **EVIDENCE_FIT,
    )
    cross = np.empty(len(rows))
    for j in range(k):
        m = fold[rows] == j
        if not m.any():
            continue
        cj = fit_evidence_calibration(
            raw[rows][~m],
            y[rows][~m],
            ev[~m],
            feature=evidence_feature,
            groups=g[~m],
            **EVIDENCE_FIT,
        )
        cross[m] = cj.apply(raw[rows][m], ev[m])
    det = np.asarray(detections, np.float64)[rows]
    curves, ops = [], []
    for n in sorted({n for n, _ in targets}):
        early = det <= n
        frame = (
            pd.DataFrame({"o": g[early], "s": cross[early], "y": y[rows][early]})
            .groupby("o")
            .agg(s=("s", "max"), y=("y", "first"))
        )
        if frame["y"].all() or not frame["y"].any():
            continue
        curve = OperatingCurve.from_object_scores(
            frame["s"].to_numpy(), frame["y"].to_numpy(bool), n
        )
        curves.append(curve)
        for nn, purity in targets:
            if nn == n:
                best = curve.threshold_for(purity)
                ops.append(
                    {
                        "max_detections": int(n),
                        "min_purity": float(purity),
                        **best,
                        "estimated_on": "cross-fitted calibrated held-out scores of the "
                        "training objects "
                        "(replay protocol)",
                    }
                )
    ops.sort(key=lambda o: o["max_detections"])
    judged_from = None
    t20 = next(
        (o["threshold"] for o in ops if o["max_detections"] == max(n for n, _ in targets)),
        float("nan"),
    )
    top = cal.stratum_max()
    if np.isfinite(t20):
        reach = np.flatnonzero(top > t20)
        judged_from = int(cal.edges[reach[0]]) if len(reach) else None
    evidence = {
        "feature": evidence_feature,
        "edges": [int(e) for e in cal.edges],
        "stratum_prevalence": [float(v) for v in cal.stratum_prevalence],
        "stratum_objects": [float(v) for v in cal.stratum_weight],
        "stratum_max": [float(v) for v in top],
        "prevalence": float(cal.prevalence),
        "judged_from": judged_from,
        "calibration": dict(EVIDENCE_FIT),
        "folds": int(k),
    }
    return {
        "calibration": cal.to_arrays(),
        "calibrated_held_out": (rows, cross),
        "curves": [c.to_card() for c in curves],
        "operating_points": ops,
        "evidence": evidence,
    }
