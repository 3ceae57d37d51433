"""Calibration: the maps from a forest's raw scores to probabilities, how they are fitted, checked
and applied.

A calibration is stored in a model file's ``calibration.npz`` as plain arrays, one of
:data:`CALIBRATION_METHODS`:

* ``isotonic``: the knots of an isotonic regression, applied by linear interpolation; ``sigmoid``:
  Platt's ``1 / (1 + exp(a p + b))``; both fitted on a model's held-out probabilities
  (:func:`fit_calibration`).
* ``evidence``: scores that say how much an alert holds. An alert with one detection carries almost
  nothing, one with fifteen a great deal, and a forest gives both the same spread of raw scores.
  Under the replay protocol an object is flagged as soon as ANY of its early alerts crosses the
  threshold, so the noise of the thinnest alerts becomes false candidates. Calibrating separately
  per *evidence stratum* (number of positive detections) turns each score into P(SN Ia | what this
  alert shows): near the training prevalence when it shows little, far from it only when the alert
  earns it.

  :func:`fit_evidence_calibration`: per stratum, a weighted isotonic regression of the labels on the
  held-out raw scores (pool-adjacent-violators), each block shrunk towards the stratum's prevalence
  with ``pseudo_count`` pseudo-objects, so that a handful of lucky objects cannot lift a stratum's
  top score; then isotonic again (or a regularised Platt map per stratum, :func:`platt_knots`).

scikit-learn and scipy's optimiser are imported by the functions that fit, not here: scoring only
applies a calibration, and loading a model must not pay for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from earlyia.errors import InputError, ModelError

#: What a model file's calibration map can be.
CALIBRATION_METHODS = ("isotonic", "sigmoid", "evidence")
#: Lower bounds of the evidence strata: positive detections 1, 2, 3, 4, 5-6, 7-9, 10-14, 15 and
#: more.
EVIDENCE_EDGES = (1, 2, 3, 4, 5, 7, 10, 15)


# ---------------------------------------------------------------------------- isotonic regression
def pav(y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted pool-adjacent-violators on values already ordered by their score.

    Returns ``(values, weights, ends)`` of the blocks: block ``j`` covers positions
    ``ends[j-1]:ends[j]`` (``ends[-1] == len(y)``), its value is the weighted mean of ``y`` there,
    and values never decrease.
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
            v = (
                (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / wt
                if wt > 0
                else 0.5 * (vals[-2] + vals[-1])
            )
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
    """Knots ``(x, value)`` of an isotonic map from ``p`` to P(y), blocks shrunk towards the
    weighted mean.

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


