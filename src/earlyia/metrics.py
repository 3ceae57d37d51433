"""Classification metrics of the active-learning loop (Leoni et al. 2022 definitions), vectorised.

At a threshold (default 0.5) a row is predicted positive when ``p > threshold`` (as Fink does):

- accuracy = (TP + TN) / N
- efficiency = TP / N_pos (recall)
- purity = TP / (TP + FP) (precision)
- fom = efficiency * TP / (TP + W FP), W = 3 (false positives cost three spectra)
- f1 = 2 TP / (2 TP + FP + FN)
- roc_auc = probability that a random positive scores above a random negative (ties count 1/2)

A ratio whose denominator is zero is reported as 0.0 (e.g. purity when nothing is flagged), and
``roc_auc`` is NaN when one class is absent. :func:`metrics_by_detections` gives the same numbers
per number of detections an alert had when it was scored (early-epoch metrics), in one pass.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from earlyia.errors import InputError

#: Names of the per-loop metric columns, in order.
METRIC_NAMES = (
    "accuracy",
    "efficiency",
    "purity",
    "fom",
    "f1",
    "roc_auc",
    "n_pos",
    "n_flagged",
    "n",
)

FOM_WEIGHT = 3.0


def _div(a: np.ndarray, b: np.ndarray, empty: float = 0.0) -> np.ndarray:
    """a / b, ``empty`` where b is 0."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = np.full(np.broadcast(a, b).shape, empty)
    np.divide(a, b, out=out, where=b > 0)
    return out


def _check(y_true, proba) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim == 2:
        if p.shape[1] != 2:
            raise InputError(
                f"proba has shape {p.shape}; give P(positive) as a 1-d array or an (n, 2) array"
            )
        p = p[:, 1]
    if y.ndim != 1 or p.ndim != 1 or len(y) != len(p):
        raise InputError(
            f"y_true {y.shape} and proba {p.shape} must be 1-d arrays of the same length"
        )
    if y.dtype != bool:
        if not np.isin(y, (0, 1)).all():
            raise InputError("y_true must be boolean (True = positive class) or 0/1")
        y = y.astype(bool)
    return y, p


def counts_to_metrics(
    tp, fp, tn, fn, fom_weight: float = FOM_WEIGHT, undefined: float = 0.0
) -> dict[str, np.ndarray]:
    """Metrics from confusion counts (arrays broadcast), the one place the formulas live.

    ``undefined``: the value of a ratio whose denominator is 0 (purity when nothing is flagged,
    efficiency without positives): 0 in active-learning curves (Fink's and RESSPECT's convention, so
    early loops average), NaN in model cards and reports, where "not measurable" must not read as
    "bad".
    """
    tp, fp, tn, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, tn, fn))
    n = tp + fp + tn + fn
    eff = _div(tp, tp + fn, undefined)
    return {
        "accuracy": _div(tp + tn, n, undefined),
        "efficiency": eff,
        "purity": _div(tp, tp + fp, undefined),
        "fom": eff * _div(tp, tp + fom_weight * fp, undefined),
        "f1": _div(2 * tp, 2 * tp + fp + fn, undefined),
    }


def roc_auc(y_true, proba) -> float:
    """Mann-Whitney estimate of the ROC AUC (ties count one half); NaN when a class is absent."""
    y, p = _check(y_true, proba)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import (
        rankdata,
    )  # here, not at import: scipy.stats costs ~0.8 s of every command's start-up

    r = rankdata(p)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_metrics(
    y_true, proba, threshold: float = 0.5, fom_weight: float = FOM_WEIGHT, undefined: float = 0.0
) -> dict[str, float]:
    """All metrics of :data:`METRIC_NAMES` for one set of scores (positive when ``p >
    threshold``; ``undefined``: see :func:`counts_to_metrics`)."""
    y, p = _check(y_true, proba)
    pred = p > threshold
    tp = int(np.count_nonzero(pred & y))
    fp = int(np.count_nonzero(pred & ~y))
    fn = int(np.count_nonzero(~pred & y))
    tn = len(y) - tp - fp - fn
    out = {k: float(v) for k, v in counts_to_metrics(tp, fp, tn, fn, fom_weight, undefined).items()}
    out["roc_auc"] = roc_auc(y, p)
    out["n_pos"] = int(y.sum())
    out["n_flagged"] = int(pred.sum())
    out["n"] = len(y)
    return out


