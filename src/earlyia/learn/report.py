"""Markdown summary of an active-learning experiment: final-loop metrics, mean +- std per strategy.

Why a table of the *final loop*: it is the number Leoni et al. 2022 report (and the one Fink's
production model comes from), so results can be put side by side with theirs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from earlyia.io.table import atomic_write

#: Columns of the summary table, in order, with their printed names.
SUMMARY_METRICS = {
    "accuracy": "accuracy",
    "efficiency": "efficiency",
    "purity": "purity",
    "fom": "FoM",
    "f1": "F1",
    "roc_auc": "AUC",
}


def summarise(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per strategy: mean and std over realisations of each final-loop metric (+ labels
    used)."""
    last = metrics["loop"] == metrics.groupby(["strategy", "realisation"])["loop"].transform("max")
    final = metrics[last]
    rows = []
    for strategy, g in final.groupby("strategy", sort=False):
        row = {
            "strategy": strategy,
            "n_realisations": int(g["realisation"].nunique()),
            "n_labels": float(g["n_labels"].mean()),
        }
        for m in SUMMARY_METRICS:
            v = g[m].to_numpy(np.float64)
            v = v[np.isfinite(v)]
            row[f"{m}_mean"] = float(v.mean()) if len(v) else float("nan")
            row[f"{m}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        rows.append(row)
    return pd.DataFrame(rows)


def paired_differences(metrics: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """Final-loop difference (strategy - baseline) per realisation, summarised: mean, std, share of
    realisations won.

    Realisation ``r`` of every strategy starts from the same labels and test set, so the
    per-realisation difference isolates the strategy (its spread is much smaller than the spread of
    each strategy). ``baseline`` defaults to ``"random"`` when present, else the last strategy.
    Empty with one strategy.
    """
    strategies = list(dict.fromkeys(metrics["strategy"]))
    if len(strategies) < 2:
        return pd.DataFrame()
    base = baseline or ("random" if "random" in strategies else strategies[-1])
    last = metrics["loop"] == metrics.groupby(["strategy", "realisation"])["loop"].transform("max")
    final = metrics[last].set_index(["strategy", "realisation"])
    rows = []
    for s in strategies:
        if s == base:
            continue
        common = sorted(set(final.loc[s].index) & set(final.loc[base].index))
        if not common:
            continue
        row = {"strategy": s, "baseline": base, "n_realisations": len(common)}
        for m in ("fom", "efficiency", "purity", "roc_auc"):
            d = final.loc[s].loc[common, m].to_numpy(float) - final.loc[base].loc[
                common, m
            ].to_numpy(float)
            d = d[np.isfinite(d)]
            row[f"{m}_diff_mean"] = float(d.mean()) if len(d) else float("nan")
            row[f"{m}_diff_std"] = float(d.std(ddof=1)) if len(d) > 1 else 0.0
            row[f"{m}_wins"] = float((d > 0).mean()) if len(d) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def format_paired(paired: pd.DataFrame, digits: int = 3) -> str:
    """The paired differences as a Markdown table."""
    names = {"fom": "FoM", "efficiency": "efficiency", "purity": "purity", "roc_auc": "AUC"}
    lines = [
        "| strategy - baseline | realisations | "
        + " | ".join(f"Δ {v} (wins)" for v in names.values())
        + " |",
        "|" + "---|" * (2 + len(names)),
    ]
    for _, r in paired.iterrows():
        cells = [f"{r['strategy']} - {r['baseline']}", str(int(r["n_realisations"]))]
        for m in names:
            mean, std, wins = r[f"{m}_diff_mean"], r[f"{m}_diff_std"], r[f"{m}_wins"]
            cells.append(
                "n/a"
                if not np.isfinite(mean)
                else f"{mean:+.{digits}f} ± {std:.{digits}f} ({wins:.0%})"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_table(summary: pd.DataFrame, digits: int = 3) -> str:
    """The summary as a Markdown table (``mean ± std``)."""
    head = ["strategy", "realisations", "labels", *SUMMARY_METRICS.values()]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in summary.iterrows():
        cells = [str(r["strategy"]), str(int(r["n_realisations"])), f"{r['n_labels']:.0f}"]
        for m in SUMMARY_METRICS:
            mean, std = r[f"{m}_mean"], r[f"{m}_std"]
            cells.append(
                "n/a" if not np.isfinite(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_summary(
    path: str | Path,
    summary: pd.DataFrame,
    manifest: dict,
    early: pd.DataFrame | None = None,
    paired: pd.DataFrame | None = None,
) -> str:
    """Write ``summary.md`` (atomic) and return its text."""
    cfg = manifest["config"]
    data = manifest["data"]
    lines = [
        "# Active-learning experiment",
        "",
        f"- protocol: {manifest['protocol_description']}",
        f"- data: {data['n_rows']} rows ({data['n_positive']} positive), {data['n_objects']} "
        "objects; "
        f"dropped: {', '.join(f'{k} {v}' for k, v in data['dropped'].items()) or 'none'}",
        f"- positive class: {sorted(cfg['type_map']['positive'])}"
        + (" + sub-types" if cfg["type_map"]["include_subtypes"] else ""),
        f"- classifier: FastForest {cfg['classifier']}",
        f"- seed {cfg['seed']} (realisation r of every strategy uses the same seed: paired "
        "comparison)",
        "",
        "## Final-loop metrics (mean ± std over realisations, threshold 0.5)",
        "",
        format_table(summary),
        "",
    ]
    if paired is not None and len(paired):
        lines += [
            "## Paired differences at the final loop (same initial labels and test set per "
            "realisation)",
            "",
            "mean ± std over realisations of (strategy - baseline); in brackets the share of "
            "realisations where the "
            "strategy is better",
            "",
            format_paired(paired),
            "",
        ]
    best = manifest.get("best")
    if best:
        lines += [
            f"Best realisation ({best['rule']}): {best['strategy']} r{best['realisation']:03d}, "
            f"FoM {best['final']['fom']:.3f}"
            + (f", model `{best['model']}`" if best.get("model") else ""),
            "",
        ]
    if early is not None and len(early):
        lines += [
            "## Final-loop metrics by number of detections (median over realisations)",
            "",
            _early_table(early),
            "",
        ]
    figs = manifest.get("figures") or []
    if figs:
        lines += ["## Figures", "", *[f"![{f}]({f})" for f in figs], ""]
    text = "\n".join(lines)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return text


def _early_table(early: pd.DataFrame) -> str:
    last = early["loop"] == early.groupby(["strategy", "realisation"])["loop"].transform("max")
    e = early[last]
    med = (
        e.groupby(["strategy", "n_detections"], sort=True)[["efficiency", "purity", "fom"]]
        .median()
        .reset_index()
    )
    lines = ["| strategy | detections | efficiency | purity | FoM |", "|---|---|---|---|---|"]
    for _, r in med.iterrows():
        lines.append(
            f"| {r['strategy']} | {int(r['n_detections'])} | {r['efficiency']:.3f} | "
            f"{r['purity']:.3f} | {r['fom']:.3f} |"
        )
    return "\n".join(lines)
