"""The shared data sets, each one call away, as canonical :class:`LightCurves` (counts in
``docs/io.md``).

Every function takes ``data_dir`` (default :func:`earlyia.data.data_dir`, i.e. ``$EARLYIA_DATA``)
and raises :class:`~earlyia.errors.DataNotFoundError` naming the missing file. Nothing is cached on
disk: convert once with ``earlyia convert`` when a data set is read often.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from earlyia.data import data_dir as _default_data_dir
from earlyia.data import reference_dir
from earlyia.errors import DataNotFoundError, Problem
from earlyia.io.fink import read_fink_csv, read_fink_parquet
from earlyia.io.lsst import read_elasticc, read_plasticc
from earlyia.io.photometry import mag_to_fluxcal
from earlyia.io.snana import read_snana
from earlyia.io.table import LightCurves
from earlyia.io.ztf import read_ztf_alert_parquet
from earlyia.labels import TypeMap, read_labels

ZTF_TNS_DIR = "ztf_fink_tns_labelled"
SNPCC_DIR = "snpcc_simgen_public_des"
PLASTICC_DIR = "plasticc_train_snmachine"
ELASTICC_DIR = "elasticc_fink_ia_ii"
POOL_PATH = "ztf_fink_alerts_pool/ztf_alerts_pool.parquet"
REPLAY_PATH = "ztf_replay_alerts_with_anchor.parquet"


def _base(data_dir: str | Path | None) -> Path:
    return Path(data_dir) if data_dir is not None else _default_data_dir()


def _need(path: Path) -> Path:
    if not path.exists():
        raise DataNotFoundError(
            f"{path}: shared data file not found; set EARLYIA_DATA (or pass data_dir=) to "
            "the folder that holds it"
        )
    return path


def ztf_tns_labelled(data_dir: str | Path | None = None) -> LightCurves:
    """Real ZTF light curves with TNS types: the 6 monthly Fink files + ``all_nonIa.csv.gz`` (1 502
    objects).

    Alerts: one per monthly row (1 829); ``label`` = ``objects.csv`` ``tns_type`` (the one string
    per object the data set fixes where files disagree).
    """
    d = _need(_base(data_dir) / ZTF_TNS_DIR)
    months = sorted(d.glob("fink_cross_tns_*.parquet"))
    if not months:
        raise DataNotFoundError(f"{d}: no fink_cross_tns_*.parquet files")
    tables = [read_fink_parquet(p) for p in months] + [read_fink_csv(_need(d / "all_nonIa.csv.gz"))]
    lc = LightCurves.concat(tables, source=str(d))
    labels = pd.read_csv(_need(d / "objects.csv")).set_index("objectId")["tns_type"]
    ids = lc.objects["object_id"]
    lc.objects["label"] = (
        ids.map(labels).where(ids.isin(labels.index), lc.objects.get("label")).to_numpy(object)
    )
    return lc


def fink_reference_inputs(
    data_dir: str | Path | None = None,
) -> tuple[list[str], tuple[np.ndarray, ...]]:
    """The light curves Fink's reference features were computed on, exactly as Fink saw them.

    One segment per monthly-file row (key ``"<file>|<row>"``) and per ``all_nonIa.csv.gz`` object
    (key ``"all_nonIa.csv.gz|<objectId>"``, sorted by ``cjd``, repeated rows kept): what
    ``fink_sigmoid_reference_ztf.parquet`` describes, unmerged (no :class:`LightCurves`, which would
    deduplicate epochs). Returns ``(keys, (mjd, band, flux, flux_err, detected, starts, ends))``
    with bands coded g 0, r 1, other 2.
    """
    d = _need(_base(data_dir) / ZTF_TNS_DIR)
    segs = []
    for p in sorted(d.glob("fink_cross_tns_*.parquet")):
        for i, r in enumerate(pd.read_parquet(p).itertuples()):
            segs.append((f"{p.name}|{i}", r.cjd, r.cfid, r.cmagpsf, r.csigmapsf))
    for oid, g in pd.read_csv(_need(d / "all_nonIa.csv.gz")).groupby("objectId", sort=False):
        g = g.sort_values("cjd", kind="stable")
        segs.append((f"all_nonIa.csv.gz|{oid}", g.cjd, g.cfid, g.cmagpsf, g.csigmapsf))
    jd, fid, mag, sig = (
        np.concatenate([np.asarray(s[k], float) for s in segs]) for k in (1, 2, 3, 4)
    )
    lens = np.array([len(s[1]) for s in segs])
    ends = np.cumsum(lens)
    flux, err = mag_to_fluxcal(mag, sig)
    band = np.select([fid == 1, fid == 2], [0, 1], 2).astype(np.int8)
    return [s[0] for s in segs], (
        jd - 2400000.5,
        band,
        flux,
        err,
        np.isfinite(flux),
        ends - lens,
        ends,
    )


def snpcc(data_dir: str | Path | None = None, *, from_archive: bool = False) -> LightCurves:
    """SNPCC (SIMGEN_PUBLIC_DES): 21 319 DES griz light curves with simulated truth (5 088 SN Ia).

    ``from_archive=True`` parses the 21 319 DAT files in the tar.xz (~10-30 s); the default reads
    the Parquet extract of the same files (``snpcc_photometry/metadata.parquet``, ~2 s). Both give
    the same table (tested).
    """
    d = _base(data_dir) / SNPCC_DIR
    if from_archive:
        return read_snana(_need(d / "SIMGEN_PUBLIC_DES.tar.xz"))
    phot = pd.read_parquet(
        _need(d / "snpcc_photometry.parquet"),
        columns=["snid", "mjd", "flt", "fluxcal", "fluxcalerr"],
    )
    meta = pd.read_parquet(_need(d / "snpcc_metadata.parquet"))
    err = phot["fluxcalerr"].to_numpy(np.float64)
    null = ~(err > 0)
    problems = [
        Problem(
            str(d / "snpcc_photometry.parquet"),
            str(oid),
            f"{n} epoch(s) with FLUXCALERR <= 0 (SNANA null value) dropped; object kept",
        )
        for oid, n in phot.loc[null, "snid"].value_counts(sort=False).items()
    ]
    phot = phot[~null]
    frame = pd.DataFrame(
        {
            "object_id": phot["snid"].astype(str).to_numpy(object),
            "mjd": phot["mjd"].to_numpy(np.float64),
            "band": phot["flt"].astype(str).to_numpy(object),
            "flux": phot["fluxcal"].to_numpy(np.float64),
            "flux_err": phot["fluxcalerr"].to_numpy(np.float64),
            "detected": True,
        }
    )
    objects = pd.DataFrame(
        {
            "object_id": meta["snid"].astype(str),
            "sntype": meta["sntype"].astype(np.float64),
            "ra": meta["ra"],
            "dec": meta["decl"],
            "mwebv": meta["mwebv"],
            "redshift": meta["redshift_final"],
            "hostgal_photoz": meta["hostgal_photoz"],
            "sim_model": meta["sim_model"].astype(str).str.split().str[0],
            "sim_non1a": meta["sim_non1a"].astype(np.float64),
            "sim_comment": meta["sim_comment"].astype(str).str.strip(),
            "sim_redshift": meta["sim_redshift"],
            "sim_peakmjd": meta["sim_peakmjd"],
            "sim_type": meta["sim_type_name"].astype(str),
            "label": "SN " + meta["sim_type_name"].astype(str),
            "is_ia": meta["is_ia"].astype(bool),
            "sample": meta["sample"].astype(str),
        }
    )
    lc = LightCurves.from_frames(frame, objects, None, survey="DES", source=str(d))
    lc.problems = problems + lc.problems
    return lc


def plasticc(data_dir: str | Path | None = None) -> LightCurves:
    """PLAsTiCC training set: 7 848 LSST objects of 14 classes (2 313 SN Ia), labels from the
    metadata file."""
    d = _base(data_dir) / PLASTICC_DIR
    return read_plasticc(
        _need(d / "plasticc_train_lightcurves.csv.xz"),
        metadata=_need(d / "plasticc_train_metadata.csv.gz"),
    )


def elasticc(data_dir: str | Path | None = None, *, forced: bool = True) -> LightCurves:
    """ELAsTiCC SN Ia / SN II alerts processed by Fink: 10 567 alerts, 3 503 Ia + 3 173 II
    objects (LSST)."""
    return read_elasticc(_need(_base(data_dir) / ELASTICC_DIR), forced=forced)


def alerts_pool(data_dir: str | Path | None = None) -> LightCurves:
    """The pool of 1 577 real ZTF alerts (1 362 objects), unlabelled; 399 carry Fink's anchor
    score."""
    return read_ztf_alert_parquet(_need(_base(data_dir) / POOL_PATH))


def replay(reference: str | Path | None = None) -> LightCurves:
    """The reference replay of the labelled ZTF set: 19 778 alerts (detections 3..20 of 1 444
    objects).

    Alert columns include ``ndethist`` and Fink's ``anchor_score``; ``label`` comes from
    ``objects.csv`` of the labelled set when it is found next to the reference folder.
    """
    base = Path(reference) if reference is not None else reference_dir()
    lc = read_fink_parquet(_need(base / REPLAY_PATH))
    labels_path = base.parent / "data" / ZTF_TNS_DIR / "objects.csv"
    if not labels_path.exists():
        labels_path = _default_data_dir() / ZTF_TNS_DIR / "objects.csv"
    if labels_path.exists():
        labels = read_labels(labels_path)
        lc.objects["label"] = lc.objects["object_id"].map(labels).to_numpy(object)
    return lc


def labelled(
    lc: LightCurves, labels: str | Path | pd.Series, type_map: TypeMap | None = None
) -> tuple[LightCurves, np.ndarray]:
    """The objects of ``lc`` that carry a usable label, and whether each one is of the positive
    class.

    ``labels``: a label CSV (:func:`earlyia.labels.read_labels`) or a Series of types indexed by
    object id. The types go into the object column ``label``; objects without a type, or of a type
    ``type_map`` (default :class:`~earlyia.labels.TypeMap`: SN Ia positive) leaves out, are dropped.
    """
    types = labels if isinstance(labels, pd.Series) else read_labels(labels)
    lc.objects["label"] = lc.objects["object_id"].astype(str).map(types)
    code = (type_map or TypeMap()).encode(lc.objects["label"].to_numpy(object))
    keep = np.flatnonzero(code >= 0)
    return lc.take(keep), code[keep] == 1
