"""LSST alerts go through the same features -> train -> score commands as ZTF; the card picks the
extractor."""

import pandas as pd

from conftest import shared
from earlyia.cli.main import main
from earlyia.features import read_features
from earlyia.model.artifact import Model

ROOT = "elasticc_fink_ia_ii/ftransfer_elasticc_2023-02-08_902820"


def test_elasticc_rainbow_train_and_score(tmp_path):
    ia = shared(f"{ROOT}/classId=111/part-0-0.parquet")
    ii = shared(f"{ROOT}/classId=113/part-0-0.parquet")
    feats = tmp_path / "rb.parquet"
    assert main(["features", str(ia), str(ii), "--extractor", "rainbow", "--out", str(feats)]) == 0
    df, meta = read_features(feats)
    assert meta["extractor"]["extractor"] == "rainbow" and meta["survey"] == "LSST"
    assert set(df["label"].dropna()) == {"SN Ia", "SN II"}
    model = tmp_path / "rb.eia"
    args = [
        "train",
        str(feats),
        "--out",
        str(model),
        "--trees",
        "30",
        "--cv-folds",
        "0",
        "--select-min-points",
        "0",
        "--select-no-rising",
    ]
    assert main(args) == 0
    assert Model.load(model).card["extractor"]["extractor"] == "rainbow"
    out = tmp_path / "scores.parquet"
    other = shared(f"{ROOT}/classId=111/part-0-1000.parquet")
    assert main(["score", str(other), "--model", str(model), "--out", str(out)]) == 0
    scores = pd.read_parquet(out)
    n_alerts = len(pd.read_parquet(other, columns=["alertId"]))
    assert len(scores) == n_alerts and scores["passed"].any()
    # rows the model scored carry the Rainbow features the card lists, in its order; failed rows
    # score 0
    names = Model.load(model).card["features"]
    assert all(n in scores.columns for n in names)
    assert (scores.loc[~scores["passed"], "score"] == 0).all()
    assert scores.loc[scores["passed"], "score"].between(0, 1).all()
