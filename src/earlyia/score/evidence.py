"""Scores that say how much an alert holds, and operating points that travel to other streams.

Why: an alert with one detection carries almost nothing, one with fifteen a great deal, and a forest
gives both the same spread of raw scores. Under the replay protocol an object is flagged as soon as
ANY of its early alerts crosses the threshold, so the noise of the thinnest alerts becomes false
candidates. Calibrating separately per *evidence stratum* (number of positive detections) turns each
score into P(SN Ia | what this alert shows): near the training prevalence when it shows little, far
from it only when the alert earns it.

* :func:`fit_evidence_calibration`: per stratum, a weighted isotonic regression of the labels on the
  held-out raw scores (pool-adjacent-violators), each block shrunk towards the stratum's prevalence
  with ``pseudo_count`` pseudo-objects, so that a handful of lucky objects cannot lift a stratum's top
  score; then isotonic again. Stored as plain arrays in the model file.
* :func:`adjust_prevalence` moves calibrated probabilities to another prevalence (Bayes' rule on the
  prior odds); :func:`estimate_prevalence` finds the prevalence of an unlabelled stream by the EM
  prior adjustment of Saerens, Latinne & Decaestecker (2002, Neural Computation 14, 21).
* :class:`OperatingCurve`: the efficiency and false-positive rate of flagging objects at every
  threshold (held-out, replay protocol), from which the threshold reaching a target purity is found for
  any prevalence: purity = pi TPR / (pi TPR + (1 - pi) FPR).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from earlyia.errors import InputError, ModelError

#: Lower bounds of the evidence strata: positive detections 1, 2, 3, 4, 5-6, 7-9, 10-14, 15 and more.
EVIDENCE_EDGES = (1, 2, 3, 4, 5, 7, 10, 15)


# ---------------------------------------------------------------------------- isotonic regression
def pav(y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted pool-adjacent-violators on values already ordered by their score.

    Returns ``(values, weights, ends)`` of the blocks: block ``j`` covers positions ``ends[j-1]:ends[j]``
    (``ends[-1] == len(y)``), its value is the weighted mean of ``y`` there, and values never decrease.
    """
    y = np.asarray(y, np.float64)
    w = np.asarray(w, np.float64)
    vals: list[float] = []
    wts: list[float] = []
    ends: list[int] = []
    for i in range(len(y)):
        vals.append(float(y[i]))
        wts.append(float(w[i]))
        ends.append(i + 1)
        while len(vals) > 1 and vals[-2] >= vals[-1]:
            wt = wts[-2] + wts[-1]
            v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / wt if wt > 0 else 0.5 * (vals[-2] + vals[-1])
            vals[-2:] = [v]
            wts[-2:] = [wt]
            ends[-2:] = [ends[-1]]
    return np.array(vals), np.array(wts), np.array(ends, np.int64)


def _pav_merge(vals: np.ndarray, wts: np.ndarray) -> np.ndarray:
    """Block values made non-decreasing again (PAV over blocks), one value per input block."""
    v, _w, ends = pav(vals, wts)
    return np.repeat(v, np.diff(np.concatenate([[0], ends])))


def shrunk_isotonic(
    p: np.ndarray, y: np.ndarray, w: np.ndarray, pseudo_count: float
) -> tuple[np.ndarray, np.ndarray]:
    """Knots ``(x, value)`` of an isotonic map from ``p`` to P(y), blocks shrunk towards the weighted mean.

    Equal scores share one value. Applied by :func:`numpy.interp` (constant beyond the ends).
    """
    p = np.asarray(p, np.float64)
    y = np.asarray(y, np.float64)
    w = np.asarray(w, np.float64)
    if len(p) == 0 or not np.any(w > 0):
        raise InputError("calibration needs at least one weighted held-out score")
    prior = float(np.sum(w * y) / np.sum(w))
    order = np.argsort(p, kind="mergesort")
    p, y, w = p[order], y[order], w[order]
    # one entry per distinct score
    uniq, start = np.unique(p, return_index=True)
    sw = np.add.reduceat(w, start)
    sy = np.add.reduceat(w * y, start)
    mean = np.divide(sy, sw, out=np.full(len(sw), prior), where=sw > 0)
    vals, wts, ends = pav(mean, sw)
    shrunk = (vals * wts + pseudo_count * prior) / (wts + pseudo_count)
    block_vals = _pav_merge(shrunk, wts + pseudo_count)
    first = np.concatenate([[0], ends[:-1]])
    x = np.empty(2 * len(ends))
    v = np.empty(2 * len(ends))
    x[0::2] = uniq[first]
    x[1::2] = uniq[ends - 1]
    v[0::2] = block_vals
    v[1::2] = block_vals
    return x, v


