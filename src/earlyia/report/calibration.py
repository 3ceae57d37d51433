"""How far a score can be read as a probability, and a calibrated score when it cannot.

A reported "score 0.8" should mean "about 8 in 10 such alerts are SN Ia". :func:`calibration_report`
measures that on labelled alerts (reliability curve with counts per bin, Brier score, expected
calibration error); :class:`ScoreCalibrator` fits a monotone map (isotonic regression or Platt's
sigmoid) on labelled scores and applies it to new ones. The map is stored as plain arrays, in the
same format as a model file's ``calibration.npz``
(:func:`earlyia.model.calibration.fit_calibration`), so a calibration fitted here can travel with a
model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from earlyia.errors import InputError, ModelError
from earlyia.evaluate import PROTOCOL_TYPES, reliability
from earlyia.io.table import atomic_write
from earlyia.labels import POSITIVE, UNLABELLED, read_labels
from earlyia.model.calibration import apply_calibration, fit_calibration


def _check(score: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    score = np.asarray(score, np.float64)
    y = np.asarray(y)
    if score.shape != y.shape or score.ndim != 1:
        raise InputError(
            f"score and labels must be 1-d arrays of the same length, got {score.shape} and "
            f"{y.shape}"
        )
    if not np.isfinite(score).all():
        raise InputError(
            f"{int((~np.isfinite(score)).sum())} non-finite score(s): drop or fill them first"
        )
    if ((score < 0) | (score > 1)).any():
        raise InputError("scores must lie in [0, 1]")
    return score, y.astype(bool)


def reliability_curve(score: np.ndarray, y: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Equal-width bins over [0, 1]: ``bin_low, bin_high, count, mean_score, fraction_positive``."""
    score, y = _check(score, y)
    return reliability(score, y, n_bins)


def brier_score(score: np.ndarray, y: np.ndarray) -> float:
    """Mean squared difference between the score and the 0/1 outcome (0 is perfect)."""
    score, y = _check(score, y)
    return float(np.mean((score - y) ** 2)) if len(score) else float("nan")


def expected_calibration_error(score: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """Count-weighted mean of |observed fraction - mean score| over the reliability bins."""
    curve = reliability_curve(score, y, n_bins)
    n = curve["count"].sum()
    if n == 0:
        return float("nan")
    used = curve["count"] > 0
    gap = (curve.loc[used, "fraction_positive"] - curve.loc[used, "mean_score"]).abs()
    return float((gap * curve.loc[used, "count"]).sum() / n)


@dataclass
class CalibrationReport:
    curve: pd.DataFrame
    brier: float
    ece: float
    n: int
    n_positive: int

    def to_dict(self) -> dict:
        curve = self.curve.to_dict(orient="list")
        return {
            "brier": self.brier,
            "ece": self.ece,
            "n": self.n,
            "n_positive": self.n_positive,
            "curve": curve,
        }

    def to_markdown(self, title: str = "score") -> str:
        lines = [
            f"{title}: Brier {self.brier:.4f}, ECE {self.ece:.4f} ({self.n} alerts, "
            f"{self.n_positive} SN Ia)",
            "",
            "| score bin | alerts | mean score | fraction SN Ia |",
            "|---|---|---|---|",
        ]
        for r in self.curve.itertuples(index=False):
            ms = f"{r.mean_score:.3f}" if r.count else "-"
            fp = f"{r.fraction_positive:.3f}" if r.count else "-"
            lines.append(f"| {r.bin_low:.1f}-{r.bin_high:.1f} | {r.count} | {ms} | {fp} |")
        return "\n".join(lines) + "\n"


def calibration_report(score: np.ndarray, y: np.ndarray, n_bins: int = 10) -> CalibrationReport:
    """Reliability curve, Brier score and ECE of ``score`` against labels ``y``."""
    score, y = _check(score, y)
    return CalibrationReport(
        curve=reliability_curve(score, y, n_bins),
        brier=brier_score(score, y),
        ece=expected_calibration_error(score, y, n_bins),
        n=len(score),
        n_positive=int(y.sum()),
    )


class ScoreCalibrator:
    """Monotone map from a raw score to P(SN Ia), fitted on labelled alerts.

    Args:
        method: ``"isotonic"`` (step function, needs a few hundred labels) or ``"sigmoid"``
            (Platt: two parameters, robust with few labels).
    """

    def __init__(self, method: str = "isotonic"):
        self.method = method

    def fit(self, score: np.ndarray, y: np.ndarray) -> ScoreCalibrator:
        score, y = _check(score, y)
        if y.all() or not y.any():
            raise InputError("calibration needs both SN Ia and other labels")
        self.arrays_ = fit_calibration(score, y, self.method)
        return self

    def transform(self, score: np.ndarray) -> np.ndarray:
        """Calibrated scores (same shape); NaN stays NaN."""
        if not hasattr(self, "arrays_"):
            raise ModelError("ScoreCalibrator is not fitted: call fit() or load() first")
        s = np.asarray(score, np.float64)
        out = np.full(s.shape, np.nan)
        ok = np.isfinite(s)
        out[ok] = apply_calibration(s[ok], self.arrays_)
        return out

    def to_dict(self) -> dict:
        return {
            "format": "earlyia.calibration/1",
            **{k: np.asarray(v).tolist() for k, v in self.arrays_.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> ScoreCalibrator:
        if d.get("format") != "earlyia.calibration/1":
            raise ModelError(f"not an earlyia calibration (format {d.get('format')!r})")
        method = str(d["method"])
        c = cls(method)
        arrays = {"method": np.array(method)}
        for k, v in d.items():
            if k not in ("format", "method"):
                arrays[k] = np.asarray(v, np.float64)
        c.arrays_ = arrays
        return c

    def save(self, path: str | Path) -> None:
        text = json.dumps(self.to_dict(), indent=1)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))

    @classmethod
    def load(cls, path: str | Path) -> ScoreCalibrator:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise ModelError(f"{path}: cannot read calibration ({exc})") from exc


def calibrate_scores(
    scores: str | Path, labels: str | Path, *, score_column: str = "score", method: str = "isotonic"
) -> tuple[ScoreCalibrator, CalibrationReport, CalibrationReport]:
    """Fit a calibration of a scores file's ``score_column`` on labelled objects.

    Every scored row whose object has a label counts (the replay protocol's types: SN Ia positive,
    every other type negative). Returns the fitted calibrator and the reliability before and after
    it (in-sample, so the second is optimistic).
    """
    try:
        df = pd.read_parquet(scores).rename(columns={"objectId": "object_id"})
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the scores ({exc})", source=scores) from exc
    for column in ("object_id", score_column):
        if column not in df.columns:
            raise InputError(
                f"no column {column!r} (give --score-column for another score)", source=scores
            )
    y = PROTOCOL_TYPES.encode(df["object_id"].map(read_labels(labels)).to_numpy(object))
    s = pd.to_numeric(df[score_column], errors="coerce").to_numpy(float)
    keep = (y != UNLABELLED) & np.isfinite(s)
    if not keep.any():
        raise InputError(f"no scored object has a label in {labels}", source=scores)
    yy = y[keep] == POSITIVE
    cal = ScoreCalibrator(method).fit(s[keep], yy)
    return cal, calibration_report(s[keep], yy), calibration_report(cal.transform(s[keep]), yy)
