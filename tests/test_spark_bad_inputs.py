"""Spark: a truncated or damaged Parquet input becomes a reason row, as in local scoring; the
rest is scored."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import reference, shared

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("pyspark") is None,
        reason="pyspark not installed (pip install 'earlyia[spark]')",
    ),
    pytest.mark.spark,
    pytest.mark.xdist_group("spark"),  # one Spark session at a time on a worker
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


@pytest.fixture(scope="module")
def spark():
    from earlyia import spark as sp

    session = sp.get_session(
        "local[2]", shuffle_partitions=2, conf={"spark.default.parallelism": "2"}
    )
    session.sparkContext.setLogLevel("OFF")
    yield session
    session.stop()


def test_a_truncated_and_a_damaged_file_are_reason_rows_beside_the_scored_file(spark, tmp_path):
    from earlyia.features import get_extractor
    from earlyia.io.fink import lightcurves_from_fink_frame
    from earlyia.model.artifact import Model
    from earlyia.model.recipe import Recipe
    from earlyia.model.training import train_model
    from earlyia.score.pipeline import score_files
    from earlyia.spark import score_spark

    replay = pd.read_parquet(reference("ztf_replay_alerts_with_anchor.parquet"))
    sub = replay[
        replay["objectId"].isin(replay["objectId"].drop_duplicates().iloc[:40])
    ].reset_index(drop=True)
    lab = pd.read_csv(shared("ztf_fink_tns_labelled/objects.csv")).set_index("objectId")["tns_type"]
    ext = get_extractor("sigmoid", mode="fink")
    feats = ext.transform(lightcurves_from_fink_frame(sub, source="sub"), per="alert")
    feats["label"] = feats["object_id"].map(lab)
    model_path = tmp_path / "model.eia"
    train_model(feats, ext.config(), Recipe(n_estimators=5), random_state=1).save(model_path)

    good = tmp_path / "a_good.parquet"
    sub.to_parquet(good)
    raw = good.read_bytes()
    truncated = tmp_path / "b_truncated.parquet"
    truncated.write_bytes(raw[: len(raw) // 2])  # no footer
    other = replay[replay["objectId"].isin(replay["objectId"].drop_duplicates().iloc[40:80])]
    damaged = tmp_path / "c_damaged.parquet"
    other.to_parquet(damaged, compression="zstd")
    data = bytearray(damaged.read_bytes())
    first = pq.ParquetFile(damaged).metadata.row_group(0).column(0)
    start = first.data_page_offset
    for i in range(
        start + 16, start + first.total_compressed_size - 4
    ):  # the footer reads, the pages do not
        data[i] ^= 0x5A
    damaged.write_bytes(bytes(data))
    with pytest.raises(OSError):
        pq.read_table(damaged)  # really damaged

    inputs = [good, truncated, damaged]
    score_spark(inputs, model_path, tmp_path / "spark.parquet", spark=spark, partitions=2)
    score_files(inputs, Model.load(model_path), tmp_path / "local.parquet", progress=False)
    remote = pd.read_parquet(tmp_path / "spark.parquet")
    local = pd.read_parquet(tmp_path / "local.parquet")

    for name in ("b_truncated.parquet", "c_damaged.parquet"):
        for df in (remote, local):
            rows = df[df["reason"].str.contains(name, regex=False)]
            assert (
                len(rows) == 1 and not rows["passed"].any() and "Parquet" in rows["reason"].iloc[0]
            ), df["reason"].tolist()
    scored_remote = remote[remote["alert_id"] != ""].sort_values("alert_id").reset_index(drop=True)
    scored_local = local[local["alert_id"] != ""].sort_values("alert_id").reset_index(drop=True)
    assert len(scored_remote) == len(sub)
    assert scored_remote["alert_id"].tolist() == scored_local["alert_id"].tolist()
    np.testing.assert_array_equal(scored_remote["score"], scored_local["score"])
