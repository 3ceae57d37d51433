"""No input sinks a batch: damaged files, absurd values, wrong column types, bad --out, ids kept
exact.

Each case runs the real commands (``earlyia convert``, ``features``, ``score``) on real shared data
with one broken input or alert beside good ones: the broken part becomes a one-line error (exit 2)
or a reason row, the rest is processed, and nothing is written half-way.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import reference, shared
from earlyia.cli.main import main
from earlyia.errors import SchemaError
from earlyia.features import get_extractor
from earlyia.io import read
from earlyia.io.fink import lightcurves_from_fink_frame
from earlyia.io.table import LightCurves
from earlyia.model.artifact import Model
from earlyia.model.recipe import Recipe
from earlyia.model.training import train_model
from earlyia.score.pipeline import score_files


@pytest.fixture(scope="module")
def replay():
    """Fink-format alerts of 60 real objects (the replay file)."""
    df = pd.read_parquet(reference("ztf_replay_alerts_with_anchor.parquet"))
    ids = df["objectId"].drop_duplicates().iloc[:60]
    return df[df["objectId"].isin(ids)].reset_index(drop=True)


@pytest.fixture(scope="module")
def model_path(replay, tmp_path_factory):
    """A small forest on Fink's sigmoid features (its selection runs the band-statistics kernel)."""
    lab = pd.read_csv(shared("ztf_fink_tns_labelled/objects.csv")).set_index("objectId")["tns_type"]
    ext = get_extractor("sigmoid", mode="fink")
    feats = ext.transform(lightcurves_from_fink_frame(replay, source="replay"), per="alert")
    feats["label"] = feats["object_id"].map(lab)
    path = tmp_path_factory.mktemp("model") / "model.eia"
    train_model(feats, ext.config(), Recipe(n_estimators=5), random_state=1).save(path)
    return path


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line_error(capsys, rc: int, *words: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


# ----------------------------------------------------------------------------------------------
# damaged files
def _corrupt(data: bytes, at: int = 4000, n: int = 64) -> bytes:
    b = bytearray(data)
    for i in range(at, at + n):
        b[i] ^= 0x5A
    return bytes(b)


@pytest.mark.parametrize("command", ["convert", "features", "score"])
def test_a_compressed_csv_corrupted_after_a_few_kb_is_one_reason_and_the_rest_is_processed(
    tmp_path, model_path, command, capsys
):
    src = shared("ztf_fink_tns_labelled/all_nonIa.csv.gz")
    raw = gzip.decompress(src.read_bytes())
    head = raw[: raw.index(b"\n", 200_000) + 1]  # ~200 kB of whole lines: a few thousand points
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_good.csv.gz").write_bytes(gzip.compress(head))
    (folder / "b_bad.csv.gz").write_bytes(_corrupt(gzip.compress(head)))
    (folder / "c_bad.csv.xz").write_bytes(_corrupt(lzma.compress(head)))
    out = tmp_path / "out.parquet"
    args = {
        "convert": [],
        "features": ["--extractor", "sigmoid"],
        "score": ["--model", str(model_path)],
    }[command]
    rc = main([command, str(folder), "--out", str(out), *args])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert rc in (0, 1), text  # 1: score found nothing to score, still wrote every row's reason
    assert "Traceback" not in text and out.exists()
    assert "b_bad.csv.gz" in text and "c_bad.csv.xz" in text
    good = read(folder / "a_good.csv.gz")
    if command == "convert":
        assert set(LightCurves.read_parquet(out).object_ids) == set(good.object_ids)
    else:
        df = pd.read_parquet(out)
        assert set(good.object_ids) <= set(df["object_id"])
        bad_rows = df[df["reason"].str.contains("bad.csv", regex=False)]
        assert (
            len(bad_rows) == 2
            and bad_rows["reason"]
            .str.contains("LZMAError|zlib|gzip|CRC|tokeniz|cannot read", regex=True)
            .all()
        )


def test_damaged_gzip_alone_is_one_line_exit_2(tmp_path, capsys):
    src = shared("ztf_fink_tns_labelled/all_nonIa.csv.gz")
    bad = tmp_path / "lc.csv.xz"
    bad.write_bytes(_corrupt(lzma.compress(gzip.decompress(src.read_bytes())[:300_000])))
    out = tmp_path / "t.parquet"
    _one_line_error(capsys, main(["convert", str(bad), "--out", str(out)]), "lc.csv.xz")
    _one_line_error(capsys, main(["features", str(bad), "--out", str(out)]), "lc.csv.xz")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "lc.csv.xz"
    ]  # nothing written, no temporary left


