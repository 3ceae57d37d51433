"""Stress test: how early flagging holds when the stream delivers alerts unlike the curated replay.

Each *case* perturbs every labelled light curve one way (:mod:`earlyia.augment`), replays it alert
by alert, and scores the alerts with each scorer given (an earlyia model, Fink's production
forest...), each through its own selection, features and gate, exactly as ``earlyia score`` would.
The replay protocol (:mod:`earlyia.evaluate`) then gives efficiency and purity within N detections,
at the model's own threshold and at 0.5. Two protection cases count flagged objects instead: light
curves whose every detection is a negative difference, and the alerts of
:mod:`earlyia.sim.impostors`.

The alerts of a case are materialised as one small light curve per alert (``<object>@<k>``) so that
any history window can be scored by the same pipeline as real alerts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from earlyia import augment
from earlyia.errors import InputError, ModelError
from earlyia.evaluate import PROTOCOL_TYPES, evaluate_early
from earlyia.io.table import LightCurves, atomic_write
from earlyia.score.pipeline import score_lightcurves


@dataclass(frozen=True)
class Case:
    """One way the stream differs from the replay: perturbations, first replayed detection,
    history window."""

    name: str
    steps: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    min_detections: int = 3
    window_days: float | None = None
    protection: bool = False  # every object is a negative: report the fraction flagged
    description: str = ""


#: The cases of the stress report. The replay protocol's own alerts start at the 3rd detection.
CASES = (
    Case(
        "as given",
        description="the replay as given: alerts from the 3rd detection, upper limits kept",
    ),
    Case(
        "no upper limits",
        (("drop_limits", {}),),
        description="every non-detection removed (detections-only sources)",
    ),
    Case(
        "30-day history",
        window_days=augment.ZTF_HISTORY_DAYS,
        description="each alert carries 30 days of history, as ZTF's",
    ),
    Case("g band only", (("single_band", {"band": "g"}),), description="the r-band points removed"),
    Case("r band only", (("single_band", {"band": "r"}),), description="the g-band points removed"),
    Case(
        "cadence halved",
        (("thin_cadence", {"keep_every": 2}),),
        description="every other night removed",
    ),
    Case(
        "1 mag fainter",
        (("shift_magnitude", {"delta": 1.0}),),
        description="same sky noise, detections below 5 sigma lost",
    ),
    Case(
        "1 mag brighter",
        (("shift_magnitude", {"delta": -1.0}),),
        description="flux and errors scaled",
    ),
    Case(
        "from the 1st detection",
        min_detections=1,
        description="alerts with 1 and 2 detections added",
    ),
    Case(
        "a negative difference",
        (("negative_difference", {}),),
        description="one negative-difference detection added to each",
    ),
    Case(
        "negative differences only",
        (("flip_sign", {}),),
        protection=True,
        description="every detection negative: flagged objects are false candidates",
    ),
)


def case_named(name: str) -> Case:
    for c in CASES:
        if c.name == name:
            return c
    raise InputError(f"unknown stress case {name!r}; choose from {[c.name for c in CASES]}")


def explode(
    segments: augment.Segments, object_columns: Sequence[str] = ("cdsxmatch", "label")
) -> LightCurves:
    """One light curve per segment (``<object>@<k>``), with one alert at its last point carrying
    ``ndethist = k``."""
    lc = segments.lc
    keep = segments.ends > segments.starts
    starts, ends = segments.starts[keep], segments.ends[keep]
    obj, k = segments.object_index[keep], segments.ndethist[keep]
    base = lc.objects["object_id"].astype(str).to_numpy(object)[obj]
    ids = np.array([f"{o}@{n}" for o, n in zip(base, k, strict=True)], dtype=object)
    objects = pd.DataFrame(
        {"object_id": ids, "source_object": base, "ndethist": k.astype(np.int64)}
    )
    for c in object_columns:
        if c in lc.objects.columns:
            objects[c] = lc.objects[c].to_numpy(object)[obj]
    last = lc.mjd[ends - 1]
    alerts = pd.DataFrame(
        {
            "object_index": np.arange(len(starts)),
            "alert_id": ids,
            "mjd": last,
            "ndethist": k.astype(np.int64),
        }
    )
    if "cdsxmatch" in objects.columns:
        alerts["cdsxmatch"] = objects["cdsxmatch"].to_numpy(object)
    return lc.from_segments(starts, ends, objects, alerts)


def case_alerts(
    lc: LightCurves, case: Case, *, max_detections: int = 20, random_state=None
) -> LightCurves:
    """The alerts of ``case`` (one light curve each, see :func:`explode`) built from labelled
    light curves ``lc``."""
    cur = augment.perturb(lc, case.steps, random_state) if case.steps else lc
    seg = augment.replay_segments(
        cur, case.min_detections, max_detections, window_days=case.window_days
    )
    return explode(seg)


#: A scorer: alerts (one light curve each) -> one score per alert, in ``lc.alerts`` order.
Scorer = Callable[[LightCurves], np.ndarray]


@dataclass
class StressScorer:
    """A named scorer and the threshold of its own operating point (``None``: only 0.5 is
    reported)."""

    name: str
    score: Scorer
    threshold: float | None = None
    extra: dict = field(default_factory=dict)


def model_scorer(
    model, name: str | None = None, *, max_detections: int = 20, min_purity: float = 0.8
) -> StressScorer:
    """A :class:`StressScorer` of an earlyia :class:`~earlyia.model.artifact.Model` (selection,
    features, gate and calibration of ``earlyia score``), with the card's threshold for
    ``min_purity`` within ``max_detections``."""

    def score(alerts: LightCurves) -> np.ndarray:
        out = score_lightcurves(alerts, model, per="alert")
        return (
            out.set_index("alert_id")["score"]
            .reindex(alerts.alerts["alert_id"].astype(str))
            .to_numpy(np.float64)
        )

    try:
        t = model.threshold(max_detections, min_purity)["threshold"]
        thr = float(t) if t is not None and np.isfinite(t) else None
    except ModelError:  # a card without operating points: only 0.5 is reported
        thr = None
    return StressScorer(name or f"model {model.hash[:12]}", score, thr)


IMPOSTOR_CASE = Case(
    "generated flat, fading, noisy",
    min_detections=1,
    protection=True,
    description="earlyia.sim.impostors light curves, every alert",
)


def case_table(
    lc: LightCurves,
    scorers: Sequence[StressScorer],
    *,
    cases: Sequence[Case] = CASES,
    max_detections: int = 20,
    random_state: int = 0,
    impostors: LightCurves | None = None,
) -> pd.DataFrame:
    """Every alert of every case scored by every scorer: ``case, scorer, object_id, ndethist, label,
    score, own`` (``own``: the scorer's threshold, NaN when it has none) and ``protection``.

    ``lc``: labelled light curves (``label`` column of TNS types). ``impostors`` (generated light
    curves) add a protection case. Every case uses the same seed.
    """
    if "label" not in lc.objects.columns:
        raise InputError("the stress test needs labelled light curves (a 'label' column of types)")
    todo = [(c, lc) for c in cases]
    if impostors is not None:
        todo.append((IMPOSTOR_CASE, impostors))
    parts = []
    for case, source in todo:
        alerts = case_alerts(source, case, max_detections=max_detections, random_state=random_state)
        labels = (
            alerts.objects["label"].to_numpy(object)
            if "label" in alerts.objects.columns
            else np.full(alerts.n_objects, "", object)
        )
        for sc in scorers:
            s = np.nan_to_num(np.asarray(sc.score(alerts), np.float64), nan=0.0)
            parts.append(
                pd.DataFrame(
                    {
                        "case": case.name,
                        "scorer": sc.name,
                        "object_id": alerts.objects["source_object"].to_numpy(object),
                        "ndethist": alerts.objects["ndethist"].to_numpy(np.int64),
                        "label": labels,
                        "score": s,
                        "own": np.nan if sc.threshold is None else float(sc.threshold),
                        "protection": case.protection,
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def summarise(table: pd.DataFrame, max_detections: Sequence[int] = (10, 20)) -> pd.DataFrame:
    """Efficiency and purity per case, scorer, N and threshold (``own`` and ``0.5``) from
    :func:`case_table` rows (several folds may be concatenated, each with its own threshold);
    protection cases give the fraction of objects flagged within the largest N. The replay
    protocol's labels: 'SN Ia' positive, every other type negative."""
    rows = []
    top = max(max_detections)
    for (case, scorer), grp in table.groupby(["case", "scorer"], sort=False):
        thresholds = {"0.5": np.full(len(grp), 0.5)}
        if grp["own"].notna().all():
            thresholds["own"] = grp["own"].to_numpy(np.float64)
        for tname, t in thresholds.items():
            margin = (
                grp["score"].to_numpy(np.float64) - t
            )  # flagged: score > threshold, i.e. margin > 0
            base = {
                "case": case,
                "scorer": scorer,
                "threshold": tname,
                "threshold_value": float(np.median(t)),
            }
            if bool(grp["protection"].iloc[0]):
                early = grp["ndethist"].to_numpy() <= top
                flagged = (
                    pd.Series(margin[early] > 0).groupby(grp["object_id"].to_numpy()[early]).any()
                )
                rows.append(
                    {
                        **base,
                        "max_detections": top,
                        "n_objects": len(flagged),
                        "flagged_fraction": float(flagged.mean()) if len(flagged) else float("nan"),
                    }
                )
                continue
            frame = pd.DataFrame(
                {
                    "object_id": grp["object_id"].to_numpy(),
                    "ndethist": grp["ndethist"].to_numpy(),
                    "label": grp["label"].to_numpy(object),
                    "score": margin,
                }
            )
            rep = evaluate_early(
                frame, max_detections=max_detections, threshold=0.0, type_map=PROTOCOL_TYPES
            )
            for _, r in rep.summary.iterrows():
                rows.append(
                    {
                        **base,
                        "max_detections": int(r["max_detections"]),
                        "n_objects": int(r["n_pos"] + r["n_neg"]),
                        "efficiency": float(r["efficiency"]),
                        "purity": float(r["purity"]) if r["tp"] + r["fp"] else float("nan"),
                    }
                )
    return pd.DataFrame(rows)


def stress_test(
    lc: LightCurves,
    scorers: Sequence[StressScorer],
    *,
    cases: Sequence[Case] = CASES,
    max_detections: Sequence[int] = (10, 20),
    random_state: int = 0,
    impostors: LightCurves | None = None,
) -> pd.DataFrame:
    """:func:`summarise` of :func:`case_table`: the stress report of ``scorers`` on labelled
    light curves ``lc``."""
    rows = case_table(
        lc,
        scorers,
        cases=cases,
        max_detections=max(max_detections),
        random_state=random_state,
        impostors=impostors,
    )
    return summarise(rows, max_detections)


def within_goal(
    table: pd.DataFrame, scorer: str, *, tolerance: float = 0.10, max_detections: int = 20
) -> pd.DataFrame:
    """Per case, the relative change of efficiency and purity from "as given" for ``scorer``
    (both thresholds)."""
    t = table[
        (table["scorer"] == scorer)
        & (table["max_detections"] == max_detections)
        & table["efficiency"].notna()
    ]
    out = []
    for thr, grp in t.groupby("threshold"):
        ref = grp[grp["case"] == "as given"]
        if ref.empty:
            continue
        e0, p0 = float(ref["efficiency"].iloc[0]), float(ref["purity"].iloc[0])
        for _, r in grp.iterrows():
            de = (r["efficiency"] - e0) / e0 if e0 else float("nan")
            dp = (r["purity"] - p0) / p0 if p0 else float("nan")
            out.append(
                {
                    "case": r["case"],
                    "threshold": thr,
                    "efficiency_change": de,
                    "purity_change": dp,
                    "within": bool(abs(de) <= tolerance and abs(dp) <= tolerance),
                }
            )
    return pd.DataFrame(out)


def to_markdown(table: pd.DataFrame, max_detections: int = 20) -> str:
    """The stress table as Markdown: one row per case, efficiency / purity per scorer and
    threshold."""
    t = table[table["max_detections"] == max_detections]
    combos = list(dict.fromkeys(zip(t["scorer"], t["threshold"], strict=True)))
    head = ["case", *[f"{s} @ {'own threshold' if th == 'own' else th}" for s, th in combos]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in dict.fromkeys(t["case"]):
        cells = [case]
        for s, th in combos:
            r = t[(t["case"] == case) & (t["scorer"] == s) & (t["threshold"] == th)]
            if r.empty:
                cells.append("")
            elif "flagged_fraction" in r.columns and pd.notna(r["flagged_fraction"].iloc[0]):
                cells.append(f"{r['flagged_fraction'].iloc[0]:.1%} flagged")
            else:
                e, p = r["efficiency"].iloc[0], r["purity"].iloc[0]
                cells.append(f"{e:.3f} / {'-' if pd.isna(p) else f'{p:.3f}'}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(table: pd.DataFrame, path, *, max_detections: int = 20, title: str | None = None) -> None:
    """PNG: efficiency and purity per case (bars), one panel per scorer and threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table[
        (table["max_detections"] == max_detections)
        & table.get("efficiency", pd.Series(dtype=float)).notna()
    ]
    combos = list(dict.fromkeys(zip(t["scorer"], t["threshold"], strict=True)))
    cases = list(dict.fromkeys(t["case"]))
    fig, axes = plt.subplots(
        1,
        len(combos),
        figsize=(4.2 * len(combos), 0.42 * len(cases) + 1.6),
        sharey=True,
        squeeze=False,
    )
    y = np.arange(len(cases))
    for ax, (s, th) in zip(axes[0], combos, strict=True):
        g = t[(t["scorer"] == s) & (t["threshold"] == th)].set_index("case").reindex(cases)
        ax.barh(y - 0.2, g["efficiency"], height=0.38, label="efficiency", color="#3572b0")
        ax.barh(
            y + 0.2, g["purity"], height=0.38, label="purity", color="#e0893a"
        )  # undefined: no bar
        for k in np.flatnonzero(g["purity"].isna().to_numpy()):
            ax.text(0.01, y[k] + 0.2, "nothing flagged", va="center", fontsize=6, color="#e0893a")
        ax.set_xlim(0, 1)
        ax.axvline(0.8, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{s}\nthreshold {'(own)' if th == 'own' else th}", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(y)
    axes[0][0].set_yticklabels(cases, fontsize=8)
    axes[0][0].invert_yaxis()
    axes[0][-1].legend(loc="lower right", fontsize=8)
    fig.suptitle(
        title or f"early flagging within {max_detections} detections, per perturbation", fontsize=10
    )
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
