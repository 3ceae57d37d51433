"""Readers: objects (or alerts) per second of CPU, ours vs a plain per-object/per-line reference,
same run.

    python bench/bench_io.py [--repeats 3] [--only snpcc,fink,pool,replay,elasticc]

For each data set it prints our median CPU time (``time.process_time``: the work of this process,
robust on a shared machine), the reference's, and the ratio. The references are what a
straightforward script does:

* snpcc: stream the tar.xz, split every DAT file into lines in Python, one small DataFrame per
  object, concat;
* fink / replay: one DataFrame per Fink row (explode the lists), concat, convert magnitudes;
* pool: ``to_pylist()`` the alert table and loop over every point of every alert in Python;
* elasticc: ``to_pylist()`` every alert and loop over its diaSources in Python (detections only, 3
  columns: it does much less than ours, which also reads the forced photometry, the truth and the
  host columns);
* plasticc: ``read_csv`` then one sorted group per object.

Both sides end with long photometry in FLUXCAL; ours also builds the full canonical table (sorting,
duplicate epochs, alerts, objects), so the comparison is conservative.
"""

from __future__ import annotations

import argparse
import statistics
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from earlyia.data import data_dir, reference_dir
from earlyia.io import read
from earlyia.io.photometry import mag_to_fluxcal


def ref_snpcc(path: Path) -> int:
    frames = []
    with tarfile.open(path, "r|*") as tar:
        for m in tar:
            if not (m.isfile() and m.name.endswith(".DAT")):
                continue
            text = tar.extractfile(m).read().decode("latin-1")
            snid, cols, rows = None, None, []
            for line in text.splitlines():
                parts = line.split()
                if not parts:
                    continue
                if parts[0] == "SNID:":
                    snid = parts[1]
                elif parts[0] == "VARLIST:":
                    cols = parts[1:]
                elif parts[0] == "OBS:":
                    rows.append(parts[1:])
            df = pd.DataFrame(rows, columns=cols)
            df["snid"] = snid
            frames.append(
                df[["snid", "MJD", "FLT", "FLUXCAL", "FLUXCALERR"]].astype(
                    {"MJD": float, "FLUXCAL": float, "FLUXCALERR": float}
                )
            )
    return pd.concat(frames)["snid"].nunique()


def ref_fink(paths: list[Path]) -> int:
    frames = []
    for p in paths:
        df = pd.read_parquet(p)
        for _, row in df.iterrows():
            f = pd.DataFrame(
                {
                    "jd": row["cjd"],
                    "mag": row["cmagpsf"],
                    "sig": row["csigmapsf"],
                    "fid": row["cfid"],
                }
            )
            f["objectId"] = row["objectId"]
            flux, err = mag_to_fluxcal(f["mag"].to_numpy(), f["sig"].to_numpy())
            f["flux"], f["err"] = flux, err
            frames.append(f)
    out = pd.concat(frames).drop_duplicates(["objectId", "jd", "fid"])
    return out["objectId"].nunique()


def ref_pool(path: Path) -> int:
    rows = pq.read_table(path).to_pylist()
    pts = []
    for r in rows:
        cand = {k[5:]: v for k, v in r.items() if k.startswith("cand_")}
        for p in [*(r["prv_candidates"] or []), cand]:
            if p["magpsf"] is None:
                pts.append(
                    (
                        r["objectId"],
                        p["jd"],
                        p["fid"],
                        np.nan,
                        10 ** (-0.4 * p["diffmaglim"] + 11) / 5 if p["diffmaglim"] else np.nan,
                    )
                )
            else:
                f, e = mag_to_fluxcal(p["magpsf"], p["sigmapsf"])
                pts.append(
                    (
                        r["objectId"],
                        p["jd"],
                        p["fid"],
                        float(f) * (-1 if p["isdiffpos"] in ("f", "0") else 1),
                        float(e),
                    )
                )
    return len({p[0] for p in pts})


def ref_elasticc(files: list[Path]) -> int:
    pts = []
    for f in files:
        for r in pq.read_table(
            f, partitioning=None, columns=["alertId", "diaSource", "prvDiaSources"]
        ).to_pylist():
            for d in [*(r["prvDiaSources"] or []), r["diaSource"]]:
                pts.append(
                    (
                        d["diaObjectId"],
                        d["midPointTai"],
                        d["filterName"],
                        d["psFlux"] * 10 ** (-0.4 * 3.9),
                    )
                )
    return len({p[0] for p in pts})


def ref_plasticc(path: Path, meta: Path) -> int:
    df = pd.read_csv(path)
    labels = pd.read_csv(meta, skipinitialspace=True).set_index("object_id")["target"]
    curves = {}
    for oid, grp in df.groupby("object_id"):
        grp = grp.sort_values("mjd")
        curves[oid] = (
            grp["mjd"].to_numpy(),
            grp["passband"].to_numpy(),
            grp["flux"].to_numpy(),
            grp["flux_err"].to_numpy(),
            labels.get(oid),
        )
    return len(curves)


def cpu(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.process_time()
        out = fn()
        times.append(time.process_time() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default="snpcc,fink,pool,replay,elasticc,plasticc")
    args = ap.parse_args()
    d = data_dir()
    labelled = d / "ztf_fink_tns_labelled"
    months = sorted(labelled.glob("fink_cross_tns_*.parquet"))
    el_files = sorted((d / "elasticc_fink_ia_ii").rglob("*.parquet"))
    cases = {
        "snpcc": (
            lambda: read(d / "snpcc_simgen_public_des/SIMGEN_PUBLIC_DES.tar.xz").n_objects,
            lambda: ref_snpcc(d / "snpcc_simgen_public_des/SIMGEN_PUBLIC_DES.tar.xz"),
        ),
        "fink": (lambda: read(months).n_objects, lambda: ref_fink(months)),
        "replay": (
            lambda: read(reference_dir() / "ztf_replay_alerts_with_anchor.parquet").n_objects,
            lambda: ref_fink([reference_dir() / "ztf_replay_alerts_with_anchor.parquet"]),
        ),
        "pool": (
            lambda: read(d / "ztf_fink_alerts_pool/ztf_alerts_pool.parquet").n_objects,
            lambda: ref_pool(d / "ztf_fink_alerts_pool/ztf_alerts_pool.parquet"),
        ),
        "elasticc": (
            lambda: read(d / "elasticc_fink_ia_ii").n_objects,
            lambda: ref_elasticc(el_files),
        ),
    }
    pl = d / "plasticc_train_snmachine"
    cases["plasticc"] = (
        lambda: read(pl / "plasticc_train_lightcurves.csv.xz").n_objects,
        lambda: ref_plasticc(
            pl / "plasticc_train_lightcurves.csv.xz", pl / "plasticc_train_metadata.csv.gz"
        ),
    )
    print(
        f"{'data set':10s} {'objects':>8s} {'ours s':>8s} {'ref s':>8s} {'ratio':>7s}  "
        f"(median CPU seconds of {args.repeats})"
    )
    for name in args.only.split(","):
        ours_fn, ref_fn = cases[name]
        t_ours, n_ours = cpu(ours_fn, args.repeats)
        t_ref, n_ref = cpu(ref_fn, args.repeats)
        flag = "" if n_ours == n_ref else f"  (object counts differ: {n_ours} vs {n_ref})"
        print(f"{name:10s} {n_ours:8d} {t_ours:8.2f} {t_ref:8.2f} {t_ref / t_ours:6.1f}x{flag}")


if __name__ == "__main__":
    main()
