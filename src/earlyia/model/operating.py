"""Operating points: which threshold reaches a purity within N detections, at the training
prevalence or another.

* :func:`card_metrics` and :func:`operating_points`: what a card records of held-out scores, the
  latter by the replay protocol (:mod:`earlyia.evaluate`): an object is flagged as soon as any of
  its first N alerts scores above the threshold.
* :class:`OperatingCurve`: the efficiency and false-positive rate of flagging objects at every
  threshold (held-out, replay protocol), from which the threshold reaching a target purity is found
  for any prevalence: purity = pi TPR / (pi TPR + (1 - pi) FPR); :func:`card_threshold` reads it
  from a model card.
* :func:`adjust_prevalence` moves calibrated probabilities to another prevalence (Bayes' rule on the
  prior odds); :func:`estimate_prevalence` finds the prevalence of an unlabelled stream by the EM
  prior adjustment of Saerens, Latinne & Decaestecker (2002, Neural Computation 14, 21);
  :func:`stream_prevalence` applies it to a SCORES table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from earlyia.errors import InputError, ModelError
from earlyia.evaluate import evaluate_early
from earlyia.labels import TypeMap
from earlyia.metrics import binary_metrics

#: (max detections, min purity) of the operating points a card records (the replay protocol's
#: goals).
OPERATING_POINTS = ((10, 0.8), (20, 0.8))


def operating_points(
    object_ids: np.ndarray,
    detections: np.ndarray,
    positive: np.ndarray,
    score: np.ndarray,
    targets=OPERATING_POINTS,
    estimated_on: str = "held-out scores",
) -> list[dict]:
    """Thresholds reaching each target purity with the replay protocol (``earlyia.evaluate``) on
    held-out scores.

    Why: a deployed model needs a threshold for "purity >= 0.8 within N detections"; reading it off
    the scores of the objects one evaluates is optimistic, so the card carries one chosen on the
    training objects' grouped out-of-fold scores, and a later test on new objects can apply it
    blind.
    """
    frame = pd.DataFrame(
        {
            "object_id": np.asarray(object_ids).astype(str),
            "ndethist": np.asarray(detections, float),
            "label": np.where(np.asarray(positive, bool), "positive", "negative"),
            "score": np.asarray(score, float),
        }
    )
    if not frame["label"].eq("positive").any():
        return []
    rep = evaluate_early(
        frame,
        max_detections=sorted({n for n, _ in targets}),
        type_map=TypeMap(positive=("positive",)),
    )
    out = []
    for n, purity in targets:
        best = rep.best_at_purity(n, purity)
        out.append(
            {
                "max_detections": int(n),
                "min_purity": float(purity),
                **{k: float(v) for k, v in best.items()},
                "estimated_on": f"{estimated_on} of the training objects (replay protocol)",
            }
        )
    return out


# ---------------------------------------------------------------------------- card metrics
def card_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """What a card records of held-out scores: accuracy, efficiency, purity and FoM
    (:mod:`earlyia.metrics`, NaN where undefined), with the counts and the threshold."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, np.float64)
    m = binary_metrics(y, p, threshold=threshold, undefined=float("nan"))
    pred = p > threshold
    return {
        "accuracy": m["accuracy"] if len(y) else float("nan"),
        "efficiency": m["efficiency"],
        "purity": m["purity"],
        "fom": m["fom"],
        "tp": int((pred & y).sum()),
        "fp": int((pred & ~y).sum()),
        "n": len(y),
        "threshold": threshold,
    }


# ---------------------------------------------------------------------------- prevalence
def adjust_prevalence(p: np.ndarray, trained: float, target: float) -> np.ndarray:
    """Probabilities calibrated at prevalence ``trained`` moved to prevalence ``target``
    (prior-odds shift)."""
    _check_prevalence(trained, "trained")
    _check_prevalence(target, "target")
    p = np.clip(np.asarray(p, np.float64), 0.0, 1.0)
    a = (target / trained) * p
    b = ((1.0 - target) / (1.0 - trained)) * (1.0 - p)
    with np.errstate(invalid="ignore"):
        out = np.where(a + b > 0, a / (a + b), 0.0)
    return out