# ----------------------------------------------------------------------------------------------
# exact ids
def test_alert_ids_stay_int64_beside_a_truncated_avro(tmp_path, model_path, capsys):
    pool = shared("ztf_fink_alerts_pool/ztf_alerts_pool.parquet")
    avro = shared("fixtures/fink_ztf/avro_multi_alerts.avro")
    truncated = tmp_path / "truncated.avro"
    truncated.write_bytes(avro.read_bytes()[:100_000])
    out = tmp_path / "scores.parquet"
    rc = main(
        [
            "score",
            str(pool),
            str(avro),
            str(truncated),
            "--model",
            str(model_path),
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert rc in (0, 1) and "Traceback" not in err
    table = pq.read_table(out)
    assert table.schema.field("candid").type == pa.int64()
    candid = table.column("candid").to_pylist()
    alert_id = table.column("alert_id").to_pylist()
    pairs = [(c, a) for c, a in zip(candid, alert_id, strict=True) if c is not None]
    assert len(pairs) >= 1577 and all(
        str(c) == a for c, a in pairs
    )  # every digit of the 19-digit candids
    expected = set(pq.read_table(pool, columns=["candid"]).column(0).to_pylist())
    assert expected <= {c for c, _ in pairs}
    reasons = table.column("reason").to_pylist()
    assert any("truncated.avro" in r and "damaged" in r for r in reasons)


# ----------------------------------------------------------------------------------------------
# absurd values
ABSURD = {
    "denormal_sigma": ("csigmapsf", 1e-170),
    "zero_sigma": ("csigmapsf", 0.0),
    "negative_sigma": ("csigmapsf", -0.1),
    "infinite_sigma": ("csigmapsf", np.inf),
    "absurd_magnitude": ("cmagpsf", -80.0),
    "absurd_time": ("cjd", 1e300),
}


def test_absurd_alerts_are_reason_rows_and_the_rest_is_scored(tmp_path, replay, model_path):
    """One alert per absurd value (each its own object) beside the clean file: each is one reason
    row, the rest scores exactly as the clean file alone."""
    rich = replay[replay["cjd"].map(len) >= 8].iloc[[0]]
    bad = []
    for case, (column, value) in sorted(ABSURD.items()):
        row = rich.copy()
        row["objectId"], row["candid"] = f"ZTFabsurd_{case}", f"absurd_{case}"
        values = np.asarray(row[column].iloc[0], np.float64).copy()
        if column == "csigmapsf":
            values[:] = value  # every point's error
        else:
            values[-1] = value  # the current point
        row[column] = [values]
        bad.append(row)
    replay.to_parquet(tmp_path / "clean.parquet")
    pd.concat([replay, *bad], ignore_index=True).to_parquet(tmp_path / "mixed.parquet")
    model = Model.load(model_path)
    score_files(
        [tmp_path / "clean.parquet"], model, tmp_path / "clean_scores.parquet", progress=False
    )
    score_files(
        [tmp_path / "mixed.parquet"], model, tmp_path / "mixed_scores.parquet", progress=False
    )
    clean = pd.read_parquet(tmp_path / "clean_scores.parquet").set_index("alert_id")
    mixed = pd.read_parquet(tmp_path / "mixed_scores.parquet")
    for case in ABSURD:
        rows = mixed[mixed["object_id"] == f"ZTFabsurd_{case}"]
        assert len(rows) == 1 and not rows["passed"].any() and (rows["score"] == 0).all(), case
        assert rows["reason"].str.contains("absurd|non-finite|non-positive", regex=True).all(), (
            case,
            rows["reason"].tolist(),
        )
    rest = mixed[~mixed["object_id"].str.startswith("ZTFabsurd_")].set_index("alert_id")
    np.testing.assert_array_equal(
        rest.loc[clean.index, "score"], clean["score"]
    )  # the rest scored exactly as alone


def test_the_spark_batch_function_survives_an_absurd_alert(replay, model_path):
    """Spark's promise: a bad alert never fails the job (its batch function is the local core)."""
    from earlyia.spark import score_batch

    bad = replay.iloc[[0]].copy()
    bad["objectId"], bad["candid"] = "ZTFtiny", "tiny_1"
    bad["csigmapsf"] = [np.full(len(bad["cjd"].iloc[0]), 1e-170)]
    out = score_batch(
        pd.concat([replay, bad], ignore_index=True), Model.load(model_path), kind="fink"
    )
    assert (out["object_id"] == "ZTFtiny").sum() == 1
    assert out["object_id"].isin(replay["objectId"]).sum() == len(replay)


def test_validation_matches_a_slow_reference():
    """validate_photometry against a per-point reading of its documented rules, on random values."""
    from earlyia.io import table as t

    rng = np.random.default_rng(3)
    n = 4000
    pool = [np.nan, np.inf, -np.inf, 0.0, -1.0, 1e-320, 1e-12, 1e-3, 5.0, 300.0, 1e15, 1e17, 1e300]
    mjd = rng.choice([59000.0, -5.0, 2e6, np.nan, 1e300, 999_999.0], n)
    flux = rng.choice(pool, n)
    err = rng.choice(pool, n)
    det = rng.random(n) < 0.5
    oid = np.array([f"o{i % 700}" for i in range(n)], dtype=object)

    def bad_point(m, f, e, d) -> bool:
        if not (np.isfinite(m) and abs(m) < t.MJD_LIMIT):
            return True
        if np.isfinite(f) and abs(f) >= t.FLUX_LIMIT:
            return True
        if d and not np.isfinite(f):
            return True
        if d or not np.isnan(e):
            if not (np.isfinite(e) and t.FLUX_ERR_FLOOR <= e < t.FLUX_LIMIT):
                return True
            if np.isfinite(f) and abs(f) > t.MAX_SNR * e:
                return True
        return False

    expected = sorted(
        {o for o, m, f, e, d in zip(oid, mjd, flux, err, det, strict=True) if bad_point(m, f, e, d)}
    )
    ids, why = t.validate_photometry(oid, mjd, flux, err, det)
    assert list(ids) == expected and len(why) == len(ids)


# ----------------------------------------------------------------------------------------------
# column types
def _fink_file(path, replay, **columns):
    df = replay.copy()
    for k, v in columns.items():
        df[k] = v(df)
    df.to_parquet(path)
    return path


def test_wrong_column_types_are_named(tmp_path, replay, capsys):
    strings = _fink_file(
        tmp_path / "cjd_strings.parquet",
        replay,
        cjd=lambda d: [[str(x) for x in v] for v in d["cjd"]],
    )
    _one_line_error(
        capsys,
        main(["features", str(strings), "--out", str(tmp_path / "o.parquet")]),
        "'cjd'",
        "numbers",
        "str",
    )
    nested = _fink_file(
        tmp_path / "cjd_nested.parquet", replay, cjd=lambda d: [[list(v)] for v in d["cjd"]]
    )
    _one_line_error(
        capsys,
        main(["convert", str(nested), "--out", str(tmp_path / "o.parquet")]),
        "'cjd'",
        "list of lists",
    )
    floats = _fink_file(
        tmp_path / "oid_float.parquet", replay, objectId=lambda d: np.arange(len(d), dtype=float)
    )
    _one_line_error(
        capsys,
        main(["features", str(floats), "--out", str(tmp_path / "o.parquet")]),
        "'objectId'",
        "strings or integers",
    )
    with pytest.raises(SchemaError, match="'objectId'"):
        read(floats)
    codes = {
        o: 10**15 + k for k, o in enumerate(replay["objectId"].unique())
    }  # integers are ids: their decimal form
    ints = _fink_file(
        tmp_path / "oid_int.parquet",
        replay,
        objectId=lambda d: d["objectId"].map(codes).astype("int64"),
    )
    assert sorted(read(ints).object_ids) == sorted(str(v) for v in codes.values())


def test_cfid_as_float_and_text_columns_in_csv(tmp_path, replay, capsys):
    fl = _fink_file(
        tmp_path / "cfid_float.parquet",
        replay,
        cfid=lambda d: [np.asarray(v, float) for v in d["cfid"]],
    )
    assert read(fl).n_objects == replay["objectId"].nunique()  # integral floats are band numbers
    odd = _fink_file(
        tmp_path / "cfid_odd.parquet",
        replay,
        cfid=lambda d: [np.where(np.arange(len(v)) == 0, 1.5, v) for v in d["cfid"]],
    )
    lc = read(odd)
    assert lc.n_objects == 0 and all("fid=1.5" in p.reason for p in lc.problems)
    csv = tmp_path / "text.csv"
    pd.DataFrame(
        {
            "objectId": ["a", "a", "b", "b"],
            "cjd": ["x", "2459000.5", "2459001.5", "2459002.5"],
            "cfid": [1, 1, 2, 2],
            "cmagpsf": [19, 19, 18, 18.5],
            "csigmapsf": [0.1] * 4,
        }
    ).to_csv(csv, index=False)
    lc = read(csv)
    assert list(lc.object_ids) == ["b"] and "column 'cjd' holds 'x'" in lc.problems[0].reason


def test_a_file_whose_every_object_is_dropped(tmp_path, replay, capsys):
    path = _fink_file(
        tmp_path / "all_bad.parquet",
        replay,
        csigmapsf=lambda d: [np.full(len(v), -1.0) for v in d["csigmapsf"]],
    )
    out = tmp_path / "f.parquet"
    rc = main(["features", str(path), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err and "flux error" in err
    df = pd.read_parquet(out)
    assert len(df) == replay["objectId"].nunique() and not df["valid"].any()
    _one_line_error(
        capsys,
        main(["convert", str(path), "--out", str(tmp_path / "c.parquet")]),
        "every object was dropped",
    )


# ----------------------------------------------------------------------------------------------
# repeated epochs
def test_repeated_epochs_are_counted_once_in_ndethist(replay):
    one = replay[replay["objectId"] == replay["objectId"].iloc[0]].copy()
    doubled = one.copy()
    for c in ("cjd", "cmagpsf", "csigmapsf", "cfid"):
        doubled[c] = [np.concatenate([np.asarray(v), np.asarray(v)]) for v in one[c]]
    plain = lightcurves_from_fink_frame(one.drop(columns="ndethist"), source="plain")
    twice = lightcurves_from_fink_frame(doubled.drop(columns="ndethist"), source="twice")
    # slow reference: distinct (band, time) pairs among the detections of each row
    ref = [
        len({(f, j) for j, m, f in zip(jd, mag, fid, strict=True) if m == m and m is not None})
        for jd, mag, fid in zip(one["cjd"], one["cmagpsf"], one["cfid"], strict=True)
    ]
    assert plain.alerts["ndethist"].tolist() == ref
    assert twice.alerts["ndethist"].tolist() == ref


# ----------------------------------------------------------------------------------------------
# --out
@pytest.mark.parametrize("command", ["score", "features", "convert"])
def test_out_is_checked_before_any_work(tmp_path, replay, model_path, command, capsys):
    src = tmp_path / "alerts.parquet"
    replay.to_parquet(src)
    before = _digest(src)
    link = tmp_path / "link.parquet"
    link.symlink_to(src)
    folder = tmp_path / "folder"
    folder.mkdir()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    extra = ["--model", str(model_path)] if command == "score" else []
    cases = {
        str(src): "is the input",
        str(link): "is the input",
        str(folder): "folder",
        str(a_file / "out.parquet"): "not a folder",
        "/proc/earlyia-test/out.parquet": "cannot write",
    }
    for out, words in cases.items():
        _one_line_error(capsys, main([command, str(src), "--out", out, *extra]), "--out", words)
    # the input given through the link, --out the real file
    _one_line_error(capsys, main([command, str(link), "--out", str(src), *extra]), "is the input")
    assert _digest(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "alerts.parquet",
        "file.txt",
        "folder",
        "link.parquet",
    ]
    assert not any(folder.iterdir())


@pytest.mark.parametrize("command", ["score", "features", "convert"])
def test_a_missing_input_exits_2_before_any_work(tmp_path, replay, model_path, command, capsys):
    src = tmp_path / "alerts.parquet"
    replay.to_parquet(src)
    extra = ["--model", str(model_path)] if command == "score" else []
    out = tmp_path / "new" / "t.parquet"
    rc = main([command, str(src), str(tmp_path / "typo.parquet"), "--out", str(out), *extra])
    _one_line_error(capsys, rc, "typo.parquet", "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "alerts.parquet"
    ]  # no output, not even its folder
    assert (
        main([command, str(src), "--out", str(out), *extra]) in (0, 1) and out.exists()
    )  # a new folder is made


def test_parquet_chunks_regroup_unsorted_objects_without_reading_the_file_whole(
    tmp_path, replay, model_path
):
    """An unsorted file is regrouped through bucket files: chunks keep objects whole and scores
    do not depend on the chunk size (the same rows as reading the file in one chunk)."""
    from earlyia.io.chunks import _aligned_tables

    shuffled = replay.sample(frac=1, random_state=4).reset_index(drop=True)
    path = tmp_path / "shuffled.parquet"
    shuffled.to_parquet(path)
    pf = pq.ParquetFile(path)
    seen: dict[str, int] = {}
    rows = []
    for k, (table, idx) in enumerate(_aligned_tables(path, pf, pf.schema_arrow.names, 97)):
        assert table.num_rows == len(idx)
        assert table.num_rows <= 97 or table.column("objectId").to_pandas().nunique() == 1
        np.testing.assert_array_equal(
            table.column("objectId").to_numpy(zero_copy_only=False),
            shuffled["objectId"].to_numpy()[idx],
        )
        for o in set(table.column("objectId").to_pylist()):
            assert o not in seen
            seen[o] = k
        rows.append(idx)
    assert sorted(np.concatenate(rows).tolist()) == list(range(len(shuffled)))
    model = Model.load(model_path)
    score_files(
        [path], model, tmp_path / "one.parquet", chunk_size=10**6, progress=False, select=False
    )
    score_files(
        [path], model, tmp_path / "many.parquet", chunk_size=97, progress=False, select=False
    )
    one = pd.read_parquet(tmp_path / "one.parquet").set_index("alert_id").sort_index()
    many = pd.read_parquet(tmp_path / "many.parquet").set_index("alert_id").sort_index()
    np.testing.assert_array_equal(one["score"], many["score"])


def test_features_of_inputs_sharing_objects_match_reading_them_together(tmp_path, replay):
    """Streaming features keeps one light curve per object when its alerts are in two files."""
    from earlyia.features.io import features_files

    half = len(replay) // 2
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    replay.iloc[:half].to_parquet(a)
    replay.iloc[half:].to_parquet(b)
    ext = get_extractor("sigmoid", mode="fink")
    features_files([a, b], ext, tmp_path / "f.parquet", chunk_size=50)
    got = pd.read_parquet(tmp_path / "f.parquet").set_index("alert_id").sort_index()
    want = ext.transform(read([a, b]), per="alert").set_index("alert_id").sort_index()
    assert list(got.index) == list(want.index)
    np.testing.assert_array_equal(got[ext.names].to_numpy(), want[ext.names].to_numpy())


# ----------------------------------------------------------------------------------------------
# memory
_PEAK = """
import json, sys
import pyarrow as pa
from earlyia.features import get_extractor
from earlyia.features.io import features_files
from earlyia.model.artifact import Model
from earlyia.score.pipeline import score_files
task, src, model, out = sys.argv[1:5]
m = Model.load(model)
if task == "score":
    score_files([src], m, out, chunk_size=1000, progress=False)
else:
    features_files([src], get_extractor(m.card["extractor"]), out, chunk_size=1000)
print(json.dumps({"arrow_peak": pa.default_memory_pool().max_memory()}))
"""


@pytest.mark.parametrize("task", ["score", "features"])
def test_an_unsorted_file_is_never_decoded_whole(tmp_path, model_path, task):
    """Arrow's peak allocation while scoring (or computing features of) 16 000 unsorted alerts in
    chunks of 1000 stays a fraction of the decoded file: the file streams, it is never held
    whole."""
    import json
    import subprocess
    import sys

    import pyarrow.compute as pc

    pool = pq.read_table(shared("ztf_fink_alerts_pool/ztf_alerts_pool.parquet"))
    pool = pool.select([c for c in pool.column_names if not c.startswith("cutout")])
    copies = []
    for k in range(10):
        oid = pc.binary_join_element_wise(
            pc.cast(pool.column("objectId"), pa.string()), pa.scalar(f"~{k}"), ""
        )
        t = pool.set_column(pool.column_names.index("objectId"), "objectId", oid)
        for col in (
            "candid",
            "cand_candid",
        ):  # new alert ids: the same candid twice is one alert delivered twice
            t = t.set_column(t.column_names.index(col), col, pc.add(t.column(col), k * 2**40))
        copies.append(t)
    table = pa.concat_tables(copies)
    table = table.take(np.random.default_rng(2).permutation(table.num_rows))
    src = tmp_path / "alerts.parquet"
    pq.write_table(table, src, row_group_size=2048)
    whole = table.nbytes
    out = tmp_path / "out.parquet"
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK, task, str(src), str(model_path), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    peak = json.loads(proc.stdout.strip().splitlines()[-1])["arrow_peak"]
    assert pq.read_metadata(out).num_rows >= table.num_rows
    assert peak < 0.6 * whole, (
        f"Arrow peak {peak / 2**20:.0f} MB for a file of {whole / 2**20:.0f} MB decoded"
    )
