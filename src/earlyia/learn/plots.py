"""Figures of an active-learning experiment (matplotlib, Agg backend: no display needed).

* learning curves: one panel per metric, x = number of labels, per strategy the median over
  realisations and the 16-84 % band (the spread a reader should expect from one run);
* early-epoch metrics: final-loop efficiency, purity, FoM and AUC against the number of
  detections the alert had when it was scored (how early the classifier becomes useful).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from earlyia.io.table import atomic_write

LABELS = {
    "accuracy": "accuracy",
    "efficiency": "efficiency",
    "purity": "purity",
    "fom": "figure of merit (FoM)",
    "f1": "F1",
    "roc_auc": "ROC AUC",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _bands(df: pd.DataFrame, x: str, metric: str) -> pd.DataFrame:
    g = df.groupby(x)[metric]
    return pd.DataFrame(
        {"median": g.median(), "lo": g.quantile(0.16), "hi": g.quantile(0.84)}
    ).reset_index()


def _save(fig, path: Path) -> None:
    plt = _pyplot()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight"))
    plt.close(fig)


def plot_learning_curves(
    metrics: pd.DataFrame, path: str | Path, metrics_to_plot=tuple(LABELS), title: str = ""
) -> Path:
    """Median and 16-84 % band per strategy of each metric against the number of labels."""
    plt = _pyplot()
    names = [m for m in metrics_to_plot if m in metrics.columns]
    ncol = 3
    nrow = int(np.ceil(len(names) / ncol))
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False, sharex=True
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    n_real = metrics.groupby("strategy")["realisation"].nunique()
    for k, m in enumerate(names):
        ax = axes[k // ncol][k % ncol]
        for j, (strategy, g) in enumerate(metrics.groupby("strategy", sort=False)):
            b = _bands(g, "n_labels", m)
            c = colours[j % len(colours)]
            ax.plot(
                b["n_labels"],
                b["median"],
                color=c,
                lw=1.6,
                label=f"{strategy} ({n_real[strategy]})",
            )
            ax.fill_between(b["n_labels"], b["lo"], b["hi"], color=c, alpha=0.2, lw=0)
        ax.set_ylabel(LABELS.get(m, m))
        ax.grid(alpha=0.3)
        if k // ncol == nrow - 1:
            ax.set_xlabel("labelled rows")
    for k in range(len(names), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    axes[0][0].legend(fontsize=8, title="strategy (realisations)", title_fontsize=8)
    fig.suptitle(title or "learning curves: median and 16-84 % band")
    fig.tight_layout()
    path = Path(path)
    _save(fig, path)
    return path


def plot_early_metrics(
    early: pd.DataFrame,
    path: str | Path,
    metrics_to_plot=("efficiency", "purity", "fom", "roc_auc"),
    title: str = "",
) -> Path:
    """Final-loop metrics against the number of detections at scoring time (median and 16-84 %
    band)."""
    plt = _pyplot()
    last = early["loop"] == early.groupby(["strategy", "realisation"])["loop"].transform("max")
    e = early[last]
    names = [m for m in metrics_to_plot if m in e.columns]
    fig, axes = plt.subplots(1, len(names), figsize=(4.0 * len(names), 3.3), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, m in enumerate(names):
        ax = axes[0][k]
        for j, (strategy, g) in enumerate(e.groupby("strategy", sort=False)):
            b = _bands(g, "n_detections", m)
            c = colours[j % len(colours)]
            ax.plot(b["n_detections"], b["median"], "o-", ms=3, color=c, lw=1.4, label=strategy)
            ax.fill_between(b["n_detections"], b["lo"], b["hi"], color=c, alpha=0.2, lw=0)
        ax.set_xlabel("detections when scored")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.set_ylabel(LABELS.get(m, m))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title or "early-epoch metrics")
    fig.tight_layout()
    path = Path(path)
    _save(fig, path)
    return path