def platt_knots(
    p: np.ndarray, y: np.ndarray, w: np.ndarray, pseudo_count: float
) -> tuple[np.ndarray, np.ndarray]:
    """Knots of a weighted logistic map P(y) = 1 / (1 + exp(-(a logit(p) + b))), a >= 0 (never
    decreasing).

    ``pseudo_count`` pseudo-objects at the weighted prevalence regularise it (a flat map when the
    scores say nothing). Tabulated over the range of the scores it was fitted on and constant beyond
    (a slope fitted on scores that all lie close together says nothing about scores far from them),
    applied by :func:`numpy.interp` like the isotonic map.
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
        # -log likelihood (stable), plus the pseudo-objects: pseudo_count * prior positives at the
        # mean score
        ll = w * (np.logaddexp(0.0, t) - y * t)
        tp = a * float(np.average(z, weights=w)) + b
        reg = pseudo_count * (np.logaddexp(0.0, tp) - prior * tp)
        return float(np.sum(ll) + reg)

    res = minimize(
        loss, x0=np.array([1.0, b0]), bounds=[(0.0, 20.0), (-30.0, 30.0)], method="L-BFGS-B"
    )
    a, b = res.x
    lo, hi = float(p.min()), float(p.max())
    g = np.linspace(lo, hi, _PLATT_KNOTS) if hi > lo else np.array([lo, lo])
    v = 1.0 / (1.0 + np.exp(-(a * np.log(g / (1 - g)) + b)))
    return g, v


# ---------------------------------------------------------------------------- calibration by
# evidence
@dataclass
class EvidenceCalibration:
    """Isotonic maps from raw score to probability, one per evidence stratum (see the module
    docstring)."""

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
        """The calibration stored in a model file, checked: strata edges increasing, one map per
        stratum whose knots are finite and never decrease (scores and probabilities),
        probabilities in [0, 1], prevalences fractions (:class:`ModelError` naming what is
        wrong)."""
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
        if (
            len(edges) == 0
            or len(edges) != len(lengths)
            or (lengths < 1).any()
            or int(lengths.sum()) != len(x)
            or len(x) != len(y)
        ):
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
                raise ModelError(
                    f"calibration map of stratum {i} (evidence >= {int(edges[i])}) is not monotone"
                )
        if feature.dtype.kind not in "US" or feature.size != 1:
            raise ModelError("calibration array 'feature' must name one feature")
        if prevalence.size != 1 or not (0.0 < float(prevalence.reshape(-1)[0]) < 1.0):
            raise ModelError("calibration prevalence must be one fraction strictly between 0 and 1")
        if len(stratum_prevalence) != len(edges) or len(stratum_weight) != len(edges):
            raise ModelError("calibration strata arrays have inconsistent lengths")
        if not (
            np.all((stratum_prevalence >= 0) & (stratum_prevalence <= 1))
            and np.all(np.isfinite(stratum_weight))
            and np.all(stratum_weight >= 0)
        ):
            raise ModelError(
                "calibration strata prevalences must be fractions and weights finite, >= 0"
            )
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
        raise ModelError(
            f"calibration array {name!r} must be a vector of {np.dtype(dtype).name}, got "
            f"{a.dtype} {a.shape}"
        )
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

    ``evidence``: the value of ``feature`` (positive detections) of each row. ``groups``: the object
    of each row; within a stratum each object then weighs 1 whatever its number of rows
    (``pseudo_count`` is in objects). A stratum without rows maps every score to the overall
    prevalence.
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
    obj_w = (
        np.ones(len(p))
        if groups is None
        else 1.0
        / pd.Series(np.asarray(groups).astype(str))
        .map(pd.Series(np.asarray(groups).astype(str)).value_counts())
        .to_numpy(np.float64)
    )
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


# ---------------------------------------------------------------------------- calibration maps
def apply_calibration(
    p: np.ndarray, calibration: Mapping[str, np.ndarray] | None, evidence: np.ndarray | None = None
) -> np.ndarray:
    """Calibrated probabilities: ``p`` mapped by a calibration map (``p`` unchanged when None).

    ``evidence``: the evidence of each row, which a calibration by evidence needs
    (:class:`ModelError` without it).
    """
    if not calibration:
        return p
    kind = str(np.asarray(calibration["method"]).reshape(-1)[0])
    if kind == "evidence":
        if evidence is None:
            raise ModelError(
                "this model's calibration depends on the evidence of each row: score it with "
                "its features"
            )
        return EvidenceCalibration.from_arrays(calibration).apply(p, evidence)
    if kind == "isotonic":
        return np.interp(p, calibration["x"], calibration["y"])
    if kind == "sigmoid":
        a, b = (float(v) for v in calibration["ab"])
        return 1.0 / (1.0 + np.exp(a * p + b))
    raise ModelError(f"unknown calibration method {kind!r}; expected one of {CALIBRATION_METHODS}")


def calibration_method(calibration: Mapping[str, np.ndarray], where: str) -> str:
    """The method a calibration map names (:class:`ModelError` naming ``where`` when it names
    none it knows)."""
    m = np.asarray(calibration.get("method", np.array([])))
    if m.dtype.kind not in "US" or m.size != 1 or str(m.reshape(-1)[0]) not in CALIBRATION_METHODS:
        raise ModelError(
            f"{where} names no known calibration method (one of {CALIBRATION_METHODS})"
        )
    return str(m.reshape(-1)[0])


def check_calibration(
    calibration: Mapping[str, np.ndarray], features: Sequence[str], where: str
) -> None:
    """Refuse a calibration map that could give anything but a probability (:class:`ModelError`
    naming ``where``).

    ``isotonic``: knots ``x, y`` finite, never decreasing, ``y`` in [0, 1]; ``sigmoid``: two finite
    numbers ``a, b``; ``evidence``: :meth:`EvidenceCalibration.from_arrays` checks, and its feature
    is one of ``features``.
    """
    method = calibration_method(calibration, where)
    expected = {"isotonic": {"method", "x", "y"}, "sigmoid": {"method", "ab"}}.get(method)
    if expected is not None and set(calibration) != expected:
        raise ModelError(
            f"{where}: a {method} calibration holds arrays {sorted(expected)}, not "
            f"{sorted(calibration)}"
        )
    if method == "evidence":
        try:
            cal = EvidenceCalibration.from_arrays(calibration)
        except ModelError as exc:
            raise ModelError(f"{where}: {exc}") from exc
        if cal.feature not in features:
            raise ModelError(
                f"{where}: the calibration reads feature {cal.feature!r}, which the model "
                "does not have"
            )
        return
    arrays = {k: np.asarray(v) for k, v in calibration.items() if k != "method"}
    for name, a in arrays.items():
        if a.ndim != 1 or a.dtype.kind not in "iuf" or not np.all(np.isfinite(a)):
            raise ModelError(
                f"{where}: calibration array {name!r} must be a vector of finite numbers"
            )
    if method == "sigmoid":
        if len(arrays["ab"]) != 2:
            raise ModelError(
                f"{where}: a sigmoid calibration holds two numbers a, b; got {len(arrays['ab'])}"
            )
        return
    x, y = arrays["x"], arrays["y"]
    if len(x) == 0 or len(x) != len(y):
        raise ModelError(
            f"{where}: isotonic calibration knots x ({len(x)}) and y ({len(y)}) must be as "
            "many, at least one"
        )
    if (np.diff(x) < 0).any() or (np.diff(y) < 0).any():
        raise ModelError(
            f"{where}: isotonic calibration knots are not monotone (x and y must never decrease)"
        )
    if y.min() < 0.0 or y.max() > 1.0:
        raise ModelError(f"{where}: isotonic calibration probabilities outside [0, 1]")


def fit_calibration(p: np.ndarray, y: np.ndarray, method: str) -> dict[str, np.ndarray]:
    """Calibration map from raw probabilities ``p`` to P(positive), stored as plain arrays.

    ``isotonic``: the step points of an isotonic regression (applied by linear interpolation,
    clipped at the ends, which is what scikit-learn's ``IsotonicRegression`` does).
    ``sigmoid``: Platt's ``1 / (1 + exp(a p + b))``.
    """
    p = np.asarray(p, np.float64)
    y = np.asarray(y).astype(np.float64)
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return {
            "method": np.array("isotonic"),
            "x": iso.X_thresholds_.astype(np.float64),
            "y": iso.y_thresholds_.astype(np.float64),
        }
    if method == "sigmoid":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e6).fit(p[:, None], y.astype(int))
        # P = 1 / (1 + exp(-(w p + c)))  =>  a = -w, b = -c
        return {
            "method": np.array("sigmoid"),
            "ab": np.array([-lr.coef_[0, 0], -lr.intercept_[0]], np.float64),
        }
    raise InputError(f"calibrate must be one of {CALIBRATION_METHODS} or None, got {method!r}")
