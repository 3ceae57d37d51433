"""A learned combination of the available scores, compared with Fink's fixed AND/OR rule.

Fink's rule thresholds each classifier at 0.5 and combines them with AND/OR. When labelled alerts
exist, a logistic regression on the logits of the scores (ours, SuperNNova's, Fink's...) learns how
much each one says, and its output is a calibrated probability. A score of exactly 0 usually means
"not evaluated" (Fink's selection cuts failed), not "surely not a SN Ia", so it gets its own
indicator feature instead of an extreme logit. It is fitted and evaluated with
object-level cross-validation (all alerts of an object in the same fold), so no object's alerts
are in both the training and the evaluated fold. Missing scores (an alert without SuperNNova) get
a logit of 0 and a missing-indicator feature, so alerts with and without them can be combined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from earlyia.data import shared_path
from earlyia.errors import InputError, ModelError
from earlyia.evaluate import PROTOCOL_TYPES, counts_metrics
from earlyia.features import get_extractor
from earlyia.io.fink import lightcurves_from_fink_frame
from earlyia.labels import POSITIVE, UNLABELLED, read_labels
from earlyia.model.recipe import Recipe
from earlyia.model.training import train_model
from earlyia.report.calibration import ScoreCalibrator, calibration_report
from earlyia.report.candidates import CandidateRule
from earlyia.score.pipeline import score_lightcurves

EPS = 1e-4


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


class StackedScorer:
    """Logistic regression on ``logit(score)`` of each column (+ a missing indicator when needed).

    Args:
        columns: score columns to combine; columns absent from the data at fit time are dropped
            (and listed in ``used_columns_``).
        C: inverse L2 regularisation strength of the logistic regression.
    """

    def __init__(
        self,
        columns: Sequence[str] = ("score", "snn_snia_vs_nonia", "snn_sn_vs_all"),
        C: float = 1.0,
    ):
        self.columns = tuple(columns)
        self.C = C

    def _design(self, df: pd.DataFrame) -> np.ndarray:
        feats = []
        for c in self.used_columns_:
            v = (
                pd.to_numeric(df[c], errors="coerce").to_numpy(np.float64)
                if c in df.columns
                else np.full(len(df), np.nan)
            )
            miss = ~np.isfinite(v)
            zero = ~miss & (v <= 0)
            feats.append(np.where(miss | zero, 0.0, _logit(np.where(miss | zero, 0.5, v))))
            if c in self.missing_columns_:
                feats.append(miss.astype(np.float64))
            if c in self.zero_columns_:
                feats.append(zero.astype(np.float64))
        return np.column_stack(feats) if feats else np.zeros((len(df), 0))

    def fit(self, df: pd.DataFrame, y: np.ndarray) -> StackedScorer:
        from sklearn.linear_model import LogisticRegression

        self.used_columns_ = tuple(
            c
            for c in self.columns
            if c in df.columns and pd.to_numeric(df[c], errors="coerce").notna().any()
        )
        if not self.used_columns_:
            raise InputError(f"none of the score columns {list(self.columns)} has values")
        self.missing_columns_ = tuple(
            c for c in self.used_columns_ if pd.to_numeric(df[c], errors="coerce").isna().any()
        )
        self.zero_columns_ = tuple(
            c for c in self.used_columns_ if (pd.to_numeric(df[c], errors="coerce") <= 0).any()
        )
        y = np.asarray(y).astype(int)
        if len(np.unique(y)) < 2:
            raise InputError("stacking needs both SN Ia and other labels")
        self.model_ = LogisticRegression(C=self.C, max_iter=1000).fit(self._design(df), y)
        return self

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """P(SN Ia) per row."""
        if not hasattr(self, "model_"):
            raise ModelError("StackedScorer is not fitted")
        return self.model_.predict_proba(self._design(df))[:, 1]

    def coefficients(self) -> dict[str, float]:
        names = []
        for c in self.used_columns_:
            names.append(f"logit({c})")
            if c in self.missing_columns_:
                names.append(f"{c} missing")
            if c in self.zero_columns_:
                names.append(f"{c} == 0")
        out = dict(zip(names, self.model_.coef_[0].tolist(), strict=True))
        out["intercept"] = float(self.model_.intercept_[0])
        return out


def object_folds(
    object_ids: Sequence[str], y: np.ndarray, n_splits: int = 5, random_state: int = 0
) -> np.ndarray:
    """Fold number per row; all rows of an object share a fold, folds stratified on the object
    label."""
    ids = pd.Series(np.asarray(object_ids).astype(str))
    obj_y = pd.Series(np.asarray(y).astype(bool)).groupby(ids.to_numpy()).max()
    rng = np.random.default_rng(random_state)
    fold_of = {}
    for label in (True, False):
        members = obj_y.index[obj_y.to_numpy() == label].to_numpy()
        members = members[rng.permutation(len(members))]
        for k, oid in enumerate(members):
            fold_of[oid] = k % n_splits
    return ids.map(fold_of).to_numpy(np.int64)


def cross_val_stacked(
    df: pd.DataFrame,
    y: np.ndarray,
    *,
    columns: Sequence[str] | None = None,
    n_splits: int = 5,
    random_state: int = 0,
    C: float = 1.0,
    folds: np.ndarray | None = None,
) -> np.ndarray:
    """Out-of-fold stacked probabilities (object-level folds from :func:`object_folds` unless
    given)."""
    if "object_id" not in df.columns:
        raise InputError("stacking needs an 'object_id' column for object-level folds")
    y = np.asarray(y).astype(bool)
    if folds is None:
        folds = object_folds(df["object_id"].to_numpy(), y, n_splits, random_state)
    folds = np.asarray(folds, np.int64)
    out = np.full(len(df), np.nan)
    for k in np.unique(folds):
        test = folds == k
        if not test.any():
            continue
        model = StackedScorer(**({"columns": columns} if columns else {}), C=C).fit(
            df.loc[~test], y[~test]
        )
        out[test] = model.predict_proba(df.loc[test])
    return out


@dataclass
class Comparison:
    """Purity and efficiency of the fixed rule and the stacked score, per alert and per object."""

    table: pd.DataFrame
    notes: list[str]

    def to_markdown(self) -> str:
        cols = list(self.table.columns)
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        for r in self.table.itertuples(index=False):
            lines.append(
                "| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r) + " |"
            )
        return "\n".join(lines) + "\n" + "".join(f"\n- {n}" for n in self.notes) + "\n"


def _flag_metrics(
    name: str, flagged: np.ndarray, df: pd.DataFrame, y: np.ndarray, max_detections: Sequence[int]
) -> list[dict]:
    rows = []
    ya = y.astype(bool)
    tp, fp = int((flagged & ya).sum()), int((flagged & ~ya).sum())
    m = counts_metrics(np.array([tp]), np.array([fp]), int(ya.sum()))
    rows.append(
        {
            "method": name,
            "unit": "alert",
            "tp": tp,
            "fp": fp,
            "efficiency": float(m["efficiency"][0]),
            "purity": float(m["purity"][0]),
        }
    )
    obj = df["object_id"].astype(str).to_numpy()
    obj_y = pd.Series(ya).groupby(obj).max()
    n_pos = int(obj_y.sum())
    nd = pd.to_numeric(df["ndethist"], errors="coerce").to_numpy(np.float64)
    for n in max_detections:
        early = flagged & (nd <= n)
        fl = pd.Series(early).groupby(obj).max().reindex(obj_y.index).to_numpy(bool)
        tp, fp = int((fl & obj_y.to_numpy(bool)).sum()), int((fl & ~obj_y.to_numpy(bool)).sum())
        m = counts_metrics(np.array([tp]), np.array([fp]), n_pos)
        rows.append(
            {
                "method": name,
                "unit": f"object, <= {n} det.",
                "tp": tp,
                "fp": fp,
                "efficiency": float(m["efficiency"][0]),
                "purity": float(m["purity"][0]),
            }
        )
    return rows


def compare_rule_and_stacking(
    df: pd.DataFrame,
    y: np.ndarray,
    *,
    rule: CandidateRule | None = None,
    columns: Sequence[str] | None = None,
    threshold: float = 0.5,
    max_detections: Sequence[int] = (10, 20),
    n_splits: int = 5,
    random_state: int = 0,
) -> tuple[Comparison, np.ndarray]:
    """Fixed rule vs out-of-fold stacked score (same quality cuts for both) on labelled alerts.

    The stacked method flags an alert when its stacked probability is above ``threshold`` AND the
    rule's non-score cuts (ndethist, drb, classtar, cdsxmatch, enabled ones only) pass. Returns the
    comparison and the out-of-fold stacked probabilities.
    """
    rule = rule or CandidateRule()
    y = np.asarray(y).astype(bool)
    if len(y) != len(df):
        raise InputError(f"{len(y)} labels for {len(df)} alerts")
    fixed = rule.evaluate(df)
    from dataclasses import replace

    quality = replace(rule, min_score=None, min_snn=None).evaluate(df).passed
    stacked = cross_val_stacked(
        df, y, columns=columns, n_splits=n_splits, random_state=random_state
    )
    rows = _flag_metrics("fixed rule", fixed.passed, df, y, max_detections)
    rows += _flag_metrics(
        f"stacked > {threshold:g}", quality & (stacked > threshold), df, y, max_detections
    )
    notes = list(fixed.notes)
    used = StackedScorer(**({"columns": columns} if columns else {})).fit(df, y)
    notes.append(
        "stacked coefficients (fit on all labelled alerts): "
        + ", ".join(f"{k} {v:+.3f}" for k, v in used.coefficients().items())
    )
    notes.append(
        f"stacked probabilities are out-of-fold ({n_splits} object-level folds, seed "
        f"{random_state})"
    )
    return Comparison(pd.DataFrame(rows), notes), stacked


# ----------------------------------------------------------------------------------------------
# figures for the docs
def _our_oof_scores(
    replay: pd.DataFrame, labels: pd.Series, n_splits: int, random_state: int, n_estimators: int
) -> np.ndarray:
    """Our model's score on every replay alert, out-of-fold (the model never saw the alert's
    object)."""
    df = replay.assign(TNS=replay["objectId"].map(labels))
    lc = lightcurves_from_fink_frame(df, source="replay")
    ex = get_extractor("sigmoid")
    feats = ex.transform(lc, per="alert")
    y = (feats["label"].astype(str) == "SN Ia").to_numpy()
    folds = object_folds(feats["object_id"].to_numpy(), y, n_splits, random_state)
    scores = pd.Series(np.nan, index=feats["alert_id"].astype(str).to_numpy())
    for k in range(n_splits):
        train_ids = set(feats.loc[folds != k, "object_id"])
        model = train_model(
            feats[folds != k],
            ex.config(),
            Recipe(n_estimators=n_estimators),
            random_state=random_state,
        )
        test = lc.take(np.flatnonzero(~lc.objects["object_id"].isin(train_ids).to_numpy()))
        s = score_lightcurves(test, model, ex)
        scores.loc[s["alert_id"].astype(str).to_numpy()] = s["score"].to_numpy()
    return scores.reindex(replay["candid"].astype(str).to_numpy()).to_numpy()


def main(argv: Sequence[str] | None = None) -> int:
    """Calibration and rule-vs-stacking figures on the labelled replay (and what the unlabelled
    pool allows)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m earlyia.report.stacking", description=main.__doc__)
    ap.add_argument(
        "--our-score",
        action="store_true",
        help="also score the replay with our model, out-of-fold (slow: minutes)",
    )
    ap.add_argument("--n-estimators", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    replay = pd.read_parquet(shared_path("ztf_replay_alerts_with_anchor.parquet", reference=True))
    labels = read_labels(shared_path("ztf_fink_tns_labelled/objects.csv"))
    enc = PROTOCOL_TYPES.encode(replay["objectId"].map(labels).to_numpy(object))
    replay = replay.loc[enc != UNLABELLED].reset_index(drop=True)
    y = enc[enc != UNLABELLED] == POSITIVE
    df = pd.DataFrame(
        {
            "object_id": replay["objectId"],
            "alert_id": replay["candid"],
            "ndethist": replay["ndethist"].astype(float),
            "cdsxmatch": replay["cdsxmatch"],
            "anchor_score": replay["anchor_score"],
        }
    )
    n_ia = int(pd.Series(y).groupby(df["object_id"].to_numpy()).max().sum())
    print(
        f"# Replay: {len(df)} alerts of {df['object_id'].nunique()} labelled objects ({n_ia} "
        "SN Ia)\n"
    )
    folds = object_folds(df["object_id"].to_numpy(), y, 5, args.seed)
    columns = ["anchor_score"]
    if args.our_score:
        df["our_score"] = _our_oof_scores(replay, labels, 5, args.seed, args.n_estimators)
        columns.append("our_score")
    for col in columns:
        s = df[col].to_numpy(float)
        print(calibration_report(s, y).to_markdown(f"`{col}` (raw)"))
        cal = np.full(len(s), np.nan)
        for k in range(5):
            cal[folds == k] = (
                ScoreCalibrator("isotonic")
                .fit(s[folds != k], y[folds != k])
                .transform(s[folds == k])
            )
        rep = calibration_report(cal, y)
        print(
            f"`{col}` isotonic-calibrated out-of-fold (5 object folds): Brier "
            f"{rep.brier:.4f}, ECE {rep.ece:.4f}\n"
        )
    for score_col in columns:
        rule = CandidateRule(min_snn=None, min_drb=None, min_classtar=None, require_passed=False)
        frame = df.assign(score=df[score_col])
        stack_cols = ["score"] + [c for c in columns if c != score_col]
        comp, _ = compare_rule_and_stacking(
            frame, y, rule=rule, columns=stack_cols, random_state=args.seed
        )
        print(
            f"## Fixed rule on `{score_col}` vs stacked {stack_cols} (drb, classtar and "
            "SuperNNova absent from the replay: cuts off)\n"
        )
        print(comp.to_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
