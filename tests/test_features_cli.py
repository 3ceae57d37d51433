"""`earlyia features` end to end: real input, self-describing output, bad input reported."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import shared
from earlyia.cli.main import main
from earlyia.features import get_extractor, read_features


def test_features_command_fink_and_robust(tmp_path, capsys):
    src = shared("ztf_fink_tns_labelled/fink_cross_tns_nov2019.parquet")
    out = tmp_path / "f.parquet"
    assert main(["features", str(src), "--out", str(out), "--mode", "fink"]) == 0
    df, meta = read_features(out)
    assert len(df) == 145 and meta["per"] == "alert" and meta["survey"] == "ZTF"
    ext = get_extractor(meta["extractor"])
    assert ext.mode == "fink" and list(df.columns[-12:]) == ext.names
    assert (df["reason"] == "").eq(df["valid"]).all()
    err = capsys.readouterr().err
    assert "145 rows" in err and "invalid rows by reason" in err

    out2 = tmp_path / "r.parquet"
    assert (
        main(
            ["features", str(src), "--out", str(out2), "--per", "object", "--extractor", "sigmoid"]
        )
        == 0
    )
    df2, meta2 = read_features(out2)
    assert meta2["extractor"]["params"]["mode"] == "robust" and df2["alert_id"].isna().all()
    assert (
        df2["valid"].mean() > pd.read_parquet(out)["valid"].mean()
    )  # robust fits far more light curves


def test_features_command_bad_input(tmp_path, capsys):
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1 not really")
    assert main(["features", str(junk), "--out", str(tmp_path / "x.parquet")]) == 2
    assert "junk.parquet" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()
    with pytest.raises(SystemExit):
        main(["features", str(junk), "--out", "x", "--mode", "nonsense"])


def test_features_command_keeps_bad_objects(tmp_path):
    # a Fink long CSV: one good rising object, one with a single point, one with only non-detections
    rows = []
    for k in range(5):
        for fid in (1, 2):
            rows.append(("ZTFgood", 2459000.7 + k, fid, 19.5 - 0.3 * k, 0.05))
    rows.append(("ZTFone", 2459001.7, 1, 19.0, 0.1))
    rows += [("ZTFlim", 2459001.7 + k, 1, np.nan, np.nan) for k in range(3)]
    path = tmp_path / "lc.csv"
    pd.DataFrame(rows, columns=["objectId", "cjd", "cfid", "cmagpsf", "csigmapsf"]).to_csv(
        path, index=False
    )
    out = tmp_path / "f.parquet"
    assert (
        main(
            ["features", str(path), "--out", str(out), "--per", "object", "--extractor", "sigmoid"]
        )
        == 0
    )
    df, _ = read_features(out)
    df = df.set_index("object_id")
    assert df.loc["ZTFgood", "valid"]
    assert not df.loc["ZTFone", "valid"] and "points < 3" in df.loc["ZTFone", "reason"]
    if "ZTFlim" in df.index:
        assert not df.loc["ZTFlim", "valid"]


def test_features_command_replays_early_prefixes(tmp_path):
    src = shared("ztf_fink_tns_labelled/fink_cross_tns_sept2020.parquet")
    out = tmp_path / "early.parquet"
    assert (
        main(
            ["features", str(src), "--out", str(out), "--extractor", "early", "--replay", "3", "5"]
        )
        == 0
    )
    df, meta = read_features(out)
    assert meta["extractor"]["extractor"] == "early"
    # one row per detection k = 3..5 of each object, named <object>_<k>, seeing exactly k detections
    k = df["alert_id"].str.rsplit("_", n=1).str[1].astype(int)
    assert set(k) <= {3, 4, 5} and (df["n_detections"] == k).all() and (df["ndethist"] == k).all()
    assert main(["features", str(src), "--out", str(out), "--replay", "5", "3"]) == 2


def test_features_command_default_is_the_early_extractor(tmp_path):
    """No option: the default model's features (early-epoch + robust sigmoid), defined from 1
    detection on."""
    src = shared("ztf_fink_tns_labelled/fink_cross_tns_sept2020.parquet")
    out = tmp_path / "default.parquet"
    assert main(["features", str(src), "--out", str(out), "--replay", "1", "3"]) == 0
    df, meta = read_features(out)
    assert (
        meta["extractor"]["extractor"] == "early"
        and meta["extractor"]["params"]["sigmoid"] == "robust"
    )
    ext = get_extractor(meta["extractor"])
    assert (
        list(df.columns[-len(ext.names) :]) == ext.names
        and "a_g" in ext.names
        and "early_colour_last" in ext.names
    )
    one = df[df["n_detections"] == 1]
    assert len(one) and one["valid"].all() and (one["early_n_det"] == 1).all()