def estimate_prevalence(
    p: np.ndarray, trained: float, *, tol: float = 1e-6, max_iter: int = 1000
) -> tuple[float, int]:
    """Prevalence of positives in an unlabelled sample whose calibrated probabilities (at
    ``trained``) are ``p``.

    EM prior adjustment (Saerens et al. 2002): repeat pi <- mean(adjust_prevalence(p, trained, pi))
    until it moves by less than ``tol``. Returns ``(pi, iterations)``.
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
    """Flagging objects whose highest score within ``max_detections`` is above ``threshold[i]``:
    the fraction of positive objects flagged (``tpr``) and of negative ones (``fpr``), held out,
    at every threshold."""

    max_detections: int
    threshold: np.ndarray
    tpr: np.ndarray
    fpr: np.ndarray
    n_pos: int
    n_neg: int
    prevalence: float  # of the objects the curve was measured on

    @classmethod
    def from_object_scores(
        cls, best: np.ndarray, positive: np.ndarray, max_detections: int
    ) -> OperatingCurve:
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
        thr = np.nextafter(
            s[last], -np.inf
        )  # flag "score > threshold": just below each distinct score
        return cls(
            int(max_detections),
            thr,
            tp[last] / n_pos,
            fp[last] / n_neg,
            n_pos,
            n_neg,
            n_pos / (n_pos + n_neg),
        )

    def purity(self, prevalence: float | None = None) -> np.ndarray:
        pi = self.prevalence if prevalence is None else float(prevalence)
        _check_prevalence(pi, "the")
        num = pi * self.tpr
        den = num + (1.0 - pi) * self.fpr
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    def threshold_for(
        self, min_purity: float, prevalence: float | None = None, *, min_flagged: int = 10
    ) -> dict[str, float]:
        """The lowest threshold whose purity, and that of every stricter threshold flagging at least
        ``min_flagged`` of the curve's objects, is >= ``min_purity``.

        Why the whole upper range: the single threshold that just reaches the purity on held-out
        scores is a lucky dip as often as not; requiring it of every stricter threshold gives one
        that holds on new objects (the few top objects alone are left out: one negative among them
        says little). Returns threshold, efficiency and purity (threshold NaN, efficiency 0 when
        none reaches it).
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
        return {
            "threshold": float(self.threshold[i]),
            "efficiency": float(self.tpr[i]),
            "purity": float(pur[i]),
        }

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
            curve = cls(
                int(entry["max_detections"]),
                thr,
                tpr,
                fpr,
                int(entry["n_pos"]),
                int(entry["n_neg"]),
                float(entry["prevalence"]),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ModelError(f"malformed operating curve in the model card ({exc})") from exc
        if (
            thr.ndim != 1
            or not (len(thr) == len(tpr) == len(fpr))
            or len(thr) == 0
            or tpr.ndim != 1
            or fpr.ndim != 1
        ):
            raise ModelError("operating curve arrays differ in length or are empty")
        if not (np.all(np.isfinite(thr)) and np.all(np.isfinite(tpr)) and np.all(np.isfinite(fpr))):
            raise ModelError("operating curve holds non-finite values")
        if tpr.min() < 0 or tpr.max() > 1 or fpr.min() < 0 or fpr.max() > 1:
            raise ModelError("operating curve rates (tpr, fpr) outside [0, 1]")
        if (np.diff(thr) > 0).any() or (np.diff(tpr) < 0).any() or (np.diff(fpr) < 0).any():
            raise ModelError(
                "operating curve is not monotone (thresholds must decrease, rates increase)"
            )
        if (
            curve.max_detections < 1
            or curve.n_pos < 1
            or curve.n_neg < 1
            or not (0.0 < curve.prevalence < 1.0)
        ):
            raise ModelError(
                "operating curve needs max_detections, n_pos, n_neg >= 1 and a prevalence "
                "strictly between 0 and 1"
            )
        return curve


# ---------------------------------------------------------------------------- thresholds from a
# model card
def card_threshold(
    card: Mapping,
    max_detections: int = 20,
    min_purity: float = 0.8,
    prevalence: float | None = None,
) -> dict[str, float]:
    """The threshold reaching ``min_purity`` within ``max_detections`` at ``prevalence``
    (default: the training one) from a model card (or the card summary a SCORES file carries):
    its operating curve when it has one, else its fixed operating point (which cannot move to
    another prevalence). Returns threshold, efficiency, purity."""
    for c in card.get("operating_curves") or []:
        if int(c["max_detections"]) == int(max_detections):
            return OperatingCurve.from_card(c).threshold_for(min_purity, prevalence)
    if prevalence is not None:
        raise ModelError(
            f"the model card records no operating curve for {max_detections} detections: its "
            "threshold cannot move to another "
            "prevalence (re-train with this release, or use the training prevalence)"
        )
    for o in card.get("operating_points") or []:
        if int(o["max_detections"]) == int(max_detections) and float(o["min_purity"]) == float(
            min_purity
        ):
            t = o.get("threshold")
            return {
                "threshold": float("nan") if t is None else float(t),
                "efficiency": o.get("efficiency"),
                "purity": o.get("purity"),
            }
    raise ModelError(
        f"the model card records no operating point for purity {min_purity} within "
        f"{max_detections} detections"
    )


def stream_prevalence(scores, card: Mapping, *, min_objects: int = 30) -> tuple[float, int, str]:
    """The prevalence of positives among the objects of a SCORES table, estimated by EM from each
    object's latest scored alert (calibrated probabilities at the card's training prevalence).
    Returns ``(prevalence, objects, how)``; with fewer than ``min_objects`` scored objects, or a
    model without calibration by evidence, the training prevalence (``how`` says which)."""
    trained = (card.get("evidence") or {}).get("prevalence")
    if trained is None:
        raise ModelError(
            "the model is not calibrated by evidence: its scores are not probabilities, so "
            "no prevalence can be "
            "estimated from them (give --prevalence training)"
        )
    df = (
        scores[scores["passed"].fillna(False).astype(bool)]
        if "passed" in scores.columns
        else scores
    )
    order = [c for c in ("object_id", "mjd", "alert_id") if c in df.columns]
    latest = df.sort_values(order, kind="mergesort").drop_duplicates("object_id", keep="last")
    p = pd.to_numeric(latest["score"], errors="coerce").to_numpy(np.float64)
    p = p[np.isfinite(p)]
    if len(p) < min_objects:
        return (
            float(trained),
            len(p),
            f"training prevalence: only {len(p)} scored object(s), too few to estimate the "
            "stream's",
        )
    est, it = estimate_prevalence(p, float(trained))
    return (
        est,
        len(p),
        f"estimated from {len(p)} scored objects (EM prior adjustment, {it} iterations)",
    )
