"""Figure of the built-in simulator: one early light curve per class
(docs/figures/sim_examples.png).

Run from the repository root: ``python scripts/plot_sim_examples.py [--out PATH] [--seed 1]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from earlyia.sim import CLASSES, simulate

COLOURS = {"g": "tab:green", "r": "tab:red"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parents[1] / "docs" / "figures" / "sim_examples.png"),
    )
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    lc = simulate(400, random_state=args.seed)
    nd = lc.n_detections()
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.5))
    for ax, cls in zip(axes.ravel(), CLASSES, strict=False):
        cand = np.flatnonzero((lc.objects["label"] == cls).to_numpy() & (nd >= 12))
        if not len(cand):
            cand = np.flatnonzero((lc.objects["label"] == cls).to_numpy())
        i = int(cand[0])
        s, e = lc.offsets[i], lc.offsets[i + 1]
        t0 = lc.mjd[s:e][lc.detected[s:e]].min()
        for code, b in enumerate(lc.bands):
            sel = np.arange(s, e)[lc.band[s:e] == code]
            det = sel[lc.detected[sel]]
            lim = sel[~lc.detected[sel]]
            ax.errorbar(
                lc.mjd[det] - t0,
                lc.flux[det],
                lc.flux_err[det],
                fmt="o",
                ms=4,
                color=COLOURS[b],
                label=f"{b} detection",
            )
            ax.plot(
                lc.mjd[lim] - t0,
                5 * lc.flux_err[lim],
                "v",
                ms=5,
                color=COLOURS[b],
                alpha=0.4,
                label=f"{b} 5σ limit",
            )
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_title(f"{cls} ({lc.objects['object_id'][i]}, {nd[i]} detections)", fontsize=9)
        ax.set_xlabel("days since first detection")
        ax.set_ylabel("FLUXCAL")
    axes[0][0].legend(fontsize=7)
    axes[-1][-1].axis("off")
    fig.suptitle(
        f"earlyia.sim.ztf.simulate(400, random_state={args.seed}): one early light curve per class"
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