def metrics_by_detections(
    y_true,
    proba,
    n_detections,
    threshold: float = 0.5,
    fom_weight: float = FOM_WEIGHT,
    cumulative: bool = False,
) -> pd.DataFrame:
    """Early-epoch metrics: one row per number of detections ``d`` the alert had when scored.

    With ``cumulative=True`` row ``d`` uses every alert with ``n_detections <= d`` (the usual
    "flagged by the d-th detection" curve is per object and lives in ``earlyia.evaluate``).
    Columns: ``n_detections`` then :data:`METRIC_NAMES`.
    """
    y, p = _check(y_true, proba)
    d = np.asarray(n_detections)
    if d.shape != y.shape:
        raise InputError(
            f"n_detections has shape {d.shape}; expected {y.shape} (one per scored row)"
        )
    d = d.astype(np.int64)
    values, inv = np.unique(d, return_inverse=True)
    k = len(values)
    pred = p > threshold
    tp = np.bincount(inv, weights=pred & y, minlength=k)
    fp = np.bincount(inv, weights=pred & ~y, minlength=k)
    fn = np.bincount(inv, weights=~pred & y, minlength=k)
    n = np.bincount(inv, minlength=k).astype(np.float64)
    if cumulative:
        tp, fp, fn, n = (np.cumsum(a) for a in (tp, fp, fn, n))
    tn = n - tp - fp - fn
    out = {"n_detections": values}
    out.update(counts_to_metrics(tp, fp, tn, fn, fom_weight))
    out["roc_auc"] = _auc_by_group(y, p, inv, k, cumulative)
    out["n_pos"] = (tp + fn).astype(np.int64)
    out["n_flagged"] = (tp + fp).astype(np.int64)
    out["n"] = n.astype(np.int64)
    return pd.DataFrame(out)


def _auc_by_group(
    y: np.ndarray, p: np.ndarray, inv: np.ndarray, k: int, cumulative: bool
) -> np.ndarray:
    """Per-group Mann-Whitney AUC with one sort: ranks within groups via a lexsort on (group, p)."""
    if cumulative:
        # groups are nested (<= d): each needs its own ranking; k is small (number of detections)
        return np.array([roc_auc(y[inv <= g], p[inv <= g]) for g in range(k)])
    order = np.lexsort((p, inv))
    g_sorted = inv[order]
    p_sorted = p[order]
    # average ranks inside each (group, tied value) run
    new_run = np.ones(len(order), dtype=bool)
    new_run[1:] = (g_sorted[1:] != g_sorted[:-1]) | (p_sorted[1:] != p_sorted[:-1])
    run_id = np.cumsum(new_run) - 1
    pos = np.arange(len(order), dtype=np.float64)
    run_start = pos[new_run]
    run_len = np.bincount(run_id).astype(np.float64)
    group_start = np.zeros(k)
    sizes = np.bincount(inv, minlength=k)
    group_start[1:] = np.cumsum(sizes)[:-1]
    rank = run_start[run_id] + (run_len[run_id] + 1.0) / 2.0 - group_start[g_sorted]
    ys = y[order]
    n_pos = np.bincount(g_sorted, weights=ys, minlength=k)
    n_neg = sizes - n_pos
    rsum = np.bincount(g_sorted, weights=rank * ys, minlength=k)
    auc = np.full(k, np.nan)
    ok = (n_pos > 0) & (n_neg > 0)
    auc[ok] = (rsum[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2.0) / (n_pos[ok] * n_neg[ok])
    return auc