#: Knots of a tabulated Platt map (over the range of scores it was fitted on).
_PLATT_KNOTS = 201


def platt_knots(p: np.ndarray, y: np.ndarray, w: np.ndarray, pseudo_count: float) -> tuple[np.ndarray, np.ndarray]:
    """Knots of a weighted logistic map P(y) = 1 / (1 + exp(-(a logit(p) + b))), a >= 0 (never decreasing).

    ``pseudo_count`` pseudo-objects at the weighted prevalence regularise it (a flat map when the scores say
    nothing). Tabulated over the range of the scores it was fitted on and constant beyond (a slope fitted on
    scores that all lie close together says nothing about scores far from them), applied by
    :func:`numpy.interp` like the isotonic map.
    """
    from scipy.optimize import minimize

    p = np.clip(np.asarray(p, np.float64), 1e-4, 1 - 1e-4)
    y = np.asarray(y, np.float64)
    w = np.asarray(w, np.float64)
    prior = float(np.clip(np.sum(w * y) / np.sum(w), 1e-4, 1 - 1e-4))
    z = np.log(p / (1 - p))
    b0 = np.log(prior / (1 - prior))

    def loss(theta):
        a, b = theta
        t = a * z + b
        # -log likelihood (stable), plus the pseudo-objects: pseudo_count * prior positives at the mean score
        ll = w * (np.logaddexp(0.0, t) - y * t)
        tp = a * float(np.average(z, weights=w)) + b
        reg = pseudo_count * (np.logaddexp(0.0, tp) - prior * tp)
        return float(np.sum(ll) + reg)

    res = minimize(loss, x0=np.array([1.0, b0]), bounds=[(0.0, 20.0), (-30.0, 30.0)], method="L-BFGS-B")
    a, b = res.x
    lo, hi = float(p.min()), float(p.max())
    g = np.linspace(lo, hi, _PLATT_KNOTS) if hi > lo else np.array([lo, lo])
    v = 1.0 / (1.0 + np.exp(-(a * np.log(g / (1 - g)) + b)))
    return g, v


