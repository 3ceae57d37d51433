"""Spark adapter: Spark scores equal local scores; the model loads once per worker; batches keep
objects whole.

One local[2] session for the module (session start dominates the runtime); inputs are small
subsets of the shared alert data.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import earlyia.spark as sp
from conftest import reference, shared

# ---------------------------------------------------------------------------------------------- no
# Spark needed


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=1, max_size=25),
    batch=st.integers(1, 9),
)
def test_grouped_frames_never_split_an_object(sizes, batch):
    keys = np.repeat([f"o{i:03d}" for i in range(len(sizes))], sizes)
    table = pa.table({"objectId": keys, "v": np.arange(len(keys))})
    frames = list(sp._grouped_frames(iter(table.to_batches(max_chunksize=batch)), "objectId"))
    seen: dict[str, int] = {}
    for k, f in enumerate(frames):
        for key in f["objectId"].unique():
            assert key not in seen, f"{key} in frames {seen[key]} and {k}"
            seen[key] = k
    assert pd.concat(frames)["v"].tolist() == list(range(len(keys)))


# ----------------------------------------------------------------------------------------------
# fixtures
needs_spark = pytest.mark.skipif(
    importlib.util.find_spec("pyspark") is None,
    reason="pyspark not installed (pip install 'earlyia[spark]')",
)
pytestmark = [
    pytest.mark.xdist_group(
        "spark"
    ),  # one Spark session for the module under `pytest -n 2 --dist loadgroup`
    pytest.mark.filterwarnings("ignore::FutureWarning"),  # pyspark 4.3 on pandas 3
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

N_REPLAY_OBJECTS = 15
N_POOL_ALERTS = 120


@pytest.fixture(scope="module")
def spark():
    if importlib.util.find_spec("pyspark") is None:
        pytest.skip("pyspark not installed")
    session = sp.get_session(
        "local[2]",
        shuffle_partitions=4,
        conf={
            "spark.sql.execution.arrow.maxRecordsPerBatch": "40",
            "spark.default.parallelism": "2",
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Replay subset (Fink flat columns), pool subset (nested candidate struct), canonical table,
    and a small model."""
    from earlyia.features import get_extractor
    from earlyia.io.fink import read_fink_parquet
    from earlyia.model.recipe import Recipe
    from earlyia.model.training import train_model

    d = tmp_path_factory.mktemp("spark")
    replay = pd.read_parquet(reference("ztf_replay_alerts_with_anchor.parquet"))
    labels = pd.read_csv(shared("ztf_fink_tns_labelled/objects.csv")).set_index("objectId")[
        "tns_type"
    ]
    rng = np.random.default_rng(7)
    ids = rng.choice(replay["objectId"].unique(), N_REPLAY_OBJECTS, replace=False)
    sub = replay[replay["objectId"].isin(ids)].sample(frac=1, random_state=1).reset_index(drop=True)
    sub["TNS"] = sub["objectId"].map(labels)
    bad = sub.iloc[[0]].assign(objectId="ZTF00badrow", candid="ZTF00badrow_3")
    bad["cmagpsf"] = [
        bad["cmagpsf"].iloc[0][:-1]
    ]  # lists of different lengths: the reader drops the row
    sub = pd.concat([sub.iloc[:7], bad, sub.iloc[7:]], ignore_index=True)
    paths = {
        "replay": d / "replay.parquet",
        "pool": d / "pool.parquet",
        "canonical": d / "canonical.parquet",
        "ztf": d / "ztf.parquet",
    }
    sub.to_parquet(paths["replay"])
    lc = read_fink_parquet(paths["replay"])
    lc.to_parquet(paths["canonical"])
    raw = _early_pool_alerts(shared("ztf_fink_alerts_pool/ztf_alerts_pool.parquet"))
    pq.write_table(
        raw, paths["ztf"]
    )  # raw ZTF alerts (flattened candidate + prv_candidates), as stored
    pq.write_table(_pool_as_fink(raw), paths["pool"])

    ex = get_extractor("sigmoid", mode="fink")
    feats = ex.transform(lc, per="alert")
    model = train_model(feats, ex.config(), Recipe(n_estimators=15), random_state=3)
    paths["model"] = d / "model.eia"
    model.save(paths["model"])
    return paths


