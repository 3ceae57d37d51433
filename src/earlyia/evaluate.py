"""The alert-by-alert early-classification protocol ("replay"), as a library function.

What matters in production is whether an object is flagged while it is still early, and how
pure the flagged set is. An object counts as flagged within ``N`` detections when ANY of its
alerts with at most ``N`` detections scores above the threshold. With ``P`` the positive objects
present in the scores (labelled, at least one alert):

* efficiency = flagged positives / P, purity = flagged positives / all flagged objects,
* FoM = efficiency * TP / (TP + W FP) with W = 3 (Leoni et al. 2022).

Because "flagged at threshold t" only depends on each object's maximum score over its early
alerts, the whole efficiency-purity curve comes from one sort of those maxima.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from earlyia.errors import InputError
from earlyia.io.table import atomic_write
from earlyia.labels import POSITIVE, UNLABELLED, TypeMap
from earlyia.metrics import FOM_WEIGHT, counts_to_metrics

#: The replay protocol's labels: 'SN Ia' positive, any other non-empty type negative.
PROTOCOL_TYPES = TypeMap(unlabelled=("",))


def counts_metrics(
    tp: np.ndarray, fp: np.ndarray, n_pos: int, w: float = FOM_WEIGHT
) -> dict[str, np.ndarray]:
    """Efficiency, purity and FoM of flagged objects from true/false positive counts and the
    positives present.

    The formulas live in :func:`earlyia.metrics.counts_to_metrics` (0 for an empty denominator).
    """
    tp = np.asarray(tp, float)
    met = counts_to_metrics(tp, fp, np.zeros_like(tp), n_pos - tp, fom_weight=w)
    return {k: met[k] for k in ("efficiency", "purity", "fom")}


@dataclass
class EarlyReport:
    """Result of :func:`evaluate_early`."""

    summary: (
        pd.DataFrame
    )  # one row per N: n_pos, n_neg, tp, fp, efficiency, purity, fom (at threshold)
    curves: dict[int, pd.DataFrame]  # per N: threshold, tp, fp, efficiency, purity, fom
    by_detections: pd.DataFrame  # efficiency & purity vs N = 1..max at the threshold
    per_alert: dict[str, float]  # alert-level efficiency / purity / Brier
    calibration: pd.DataFrame  # reliability bins over alerts
    threshold: float
    score_column: str

    def best_at_purity(self, n: int, min_purity: float = 0.8) -> dict[str, float]:
        """Highest efficiency on the curve of ``n`` with purity >= ``min_purity`` (and its
        threshold).

        Choosing the threshold on the evaluated data is optimistic; it is reported beside the fixed
        threshold, never instead of it.
        """
        return best_at_purity(self.curves[n], min_purity)

    def to_markdown(self) -> str:
        lines = [
            f"Score column `{self.score_column}`, threshold {self.threshold:g}.",
            "",
            "| N detections | SN Ia | others | TP | FP | efficiency | purity | FoM | best "
            "eff. at purity >= 0.8 (threshold) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for _, r in self.summary.iterrows():
            n = int(r["max_detections"])
            b = self.best_at_purity(n)
            best = (
                f"{b['efficiency']:.3f} ({b['threshold']:.3f})"
                if np.isfinite(b["threshold"])
                else "-"
            )
            lines.append(
                f"| {n} | {int(r['n_pos'])} | {int(r['n_neg'])} | {int(r['tp'])} | "
                f"{int(r['fp'])} | "
                f"{r['efficiency']:.3f} | {r['purity']:.3f} | {r['fom']:.3f} | {best} |"
            )
        pa = self.per_alert
        lines += [
            "",
            f"Per alert: efficiency {pa['efficiency']:.3f}, purity {pa['purity']:.3f}, Brier "
            f"{pa['brier']:.4f}.",
        ]
        return "\n".join(lines)


def evaluate_early(
    scores: pd.DataFrame,
    labels: pd.Series | None = None,
    *,
    max_detections: Sequence[int] = (5, 10, 20),
    threshold: float = 0.5,
    score_column: str = "score",
    detections_column: str = "ndethist",
    type_map: TypeMap | None = None,
    n_calibration_bins: int = 10,
) -> EarlyReport:
    """Evaluate per-alert scores with the replay protocol.

    Args:
        scores: one row per alert with ``object_id`` (or ``objectId``), the score column and the
            number of detections the alert had (``detections_column``).
        labels: type string per object id (index = object id). When None, the ``label`` column of
            ``scores`` is used. Unlabelled objects (vague types) are left out.
        max_detections: the N of "flagged within N detections". type_map: positive-class mapping.
        Default: the protocol's own, TNS 'SN Ia' positive and every
            other type negative (vague types such as 'SN' too, as in the reference figures); only
            objects without any label are left out.
    """
    type_map = type_map or PROTOCOL_TYPES
    df = scores.rename(columns={"objectId": "object_id"})
    for col in ("object_id", score_column, detections_column):
        if col not in df.columns:
            raise InputError(f"scores lack column {col!r}; have {list(df.columns)[:12]}")
    if labels is None:
        if "label" not in df.columns:
            raise InputError(
                "no labels: give labels (object id -> type) or a 'label' column in the scores"
            )
        types = df["label"]
    else:
        types = df["object_id"].map(labels)
    y = type_map.encode(types.to_numpy(object))
    keep = y != UNLABELLED
    df = df.loc[keep, ["object_id", score_column, detections_column]].copy()
    df["y"] = y[keep] == POSITIVE
    score = df[score_column].to_numpy(float)
    if not np.isfinite(score).all():
        raise InputError(f"column {score_column!r} has non-finite scores")
    obj = df.groupby("object_id", sort=True)["y"].first()
    n_pos, n_neg = int(obj.sum()), int((~obj).sum())
    if n_pos == 0:
        raise InputError("no positive object among the labelled scores")

    summary, curves = [], {}
    for n in sorted(set(int(v) for v in max_detections)):
        early = df[df[detections_column] <= n]
        best = early.groupby("object_id", sort=True)[score_column].max()
        m = pd.DataFrame({"max": best}).join(obj, how="left")
        flagged = m["max"].to_numpy() > threshold
        tp = int((flagged & m["y"].to_numpy(bool)).sum())
        fp = int((flagged & ~m["y"].to_numpy(bool)).sum())
        met = counts_metrics(np.array([tp]), np.array([fp]), n_pos)
        row = {"max_detections": n, "n_pos": n_pos, "n_neg": n_neg, "tp": tp, "fp": fp}
        summary.append(row | {k: float(v[0]) for k, v in met.items()})
        curves[n] = _curve(m["max"].to_numpy(float), m["y"].to_numpy(bool), n_pos)

    top = int(df[detections_column].max())
    by_det = []
    for n in range(1, top + 1):
        early = df[df[detections_column] <= n]
        best = early.groupby("object_id")[score_column].max()
        yy = obj.reindex(best.index).to_numpy(bool)
        fl = best.to_numpy() > threshold
        met = counts_metrics(np.array([(fl & yy).sum()]), np.array([(fl & ~yy).sum()]), n_pos)
        by_det.append(
            {
                "max_detections": n,
                "n_flagged": int(fl.sum()),
                **{k: float(v[0]) for k, v in met.items()},
            }
        )

    ya = df["y"].to_numpy(bool)
    fla = score > threshold
    alert_met = counts_metrics(
        np.array([(fla & ya).sum()]), np.array([(fla & ~ya).sum()]), int(ya.sum())
    )
    per_alert = {k: float(v[0]) for k, v in alert_met.items()}
    per_alert["brier"] = float(np.mean((score - ya) ** 2))
    return EarlyReport(
        summary=pd.DataFrame(summary),
        curves=curves,
        by_detections=pd.DataFrame(by_det),
        per_alert=per_alert,
        calibration=reliability(score, ya, n_calibration_bins),
        threshold=threshold,
        score_column=score_column,
    )


def best_at_purity(curve: pd.DataFrame, min_purity: float = 0.8) -> dict[str, float]:
    """Highest efficiency on an efficiency-purity ``curve`` with purity >= ``min_purity`` (and
    its threshold)."""
    ok = curve[curve["purity"] >= min_purity]
    if ok.empty:
        return {"threshold": float("nan"), "efficiency": 0.0, "purity": float("nan")}
    row = ok.loc[ok["efficiency"].idxmax()]
    return {
        "threshold": float(row["threshold"]),
        "efficiency": float(row["efficiency"]),
        "purity": float(row["purity"]),
    }


def efficiency_purity_curve(score: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """Efficiency / purity / FoM of flagging ``score`` > each distinct threshold (per row: alerts
    or objects)."""
    y = np.asarray(y, bool)
    return _curve(np.asarray(score, np.float64), y, int(y.sum()))


def _curve(best: np.ndarray, y: np.ndarray, n_pos: int) -> pd.DataFrame:
    """Efficiency/purity/FoM when flagging objects whose max score is > each distinct threshold."""
    if len(best) == 0:
        return pd.DataFrame(
            {"threshold": [], "tp": [], "fp": [], "efficiency": [], "purity": [], "fom": []}
        )
    order = np.argsort(-best, kind="mergesort")
    s, yy = best[order], y[order]
    tp = np.cumsum(yy)
    fp = np.cumsum(~yy)
    # threshold just below each distinct score: everything with score >= it is flagged
    last = np.r_[s[1:] != s[:-1], True]
    thr = s[last]
    met = counts_metrics(tp[last], fp[last], n_pos)
    # "score > threshold": flagging the objects down to s means a threshold just below s
    return pd.DataFrame(
        {"threshold": np.nextafter(thr, -np.inf), "tp": tp[last], "fp": fp[last], **met}
    )


def reliability(score: np.ndarray, y: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Calibration curve over equal-width score bins: mean score, observed fraction, count."""
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(score, edges[1:-1]), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        sel = idx == b
        rows.append(
            {
                "bin_low": edges[b],
                "bin_high": edges[b + 1],
                "count": int(sel.sum()),
                "mean_score": float(score[sel].mean()) if sel.any() else float("nan"),
                "fraction_positive": float(y[sel].mean()) if sel.any() else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def plot_efficiency_vs_detections(report: EarlyReport, path, *, label: str | None = None) -> None:
    """PNG of efficiency and purity vs the number of detections allowed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    d = report.by_detections
    # purity is undefined where nothing is flagged: a gap, not a 0
    purity = d["purity"].where(d["n_flagged"] > 0) if "n_flagged" in d else d["purity"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(d["max_detections"], d["efficiency"], "o-", label="efficiency")
    ax.plot(d["max_detections"], purity, "s--", label="purity")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("detections at most N")
    ax.set_ylabel(f"fraction (score > {report.threshold:g})")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(label or f"early flagging: {report.score_column}")
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