# ---------------------------------------------------------------------------- calibration by evidence
@dataclass
class EvidenceCalibration:
    """Isotonic maps from raw score to probability, one per evidence stratum (see the module docstring)."""

    feature: str  # the feature holding the evidence (positive detections), e.g. "early_n_det"
    edges: np.ndarray  # stratum lower bounds (int)
    knots_x: list[np.ndarray]
    knots_y: list[np.ndarray]
    prevalence: float  # weighted fraction of positives the maps were fitted on
    stratum_prevalence: np.ndarray
    stratum_weight: np.ndarray

    def stratum(self, evidence: np.ndarray) -> np.ndarray:
        ev = np.nan_to_num(np.asarray(evidence, np.float64), nan=0.0)
        return np.clip(np.searchsorted(self.edges, ev, side="right") - 1, 0, len(self.edges) - 1)

    def apply(self, p: np.ndarray, evidence: np.ndarray) -> np.ndarray:
        p = np.asarray(p, np.float64)
        st = self.stratum(evidence)
        out = np.empty_like(p)
        for s in range(len(self.edges)):
            m = st == s
            if m.any():
                out[m] = np.interp(p[m], self.knots_x[s], self.knots_y[s])
        return out

    def stratum_max(self) -> np.ndarray:
        """The highest probability each stratum can give."""
        return np.array([float(np.max(v)) for v in self.knots_y])

    # -------------------------------------------------------------- model-file arrays
    def to_arrays(self) -> dict[str, np.ndarray]:
        lengths = np.array([len(x) for x in self.knots_x], np.int64)
        return {
            "method": np.array("evidence"),
            "feature": np.array(self.feature),
            "edges": np.asarray(self.edges, np.int64),
            "lengths": lengths,
            "x": np.concatenate(self.knots_x).astype(np.float64),
            "y": np.concatenate(self.knots_y).astype(np.float64),
            "prevalence": np.array([self.prevalence], np.float64),
            "stratum_prevalence": np.asarray(self.stratum_prevalence, np.float64),
            "stratum_weight": np.asarray(self.stratum_weight, np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> EvidenceCalibration:
        """The calibration stored in a model file, checked: strata edges increasing, one map per stratum whose
        knots are finite and never decrease (scores and probabilities), probabilities in [0, 1], prevalences
        fractions (:class:`ModelError` naming what is wrong)."""
        try:
            lengths = _vector(arrays, "lengths", np.int64)
            x = _vector(arrays, "x", np.float64)
            y = _vector(arrays, "y", np.float64)
            edges = _vector(arrays, "edges", np.int64)
            feature = np.asarray(arrays["feature"])
            prevalence = np.asarray(arrays["prevalence"], np.float64)
            stratum_prevalence = _vector(arrays, "stratum_prevalence", np.float64)
            stratum_weight = _vector(arrays, "stratum_weight", np.float64)
        except KeyError as exc:
            raise ModelError(f"evidence calibration lacks array {exc}") from exc
        except (TypeError, ValueError, OverflowError) as exc:
            raise ModelError(f"evidence calibration arrays are not numbers ({exc})") from exc
        if len(edges) == 0 or len(edges) != len(lengths) or (lengths < 1).any() or int(lengths.sum()) != len(x) or len(x) != len(y):
            raise ModelError("calibration arrays have inconsistent lengths")
        if (np.diff(edges) <= 0).any():
            raise ModelError(f"calibration strata edges {edges.tolist()[:10]} do not increase")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ModelError("calibration knots are not all finite")
        if y.min() < 0.0 or y.max() > 1.0:
            raise ModelError("calibration probabilities outside [0, 1]")
        cuts = np.concatenate([[0], np.cumsum(lengths)])
        kx = [x[cuts[i] : cuts[i + 1]] for i in range(len(lengths))]
        ky = [y[cuts[i] : cuts[i + 1]] for i in range(len(lengths))]
        for i in range(len(lengths)):
            if (np.diff(kx[i]) < 0).any() or (np.diff(ky[i]) < 0).any():
                raise ModelError(f"calibration map of stratum {i} (evidence >= {int(edges[i])}) is not monotone")
        if feature.dtype.kind not in "US" or feature.size != 1:
            raise ModelError("calibration array 'feature' must name one feature")
        if prevalence.size != 1 or not (0.0 < float(prevalence.reshape(-1)[0]) < 1.0):
            raise ModelError("calibration prevalence must be one fraction strictly between 0 and 1")
        if len(stratum_prevalence) != len(edges) or len(stratum_weight) != len(edges):
            raise ModelError("calibration strata arrays have inconsistent lengths")
        if not (np.all((stratum_prevalence >= 0) & (stratum_prevalence <= 1)) and np.all(np.isfinite(stratum_weight))
                and np.all(stratum_weight >= 0)):
            raise ModelError("calibration strata prevalences must be fractions and weights finite, >= 0")
        return cls(
            feature=str(feature.reshape(-1)[0]),
            edges=edges,
            knots_x=kx,
            knots_y=ky,
            prevalence=float(prevalence.reshape(-1)[0]),
            stratum_prevalence=stratum_prevalence,
            stratum_weight=stratum_weight,
        )


def _vector(arrays: Mapping[str, np.ndarray], name: str, dtype) -> np.ndarray:
    a = np.asarray(arrays[name])
    if a.ndim != 1 or a.dtype.kind not in ("iu" if np.dtype(dtype).kind == "i" else "iuf"):
        raise ModelError(f"calibration array {name!r} must be a vector of {np.dtype(dtype).name}, got {a.dtype} {a.shape}")
    return a.astype(dtype)


def fit_evidence_calibration(
    p: np.ndarray,
    y: np.ndarray,
    evidence: np.ndarray,
    *,
    feature: str,
    groups: np.ndarray | None = None,
    edges: Sequence[int] = EVIDENCE_EDGES,
    pseudo_count: float = 20.0,
    method: str = "isotonic",
) -> EvidenceCalibration:
    """Per-stratum shrunk isotonic maps from held-out raw scores ``p`` to P(positive).

    ``evidence``: the value of ``feature`` (positive detections) of each row. ``groups``: the object of each
    row; within a stratum each object then weighs 1 whatever its number of rows (``pseudo_count`` is in
    objects). A stratum without rows maps every score to the overall prevalence.
    """
    p = np.asarray(p, np.float64)
    y = np.asarray(y).astype(np.float64)
    evidence = np.asarray(evidence, np.float64)
    if not (len(p) == len(y) == len(evidence)) or (groups is not None and len(groups) != len(p)):
        raise InputError("p, y, evidence and groups must have the same length")
    ok = np.isfinite(p)
    if not ok.any():
        raise InputError("calibration needs held-out scores")
    edges = np.asarray(sorted(int(e) for e in edges), np.int64)
    tmp = EvidenceCalibration(feature, edges, [], [], 0.5, np.zeros(0), np.zeros(0))
    st = tmp.stratum(evidence)
    w = np.ones(len(p))
    if groups is not None:  # 1 / (rows of the object in its stratum)
        key = pd.Series(list(zip(np.asarray(groups).astype(str), st, strict=True)))
        w = 1.0 / key.map(key.value_counts()).to_numpy(np.float64)
    obj_w = np.ones(len(p)) if groups is None else 1.0 / pd.Series(np.asarray(groups).astype(str)).map(
        pd.Series(np.asarray(groups).astype(str)).value_counts()).to_numpy(np.float64)
    prior = float(np.sum(obj_w[ok] * y[ok]) / np.sum(obj_w[ok]))
    xs, vs, prev, wt = [], [], [], []
    for s in range(len(edges)):
        m = ok & (st == s)
        if not m.any():
            xs.append(np.array([0.0, 1.0]))
            vs.append(np.array([prior, prior]))
            prev.append(prior)
            wt.append(0.0)
            continue
        if method == "platt":
            x, v = platt_knots(p[m], y[m], w[m], pseudo_count)
        elif method == "isotonic":
            x, v = shrunk_isotonic(p[m], y[m], w[m], pseudo_count)
        else:
            raise InputError(f"calibration method must be 'isotonic' or 'platt', got {method!r}")
        xs.append(x)
        vs.append(v)
        prev.append(float(np.sum(w[m] * y[m]) / np.sum(w[m])))
        wt.append(float(np.sum(w[m])))
    return EvidenceCalibration(feature, edges, xs, vs, prior, np.array(prev), np.array(wt))


# ---------------------------------------------------------------------------- prevalence
def adjust_prevalence(p: np.ndarray, trained: float, target: float) -> np.ndarray:
    """Probabilities calibrated at prevalence ``trained`` moved to prevalence ``target`` (prior-odds shift)."""
    _check_prevalence(trained, "trained")
    _check_prevalence(target, "target")
    p = np.clip(np.asarray(p, np.float64), 0.0, 1.0)
    a = (target / trained) * p
    b = ((1.0 - target) / (1.0 - trained)) * (1.0 - p)
    with np.errstate(invalid="ignore"):
        out = np.where(a + b > 0, a / (a + b), 0.0)
    return out


def estimate_prevalence(p: np.ndarray, trained: float, *, tol: float = 1e-6, max_iter: int = 1000) -> tuple[float, int]:
    """Prevalence of positives in an unlabelled sample whose calibrated probabilities (at ``trained``) are ``p``.

    EM prior adjustment (Saerens et al. 2002): repeat pi <- mean(adjust_prevalence(p, trained, pi)) until
    it moves by less than ``tol``. Returns ``(pi, iterations)``.
    """
    _check_prevalence(trained, "trained")
    p = np.asarray(p, np.float64)
    p = p[np.isfinite(p)]
    if len(p) == 0:
        raise InputError("cannot estimate a prevalence from no scores")
    pi = trained
    for it in range(1, max_iter + 1):
        new = float(np.mean(adjust_prevalence(p, trained, pi)))
        new = min(max(new, 1e-6), 1.0 - 1e-6)
        if abs(new - pi) < tol:
            return new, it
        pi = new
    return pi, max_iter


def _check_prevalence(value: float, name: str) -> None:
    if not (np.isfinite(value) and 0.0 < float(value) < 1.0):
        raise InputError(f"{name} prevalence must be strictly between 0 and 1, got {value!r}")


# ---------------------------------------------------------------------------- operating points
@dataclass
class OperatingCurve:
    """Flagging objects whose highest score within ``max_detections`` is above ``threshold[i]``: the fraction
    of positive objects flagged (``tpr``) and of negative ones (``fpr``), held out, at every threshold."""

    max_detections: int
    threshold: np.ndarray
    tpr: np.ndarray
    fpr: np.ndarray
    n_pos: int
    n_neg: int
    prevalence: float  # of the objects the curve was measured on

    @classmethod
    def from_object_scores(cls, best: np.ndarray, positive: np.ndarray, max_detections: int) -> OperatingCurve:
        """The curve of objects with highest early scores ``best`` and labels ``positive``."""
        best = np.asarray(best, np.float64)
        positive = np.asarray(positive, bool)
        n_pos, n_neg = int(positive.sum()), int((~positive).sum())
        if n_pos == 0 or n_neg == 0:
            raise InputError("an operating curve needs positive and negative objects")
        order = np.argsort(-best, kind="mergesort")
        s, yy = best[order], positive[order]
        tp = np.cumsum(yy)
        fp = np.cumsum(~yy)
        last = np.r_[s[1:] != s[:-1], True]
        thr = np.nextafter(s[last], -np.inf)  # flag "score > threshold": just below each distinct score
        return cls(int(max_detections), thr, tp[last] / n_pos, fp[last] / n_neg, n_pos, n_neg, n_pos / (n_pos + n_neg))

    def purity(self, prevalence: float | None = None) -> np.ndarray:
        pi = self.prevalence if prevalence is None else float(prevalence)
        _check_prevalence(pi, "the")
        num = pi * self.tpr
        den = num + (1.0 - pi) * self.fpr
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    def threshold_for(self, min_purity: float, prevalence: float | None = None, *, min_flagged: int = 10) -> dict[str, float]:
        """The lowest threshold whose purity, and that of every stricter threshold flagging at least
        ``min_flagged`` of the curve's objects, is >= ``min_purity``.

        Why the whole upper range: the single threshold that just reaches the purity on held-out scores is
        a lucky dip as often as not; requiring it of every stricter threshold gives one that holds on new
        objects (the few top objects alone are left out: one negative among them says little). Returns
        threshold, efficiency and purity (threshold NaN, efficiency 0 when none reaches it).
        """
        pur = self.purity(prevalence)
        flagged = self.tpr * self.n_pos + self.fpr * self.n_neg
        ok = (pur >= min_purity) | (flagged < min_flagged)
        # from the strictest threshold down, the first index where purity falls below the target
        bad = np.flatnonzero(~ok)
        stop = int(bad[0]) if len(bad) else len(ok)
        reached = np.flatnonzero(pur[:stop] >= min_purity)
        if len(reached) == 0:
            return {"threshold": float("nan"), "efficiency": 0.0, "purity": float("nan")}
        i = int(reached[-1])
        return {"threshold": float(self.threshold[i]), "efficiency": float(self.tpr[i]), "purity": float(pur[i])}

    def to_card(self) -> dict:
        return {
            "max_detections": self.max_detections,
            "threshold": self.threshold.tolist(),
            "tpr": self.tpr.tolist(),
            "fpr": self.fpr.tolist(),
            "n_pos": self.n_pos,
            "n_neg": self.n_neg,
            "prevalence": self.prevalence,
        }

    @classmethod
    def from_card(cls, entry: Mapping) -> OperatingCurve:
        try:
            thr = np.asarray(entry["threshold"], np.float64)
            tpr = np.asarray(entry["tpr"], np.float64)
            fpr = np.asarray(entry["fpr"], np.float64)
            curve = cls(int(entry["max_detections"]), thr, tpr, fpr, int(entry["n_pos"]), int(entry["n_neg"]), float(entry["prevalence"]))
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ModelError(f"malformed operating curve in the model card ({exc})") from exc
        if thr.ndim != 1 or not (len(thr) == len(tpr) == len(fpr)) or len(thr) == 0 or tpr.ndim != 1 or fpr.ndim != 1:
            raise ModelError("operating curve arrays differ in length or are empty")
        if not (np.all(np.isfinite(thr)) and np.all(np.isfinite(tpr)) and np.all(np.isfinite(fpr))):
            raise ModelError("operating curve holds non-finite values")
        if tpr.min() < 0 or tpr.max() > 1 or fpr.min() < 0 or fpr.max() > 1:
            raise ModelError("operating curve rates (tpr, fpr) outside [0, 1]")
        if (np.diff(thr) > 0).any() or (np.diff(tpr) < 0).any() or (np.diff(fpr) < 0).any():
            raise ModelError("operating curve is not monotone (thresholds must decrease, rates increase)")
        if curve.max_detections < 1 or curve.n_pos < 1 or curve.n_neg < 1 or not (0.0 < curve.prevalence < 1.0):
            raise ModelError("operating curve needs max_detections, n_pos, n_neg >= 1 and a prevalence strictly between 0 and 1")
        return curve


# ---------------------------------------------------------------------------- thresholds from a model card
def card_threshold(card: Mapping, max_detections: int = 20, min_purity: float = 0.8, prevalence: float | None = None) -> dict[str, float]:
    """The threshold reaching ``min_purity`` within ``max_detections`` at ``prevalence`` (default: the training one)
    from a model card (or the card summary a SCORES file carries): its operating curve when it has one, else its
    fixed operating point (which cannot move to another prevalence). Returns threshold, efficiency, purity."""
    for c in card.get("operating_curves") or []:
        if int(c["max_detections"]) == int(max_detections):
            return OperatingCurve.from_card(c).threshold_for(min_purity, prevalence)
    if prevalence is not None:
        raise ModelError(
            f"the model card records no operating curve for {max_detections} detections: its threshold cannot move to another "
            "prevalence (re-train with this release, or use the training prevalence)"
        )
    for o in card.get("operating_points") or []:
        if int(o["max_detections"]) == int(max_detections) and float(o["min_purity"]) == float(min_purity):
            t = o.get("threshold")
            return {"threshold": float("nan") if t is None else float(t), "efficiency": o.get("efficiency"), "purity": o.get("purity")}
    raise ModelError(f"the model card records no operating point for purity {min_purity} within {max_detections} detections")


def stream_prevalence(scores, card: Mapping, *, min_objects: int = 30) -> tuple[float, int, str]:
    """The prevalence of positives among the objects of a SCORES table, estimated by EM from each object's latest
    scored alert (calibrated probabilities at the card's training prevalence). Returns ``(prevalence, objects,
    how)``; with fewer than ``min_objects`` scored objects, or a model without calibration by evidence, the
    training prevalence (``how`` says which)."""
    trained = (card.get("evidence") or {}).get("prevalence")
    if trained is None:
        raise ModelError("the model is not calibrated by evidence: its scores are not probabilities, so no prevalence can be "
                         "estimated from them (give --prevalence training)")
    df = scores[scores["passed"].fillna(False).astype(bool)] if "passed" in scores.columns else scores
    order = [c for c in ("object_id", "mjd", "alert_id") if c in df.columns]
    latest = df.sort_values(order, kind="mergesort").drop_duplicates("object_id", keep="last")
    p = pd.to_numeric(latest["score"], errors="coerce").to_numpy(np.float64)
    p = p[np.isfinite(p)]
    if len(p) < min_objects:
        return float(trained), len(p), f"training prevalence: only {len(p)} scored object(s), too few to estimate the stream's"
    est, it = estimate_prevalence(p, float(trained))
    return est, len(p), f"estimated from {len(p)} scored objects (EM prior adjustment, {it} iterations)"