def _early_pool_alerts(path) -> pa.Table:
    """Up to N_POOL_ALERTS early pool alerts (<= 20 detections, >= 3 in the history: some pass
    the selection)."""
    table = pq.read_table(path)
    pool = table.select(["prv_candidates", "cand_ndethist"]).to_pandas()
    n_det = pool["prv_candidates"].map(
        lambda p: 0 if p is None else sum(e["magpsf"] is not None for e in p)
    )
    idx = np.flatnonzero(((n_det >= 3) & (pool["cand_ndethist"] <= 20)).to_numpy())
    idx = np.sort(np.random.default_rng(0).choice(idx, min(N_POOL_ALERTS, len(idx)), replace=False))
    return table.take(idx)


def _pool_as_fink(raw: pa.Table) -> pa.Table:
    """Pool alerts in Fink's schema: c* lists (history then current) and a nested ``candidate``
    struct."""
    pool = raw.to_pandas()
    rows = {k: [] for k in ("cjd", "cfid", "cmagpsf", "csigmapsf", "cdiffmaglim")}
    cand = []
    for r in pool.itertuples(index=False):
        prv = list(r.prv_candidates)
        for col, key, now in (
            ("cjd", "jd", r.cand_jd),
            ("cfid", "fid", r.cand_fid),
            ("cmagpsf", "magpsf", r.cand_magpsf),
            ("csigmapsf", "sigmapsf", r.cand_sigmapsf),
            ("cdiffmaglim", "diffmaglim", r.cand_diffmaglim),
        ):
            rows[col].append([p[key] for p in prv] + [now])
        cand.append(
            {
                "candid": int(r.cand_candid),
                "jd": r.cand_jd,
                "fid": int(r.cand_fid),
                "magpsf": r.cand_magpsf,
                "sigmapsf": r.cand_sigmapsf,
                "ra": r.cand_ra,
                "dec": r.cand_dec,
                "ndethist": int(r.cand_ndethist),
                "jdstarthist": r.cand_jdstarthist,
                "drb": r.cand_drb,
                "isdiffpos": r.cand_isdiffpos,
            }
        )
    out = pd.DataFrame(
        {
            "objectId": pool["objectId"],
            "candid": pool["cand_candid"].astype("int64"),
            **rows,
            "cdsxmatch": pool["cdsxmatch"],
            "snn_snia_vs_nonia": pool["snn_snia_vs_nonia"],
            "snn_sn_vs_all": pool["snn_sn_vs_all"],
        }
    )
    table = pa.Table.from_pandas(out, preserve_index=False)
    fields = [
        ("candid", pa.int64()),
        ("jd", pa.float64()),
        ("fid", pa.int64()),
        ("magpsf", pa.float64()),
        ("sigmapsf", pa.float64()),
        ("ra", pa.float64()),
        ("dec", pa.float64()),
        ("ndethist", pa.int64()),
        ("jdstarthist", pa.float64()),
        ("drb", pa.float64()),
        ("isdiffpos", pa.string()),
    ]
    struct = pa.array(cand, type=pa.struct(fields))
    return table.append_column("candidate", struct)


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["object_id", "mjd", "alert_id"], kind="mergesort").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# tests
def test_an_unreadable_batch_becomes_a_reported_row_not_a_failed_job(data):
    from earlyia.model.artifact import Model

    model = Model.load(data["model"])
    bad = pd.DataFrame(
        {
            "objectId": ["A", "B"],
            "cjd": [[1.0, 2.0], None],
            "cmagpsf": [[19.0], [19.0]],
            "csigmapsf": [[0.1], [0.1]],
            "cfid": [[1], [1]],
        }
    )
    out = sp.score_batch(bad, model, kind="fink", source="batch.parquet")
    assert (
        len(out) == 1
        and not out["passed"].any()
        and "no readable alert row" in out["reason"].iloc[0]
    )
    assert list(out.columns[-len(model.features) :]) == model.features


def test_a_tampered_model_is_refused_before_any_task(data, tmp_path):
    from earlyia.errors import ModelError

    raw = bytearray(data["model"].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad = tmp_path / "bad.eia"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ModelError):
        sp.ship_model(None, bad)  # no session needed: refused on the driver first


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nobody listens once the socket is closed


