"""Real Rubin alerts scored end to end by an `lsst`-recipe model trained on ELAsTiCC (small and
fast here)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from conftest import shared
from earlyia.cli.main import main
from earlyia.features import get_extractor
from earlyia.features.gates import apply_gate
from earlyia.features.io import write_features
from earlyia.features.lsst_early import LsstEarlyFeatures
from earlyia.io import read
from earlyia.io.lsst import read_elasticc
from earlyia.model.artifact import Model

ROOT = "elasticc_fink_ia_ii/ftransfer_elasticc_2023-02-08_902820"
TRANSFER = "external_alert_samples/fink_lsst_transfer"


def test_lsst_model_scores_real_rubin_alerts(tmp_path, capsys):
    lcs = [read_elasticc(shared(f"{ROOT}/classId={c}/part-0-0.parquet")) for c in (111, 113)]
    small = [lc.take(np.arange(40)) for lc in lcs]  # 40 objects per class: seconds, not minutes
    ext = LsstEarlyFeatures()
    df = pd.concat([ext.transform(lc, per="alert") for lc in small], ignore_index=True)
    feats, model_path = tmp_path / "f.parquet", tmp_path / "lsst.eia"
    write_features(df, feats, ext, survey="LSST", bands=small[0].bands)
    assert (
        main(["train", str(feats), "--out", str(model_path), "--trees", "20", "--cv-folds", "0"])
        == 0
    )
    model = Model.load(model_path)
    assert model.card["lineage"]["recipe"] == "lsst"

    folder = shared(TRANSFER)
    out = tmp_path / "scores.parquet"
    rc = main(["score", str(folder), "--model", str(model_path), "--out", str(out)])
    assert rc == 0
    scores = pd.read_parquet(out)
    parts = sorted(folder.glob("part-*.parquet"))
    rows = [
        r for p in parts for r in pq.read_table(p, columns=["diaSource", "diaObject"]).to_pylist()
    ]
    with_object = [r for r in rows if (r["diaObject"] or {}).get("diaObjectId")]
    # one row per alert: scored (or gated) alerts of objects, and the asteroid alerts with their
    # reason
    assert len(scores) == len(rows) and len(with_object) < len(rows)
    assert sorted(scores.loc[scores["alert_id"] != "", "alert_id"].astype(str)) == sorted(
        str(r["diaSource"]["diaSourceId"]) for r in with_object
    )
    ss = scores["reason"].str.contains("solar-system object", regex=False)
    assert int(ss.sum()) == len(rows) - len(with_object) and (scores.loc[ss, "score"] == 0).all()
    assert scores["score"].between(0, 1).all() and scores["passed"].any()
    # the same numbers as extractor + gate + forest by hand on the Rubin table
    lc = read(parts)
    ref = get_extractor(model.card["extractor"]).transform(lc, per="alert").set_index("alert_id")
    mine = scores[~ss].set_index("alert_id").loc[ref.index]
    X = ref[model.features].to_numpy()
    keep = apply_gate(model.card["gate"], X, model.features)
    np.testing.assert_allclose(
        mine["score"].to_numpy(), np.where(keep, model.predict_proba(X)[:, 1], 0.0), atol=1e-12
    )
