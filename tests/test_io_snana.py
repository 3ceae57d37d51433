"""SNANA DAT reader: fixtures, damaged inputs, and (slow) the full SNPCC archive against the
parquet extract."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pandas as pd
import pytest

from conftest import shared
from earlyia.errors import FormatError
from earlyia.io import datasets, detect_format, read
from earlyia.io.snana import parse_header, sim_type_from_comment


def _check_against_extract(lc, snids, phot):
    """Our photometry of ``snids`` equals the rows of snpcc_photometry.parquet (valid errors
    only)."""
    for snid in snids:
        ref = phot[(phot["snid"] == snid) & (phot["fluxcalerr"] > 0)].sort_values(["mjd", "flt"])
        i = lc.object_index([str(snid)])[0]
        s, e = lc.offsets[i], lc.offsets[i + 1]
        assert e - s == len(ref)
        assert np.allclose(lc.mjd[s:e], ref["mjd"].to_numpy())
        assert list(np.asarray(lc.bands)[lc.band[s:e]]) == list(ref["flt"].astype(str))
        assert np.allclose(lc.flux[s:e], ref["fluxcal"].to_numpy(np.float64), rtol=1e-6)
        assert np.allclose(lc.flux_err[s:e], ref["fluxcalerr"].to_numpy(np.float64), rtol=1e-6)


def test_fixture_directory_and_file():
    d = shared("fixtures/snpcc_dat")
    assert detect_format(d) == "snana_dat"
    assert detect_format(d / "DES_SN008623.DAT") == "snana_dat"
    lc = read(d)
    assert lc.n_objects == 5 and lc.survey == "DES" and lc.bands == ("g", "r", "i", "z")
    assert lc.detected.all()
    assert set(lc.objects["label"]) <= {
        "SN Ia",
        "SN II",
        "SN Ib",
        "SN Ic",
        "SN IIn",
        "SN IIP",
        "SN IIL",
        "SN Ibc",
    }
    phot = pd.read_parquet(
        shared("snpcc_simgen_public_des/snpcc_photometry.parquet"),
        filters=[("snid", "in", [8623, 18336, 29663, 43274, 848233])],
    )
    _check_against_extract(lc, [8623, 18336, 29663, 43274, 848233], phot)
    meta = pd.read_parquet(shared("snpcc_simgen_public_des/snpcc_metadata.parquet")).set_index(
        "snid"
    )
    o = lc.objects.set_index("object_id")
    for sid in o.index:
        assert o.loc[sid, "sim_type"] == meta.loc[int(sid), "sim_type_name"]
        assert o.loc[sid, "is_ia"] == meta.loc[int(sid), "is_ia"]
        assert o.loc[sid, "sample"] == meta.loc[int(sid), "sample"]


def test_header_parsing():
    head, varlist = parse_header(
        "SURVEY: DES\nSNID:  42 \nSIM_COMMENT:  SN Type = IIn , MODEL = X\nRA: 1.5 "
        "deg\nVARLIST: MJD FLT FLUXCAL FLUXCALERR\n"
    )
    assert (
        head["object_id"] == "42"
        and head["ra"] == 1.5
        and varlist == ["MJD", "FLT", "FLUXCAL", "FLUXCALERR"]
    )
    assert sim_type_from_comment(head["sim_comment"]) == "IIn"


def _dat(snid: int, rows: list[str], extra: str = "") -> bytes:
    body = "\n".join(f"OBS: {r}" for r in rows)
    return (
        f"SURVEY: DES\nSNID: {snid}\nFILTERS: griz\nSIM_COMMENT: SN Type = Ia , MODEL = "
        f"M\n{extra}NOBS: {len(rows)}\n"
        f"VARLIST: MJD FLT FIELD FLUXCAL FLUXCALERR\n{body}\nEND:\n"
    ).encode()


def test_tar_with_bad_members(tmp_path):
    good = _dat(
        1, ["56000.0 g NULL 10.0 1.0", "56001.0 r NULL 12.0 1.5", "56001.0 r NULL 12.0 1.5"]
    )  # duplicate epoch
    unsorted = _dat(2, ["56010.0 i NULL 5.0 1.0", "56002.0 z NULL 7.0 1.0"])
    bad_rows = _dat(3, ["56000.0 g NULL ten 1.0 extra extra"])
    nan_flux = _dat(4, ["56000.0 g NULL nan 1.0"])
    no_snid = b"hello\n"
    path = tmp_path / "lcs.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in [
            ("a/DES_SN1.DAT", good),
            ("a/DES_SN2.DAT", unsorted),
            ("a/DES_SN3.DAT", bad_rows),
            ("a/DES_SN4.DAT", nan_flux),
            ("a/DES_SN5.DAT", no_snid),
            ("a/README", b"x"),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert detect_format(path) == "snana_dat"
    lc = read(path)
    assert list(lc.objects["object_id"]) == ["1", "2"]
    assert lc.offsets.tolist() == [0, 2, 4]  # duplicate epoch merged
    assert np.all(np.diff(lc.mjd[2:4]) > 0)  # sorted in time
    reasons = " | ".join(str(p) for p in lc.problems)
    assert "DES_SN5.DAT" in reasons and "object 4" in reasons
    assert "DES_SN3.DAT" in reasons or "object 3" in reasons


def test_truncated_archive(tmp_path):
    src = shared("fixtures/snpcc_dat")
    path = tmp_path / "x.tar.xz"
    with tarfile.open(path, "w:xz") as tar:
        for f in sorted(src.glob("*.DAT")):
            tar.add(f, arcname=f.name)
    data = path.read_bytes()
    cut = tmp_path / "cut.tar.xz"
    cut.write_bytes(data[: len(data) // 2])
    try:
        lc = read(cut, format="snana_dat")
    except FormatError as exc:
        assert "cut.tar.xz" in str(exc)
    else:
        assert 0 < lc.n_objects < 5 and any("damaged" in p.reason for p in lc.problems)
    (tmp_path / "empty.tar").write_bytes(b"")
    with pytest.raises(FormatError, match="empty"):
        read(tmp_path / "empty.tar", format="snana_dat")


@pytest.mark.slow
def test_full_snpcc_archive():
    """All 21 319 SNPCC light curves straight from the tar.xz (about 20-30 s on 2 loaded cores)."""
    path = shared("snpcc_simgen_public_des/SIMGEN_PUBLIC_DES.tar.xz")
    lc = read(path)
    assert lc.n_objects == 21319
    assert (lc.objects["label"] == "SN Ia").sum() == 5088
    assert (lc.objects["sample"] == "spec").sum() == 1103
    phot = pd.read_parquet(shared("snpcc_simgen_public_des/snpcc_photometry.parquet"))
    assert lc.n_points == int((phot["fluxcalerr"] > 0).sum())
    rng = np.random.default_rng(0)
    sample = [*rng.choice(phot["snid"].unique(), 25, replace=False).tolist(), 396420]
    _check_against_extract(lc, sample, phot)
    meta = pd.read_parquet(shared("snpcc_simgen_public_des/snpcc_metadata.parquet"))
    ours = lc.objects.set_index("object_id")["sim_type"]
    assert (ours.loc[meta["snid"].astype(str)].to_numpy() == meta["sim_type_name"].to_numpy()).all()
    # the fast path of earlyia.io.datasets gives the very same table
    fast = datasets.snpcc()
    assert np.array_equal(fast.object_ids, lc.object_ids) and np.array_equal(
        fast.offsets, lc.offsets
    )
    assert np.array_equal(fast.band, lc.band) and np.allclose(fast.mjd, lc.mjd)
    assert np.allclose(fast.flux, lc.flux, rtol=1e-6) and np.allclose(
        fast.flux_err, lc.flux_err, rtol=1e-6
    )
    for col in ("label", "sample", "sim_model"):
        assert list(fast.objects[col]) == list(lc.objects[col]), col


def test_photflag_marks_detections(tmp_path):
    text = (
        "SURVEY: LSST\nSNID: 77\nSIM_TYPE_NAME: Ia\nVARLIST: MJD BAND FLUXCAL FLUXCALERR PHOTFLAG\n"
        "OBS: 60000.0 g 1.5 2.0 0\nOBS: 60001.0 r 150.0 5.0 4096\nOBS: 60002.0 i 300.0 6.0 "
        "6144\nEND:\n"
    )
    p = tmp_path / "LSST_77.DAT"
    p.write_text(text)
    lc = read(p)
    assert lc.survey == "LSST" and lc.detected.tolist() == [False, True, True]
    assert np.allclose(
        lc.flux, [1.5, 150.0, 300.0]
    )  # a forced-photometry non-detection keeps its flux
    assert lc.objects.loc[0, "label"] == "SN Ia"