@needs_spark
@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--engine", "spark", "--conf", "spark.authenticate.secret:hunter2"],
            "--conf number 1 is not KEY=VALUE",
        ),
        (["--master", "local[2]"], "--master and --conf are Spark settings: add --engine spark"),
        (
            ["--conf", "spark.executor.memory=2g"],
            "--master and --conf are Spark settings: add --engine spark",
        ),
        (
            ["--engine", "spark", "--master", "spark//127.0.0.1:7077"],
            "expected local[N], spark://HOST:PORT, yarn or k8s://URL",
        ),
        (
            ["--engine", "spark", "--master", "spark://127.0.0.1"],
            "a standalone master is spark://HOST:PORT",
        ),
        (
            ["--engine", "spark", "--master", "spark://127.0.0.1:{port}"],
            "cannot reach the Spark master spark://127.0.0.1:{port}",
        ),
    ],
)
def test_cluster_options_are_checked_before_spark_starts(data, tmp_path, capsys, extra, message):
    from earlyia.cli.main import main

    port = _closed_port()
    out = tmp_path / "scores.parquet"
    t0 = time.monotonic()
    code = main(
        [
            "score",
            str(data["replay"]),
            "--model",
            str(data["model"]),
            "--out",
            str(out),
            *[a.format(port=port) for a in extra],
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and message.format(port=port) in err and "Traceback" not in err, err
    assert "hunter2" not in err  # a malformed --conf is not echoed: it may hold a secret
    assert (
        not out.exists() and time.monotonic() - t0 < 30
    )  # refused at once, not after Spark's minute of retries


@needs_spark
@pytest.mark.spark
@pytest.mark.parametrize("kind", ["replay", "pool", "canonical", "ztf"])
def test_spark_scores_equal_local_scores(spark, data, tmp_path, kind):
    from earlyia.model.artifact import Model
    from earlyia.score.pipeline import score_files

    model = Model.load(data["model"])
    local_out, spark_out = tmp_path / "local.parquet", tmp_path / "spark.parquet"
    # the pool file has a full ``candidate`` struct, so name its format (detection would say ZTF
    # alert parquet)
    score_files(
        [data[kind]],
        model,
        local_out,
        progress=False,
        format="fink_parquet" if kind == "pool" else None,
    )
    summary = sp.score_spark(data[kind], data["model"], spark_out, spark=spark, partitions=3)
    local, remote = pd.read_parquet(local_out), pd.read_parquet(spark_out)
    assert summary["n_alerts"] == len(local) > 0
    assert list(remote.columns) == list(local.columns)
    pd.testing.assert_frame_equal(_sorted(remote), _sorted(local), check_exact=True)
    assert local["passed"].any()  # something was actually scored, not only rejected
    if kind == "replay":  # the unreadable row is reported in both, with its row number in the file
        assert (
            local["reason"].str.contains("row 7: photometry lists of different lengths").sum() == 1
        )
    meta = json.loads(pq.read_schema(spark_out).metadata[b"earlyia.scores"])
    assert meta["engine"] == "spark" and meta["model_hash"] == model.hash


@needs_spark
@pytest.mark.spark
def test_model_is_loaded_once_per_worker_not_per_batch(spark, data):
    ref = sp.ship_model(spark, data["model"])
    df = sp.with_provenance(spark.read.parquet(str(data["replay"])))
    # rows not grouped by object here (the other path; the equality tests use the default grouping)
    out = sp.score_dataframe(
        df, ref, source=data["replay"].name, partitions=4, diagnostics=True, group_objects=False
    )
    out = sp._collect_arrow(out).to_pandas()
    per_worker = out.groupby("_worker_pid").agg(
        loads=("_model_loads", "max"), batches=("_batch", "nunique")
    )
    assert (per_worker["loads"] == 1).all(), per_worker
    assert per_worker["batches"].sum() > len(per_worker), (
        "the test needs more batches than workers to mean anything"
    )
    assert out["_batch"].nunique() >= 2


@needs_spark
@pytest.mark.spark
@pytest.mark.parametrize("kind", ["pool", "canonical"])
def test_features_udf_equals_local_transform(spark, data, kind):
    from earlyia.features import get_extractor
    from earlyia.io.fink import lightcurves_from_fink_frame
    from earlyia.io.table import LightCurves

    cfg = get_extractor("sigmoid", mode="fink").config()
    table = pq.read_table(data[kind])
    if kind == "pool":
        lc = lightcurves_from_fink_frame(table.to_pandas(maps_as_pydicts="strict"), source="pool")
    else:
        lc = LightCurves.read_parquet(data[kind])
    local = get_extractor(cfg).transform(lc, per="alert")
    meta = table.schema.metadata.get(b"earlyia") if kind == "canonical" else None
    sdf = spark.read.parquet(str(data[kind]))
    remote = sp._collect_arrow(
        sp.features_dataframe(sdf, cfg, source="pool", table_meta=meta, partitions=2)
    ).to_pandas()
    cols = list(local.columns)
    pd.testing.assert_frame_equal(
        _sorted(remote[cols]), _sorted(local), check_exact=True, check_dtype=False
    )


@needs_spark
@pytest.mark.spark
def test_scalar_udf_gives_one_score_per_row_like_the_batch_function(spark, data):
    from pyspark.sql import functions as sf

    from earlyia.model.artifact import Model

    table = pq.read_table(data["pool"])
    pdf = (
        table.to_pandas(maps_as_pydicts="strict").drop_duplicates("objectId").reset_index(drop=True)
    )  # rows independent of batching
    model = Model.load(data["model"])
    expect = sp.score_rows_frame(pdf, model)
    direct = sp.score_batch(pdf, model, kind="fink").set_index("alert_id")["score"]
    np.testing.assert_array_equal(
        expect.to_numpy(), direct.reindex(pdf["candid"].astype(str)).to_numpy()
    )
    assert (expect > 0).any()
    udf = sp.make_score_udf(sp.ship_model(spark, data["model"]))
    sdf = spark.read.parquet(str(data["pool"])).join(
        spark.createDataFrame(pdf[["candid"]]), "candid"
    )
    cols = [c for c in sdf.columns]
    got = (
        sp._collect_arrow(sdf.select("candid", udf(sf.struct(*cols)).alias("s")))
        .to_pandas()
        .set_index("candid")["s"]
    )
    np.testing.assert_array_equal(got.reindex(pdf["candid"]).to_numpy(), expect.to_numpy())


@needs_spark
@pytest.mark.spark
def test_lsst_early_model_and_its_gate_score_the_same_on_spark(spark, tmp_path):
    """An LSST model (lsst_early features with host columns, rise gate in its card) on a
    canonical ELAsTiCC table."""
    from earlyia.features import get_extractor
    from earlyia.features.gates import GATE_REASON
    from earlyia.io import read
    from earlyia.model.recipe import Recipe
    from earlyia.model.training import train_model
    from earlyia.score.pipeline import score_files

    root = "elasticc_fink_ia_ii/ftransfer_elasticc_2023-02-08_902820"
    train = read(
        [
            shared(f"{root}/classId=111/part-0-0.parquet"),
            shared(f"{root}/classId=113/part-0-0.parquet"),
        ]
    )
    ext = get_extractor("lsst_early")
    model = train_model(
        ext.transform(train, per="alert"),
        ext.config(),
        Recipe(n_estimators=15, cv_folds=0, selection={"rule": "none"}, gate="rise"),
        random_state=3,
    )
    model_path, canonical = tmp_path / "lsst.eia", tmp_path / "lsst.parquet"
    model.save(model_path)
    read([shared(f"{root}/classId=111/part-0-1000.parquet")]).to_parquet(canonical)
    local_out, spark_out = tmp_path / "local.parquet", tmp_path / "spark.parquet"
    score_files([canonical], model, local_out, progress=False)
    sp.score_spark(canonical, model_path, spark_out, spark=spark, partitions=3)
    local, remote = pd.read_parquet(local_out), pd.read_parquet(spark_out)
    pd.testing.assert_frame_equal(_sorted(remote), _sorted(local), check_exact=True)
    assert local["passed"].any() and (local["reason"] == GATE_REASON).any()
    assert local["hostgal_zphot"].notna().all() and (local["hostgal_zphot"] != -999.0).any()
