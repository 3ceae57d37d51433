"""Contract tests over every registered implementation: readers, feature extractors, query
strategies.

The cases are generated from the registries when the tests are collected, so a newly registered
implementation is tested without editing this file (a reader also needs a sample in
:data:`READER_SAMPLES`, else its test fails). Inputs are small: the whole module runs in seconds.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import fastavro
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from conftest import shared
from earlyia.errors import ConfigError, FormatError, SchemaError
from earlyia.features.base import EXTRACTORS, FeatureExtractor, feature_columns, get_extractor
from earlyia.io import LightCurves, read, readers
from earlyia.io.registry import AVRO_MAGIC, PARQUET_MAGIC
from earlyia.io.table import SURVEY_BANDS
from earlyia.learn.strategies import STRATEGIES

# ------------------------------------------------------------------------------------------------
# readers
#: One real sample per format, under the shared data directory. A reader missing here fails its
#: test.
READER_SAMPLES = {
    "ztf_alert_parquet": "fixtures/fink_ztf/ztf_alerts_51.parquet",
    "rubin_parquet": "external_alert_samples/fink_lsst_transfer/part-1-0-243580376.parquet",
    "elasticc_parquet": "external_alert_samples/fink_science/elasticc_parquet_part-00000.parquet",
    "fink_parquet": "fixtures/fink_ztf/agn_example_aggregated_columns.parquet",
    "rubin_avro": (
        "external_alert_samples/fink_client/elasticc_alert_mjd60674.0512_obj747_src1494043.avro.gz"
    ),
    "ztf_avro": "fixtures/ztf_avro/472263571115115000.avro",
    "plasticc_csv": "fixtures/plasticc/plasticc_lightcurves.csv.gz",
    "snana_dat": "fixtures/snpcc_dat/DES_SN008623.DAT",
    "fink_csv": "ztf_fink_tns_labelled/all_nonIa.csv.gz",
    # formats with no shared file: written once from a shared sample by the ``samples`` fixture
    "earlyia": "fixtures/fink_ztf/ztf_alerts_51.parquet",
    "alert_json": "external_alert_samples/fink_client/lsst_part-2-918301.avro",
}
READERS = list(readers())


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, Path]:
    """Path of each format's sample (the ``earlyia`` one written once from its source)."""
    out = {name: shared(rel) for name, rel in READER_SAMPLES.items()}
    own = tmp_path_factory.mktemp("earlyia-table") / "sample.parquet"
    read(out["earlyia"], format="ztf_alert_parquet").to_parquet(own)
    out["earlyia"] = own
    with open(
        out["alert_json"], "rb"
    ) as fh:  # Rubin alerts as a JSON broker forwards them (one per line)
        alerts = list(fastavro.reader(fh))
    lines = tmp_path_factory.mktemp("alert-json") / "alerts.jsonl"
    lines.write_text("\n".join(json.dumps(a, default=str) for a in alerts) + "\n")
    out["alert_json"] = lines
    return out


def _garbage(folder: Path) -> list[Path]:
    """Files of no format: empty, random bytes, text, and damaged files that start like the real
    formats."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    files = {
        "empty.parquet": b"",
        "noise.avro": noise,
        "text.csv": b"hello,world\nthis,is\nnot,photometry\n",
        "prose.DAT": b"SNID is a word in this sentence, nothing more.\n" * 3,
        "truncated.parquet": PARQUET_MAGIC + noise[:200],
        "truncated.avro": AVRO_MAGIC + noise[:200],
        "noise.csv.gz": gzip.compress(noise),
        "nul.tar": b"\x00" * 1024,
    }
    paths = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    return paths


@pytest.fixture(scope="module")
def garbage(tmp_path_factory) -> list[Path]:
    return _garbage(tmp_path_factory.mktemp("garbage"))


def assert_canonical(lc: LightCurves, source: str) -> None:
    """What every reader's output holds: the table's columns and dtypes, known bands, finite
    sorted times."""
    assert isinstance(lc, LightCurves), source
    assert lc.n_objects >= 1 and lc.n_points >= 1, f"{source}: nothing read"
    assert lc.objects.columns[0] == "object_id", source
    ids = lc.objects["object_id"]
    assert all(isinstance(v, str) and v for v in ids), (
        f"{source}: object ids must be non-empty strings"
    )
    assert ids.is_unique, f"{source}: an object appears twice"
    assert lc.offsets.dtype == np.int64 and len(lc.offsets) == lc.n_objects + 1, source
    assert lc.offsets[0] == 0 and (np.diff(lc.offsets) >= 0).all(), source
    n = lc.n_points
    for name, dtype in (
        ("mjd", np.float64),
        ("flux", np.float64),
        ("flux_err", np.float64),
        ("band", np.int8),
        ("detected", np.bool_),
        ("alert_id", np.int64),
    ):
        arr = getattr(lc, name)
        assert arr.dtype == dtype and arr.shape == (n,), (
            f"{source}: {name} is {arr.dtype}{arr.shape}"
        )
    assert lc.survey in SURVEY_BANDS, f"{source}: unknown survey {lc.survey!r}"
    assert set(lc.bands) <= set(SURVEY_BANDS[lc.survey]), (
        f"{source}: bands {lc.bands} not of {lc.survey}"
    )
    assert ((lc.band >= 0) & (lc.band < len(lc.bands))).all(), f"{source}: band codes out of range"
    assert np.isfinite(lc.mjd).all(), f"{source}: non-finite times"
    assert (np.abs(lc.mjd) < 1e6).all(), f"{source}: times are not MJD"
    for s, e in zip(lc.starts, lc.ends, strict=True):
        assert (np.diff(lc.mjd[s:e]) >= 0).all(), f"{source}: a light curve is not sorted by time"
    # a detection has a measured flux; an error is never negative
    assert np.isfinite(lc.flux[lc.detected]).all(), f"{source}: a detection without a flux"
    err = lc.flux_err[np.isfinite(lc.flux_err)]
    assert (err >= 0).all(), f"{source}: negative flux errors"
    if not lc.alerts.empty:
        assert {"object_index", "alert_id", "mjd"} <= set(lc.alerts.columns), source
        idx = lc.alerts["object_index"].to_numpy()
        assert ((idx >= 0) & (idx < lc.n_objects)).all(), f"{source}: alerts of unknown objects"


@pytest.mark.parametrize("name", READERS)
def test_reader_reads_its_sample_into_the_canonical_table(name, samples):
    if name not in READER_SAMPLES:
        pytest.fail(f"reader {name!r} has no sample: add one to READER_SAMPLES in {__file__}")
    path = samples[name]
    reader = readers()[name]
    assert reader.detect(path) is True, f"{name} does not detect its own sample {path}"
    assert_canonical(reader.read(path), f"{name} on {path}")


@pytest.mark.parametrize("name", READERS)
def test_detect_is_false_on_other_formats(name, samples):
    reader = readers()[name]
    claimed = [other for other in READER_SAMPLES if other != name and reader.detect(samples[other])]
    assert claimed == [], f"{name}'s detector accepts the samples of {claimed}"


@pytest.mark.parametrize("name", READERS)
def test_detect_never_raises_and_refuses_garbage(name, garbage, tmp_path):
    reader = readers()[name]
    for path in [*garbage, tmp_path, tmp_path / "missing.parquet"]:
        assert reader.detect(path) is False, f"{name} detects {path.name}"


@pytest.mark.parametrize("name", READERS)
def test_reading_garbage_raises_a_format_error_naming_the_file(name, garbage):
    reader = readers()[name]
    for path in garbage:
        with pytest.raises((FormatError, SchemaError)) as info:
            reader.read(path)
        assert str(path) in str(info.value), f"{name} on {path.name}: {info.value}"


# ------------------------------------------------------------------------------------------------
# extractors
EXTRACTOR_NAMES = [name for name, _ in EXTRACTORS.items()]


@pytest.fixture(scope="module")
def lightcurves() -> dict[str, LightCurves]:
    """Small tables of two surveys (6 ZTF objects, the 5 ELAsTiCC ones)."""
    ztf = read(shared(READER_SAMPLES["ztf_alert_parquet"])).take(np.arange(6))
    lsst = read(shared(READER_SAMPLES["elasticc_parquet"]))
    return {"ZTF": ztf, "LSST": lsst}


def _features(ext: FeatureExtractor, lc: LightCurves, starts=None, ends=None):
    X, ok, reason = ext.extract_lc(
        lc, starts, ends, object_index=None if starts is None else np.arange(len(starts))
    )
    return np.asarray(X, np.float64), np.asarray(ok, bool), np.asarray(reason, object)


@pytest.fixture(params=EXTRACTOR_NAMES)
def extractor(request) -> FeatureExtractor:
    return get_extractor(request.param)


@pytest.mark.parametrize("survey", ["ZTF", "LSST"])
def test_extractor_names_match_its_output(extractor, survey, lightcurves):
    lc = lightcurves[survey]
    X, ok, reason = _features(extractor, lc)
    names = list(extractor.names)
    assert len(names) == len(set(names)), f"{extractor.name}: duplicate feature names"
    assert X.shape == (lc.n_objects, len(names)) and ok.shape == reason.shape == (lc.n_objects,)
    assert all(r == "" for r in reason[ok]) and all(
        isinstance(r, str) and r for r in reason[~ok]
    ), reason
    table = extractor.transform(lc)
    assert feature_columns(table) == names
    np.testing.assert_array_equal(table[names].to_numpy(np.float64), X)


@pytest.mark.parametrize("survey", ["ZTF", "LSST"])
def test_extractor_batch_equals_one_object_at_a_time(extractor, survey, lightcurves):
    lc = lightcurves[survey]
    X, ok, reason = _features(extractor, lc)
    for i in range(lc.n_objects):
        Xi, oki, whyi = _features(extractor, lc.take([i]))
        np.testing.assert_allclose(
            Xi[0],
            X[i],
            rtol=1e-12,
            atol=0,
            equal_nan=True,
            err_msg=f"{extractor.name}: object {i} differs alone and in the batch",
        )
        assert (oki[0], whyi[0]) == (ok[i], reason[i])


def test_extractor_is_deterministic(extractor, lightcurves):
    lc = lightcurves["ZTF"]
    first, again = _features(extractor, lc), _features(get_extractor(extractor.name), lc)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_extractor_config_round_trip(extractor, lightcurves):
    lc = lightcurves["ZTF"]
    X = _features(extractor, lc)[0]
    for rebuilt in (
        get_extractor(extractor.config()),
        get_extractor(extractor.name, **extractor.get_params()),
    ):
        assert type(rebuilt) is type(extractor) and rebuilt.get_params() == extractor.get_params()
        assert list(rebuilt.names) == list(extractor.names)
        np.testing.assert_array_equal(_features(rebuilt, lc)[0], X)


def test_extractor_on_empty_and_one_point_light_curves(extractor, lightcurves):
    lc = lightcurves["ZTF"]
    first_detection = int(lc.starts[0] + np.argmax(lc.detected[lc.starts[0] : lc.ends[0]]))
    starts = np.array([lc.starts[0], first_detection], np.int64)
    ends = np.array([lc.starts[0], first_detection + 1], np.int64)
    X, ok, reason = _features(extractor, lc, starts, ends)
    assert X.shape == (2, len(extractor.names))
    assert not ok[0] and isinstance(reason[0], str) and reason[0], (
        "an empty light curve must be an invalid row"
    )
    assert ok[1] or reason[1], "an invalid row must say why"
    assert not np.isinf(X).any(), f"{extractor.name}: infinite features"


def test_extractor_refuses_an_unknown_parameter(extractor):
    with pytest.raises(ConfigError, match="no_such_parameter"):
        get_extractor(extractor.name, no_such_parameter=1)
    with pytest.raises(ConfigError, match="no_such_parameter"):
        get_extractor({"extractor": extractor.name, "params": {"no_such_parameter": 1}})


# ------------------------------------------------------------------------------------------------
# strategies
STRATEGY_NAMES = STRATEGIES.names()


@pytest.fixture(scope="module")
def pool():
    """A fitted forest (a committee), its pool of 40 candidates, and 10 of them marked as
    labelled."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 4))
    y = X[:, 0] + 0.5 * rng.normal(size=60) > 0
    clf = RandomForestClassifier(n_estimators=7, max_depth=3, random_state=0).fit(X[:20], y[:20])
    exclude = np.zeros(40, bool)
    exclude[rng.choice(40, 10, replace=False)] = True
    return clf, X[20:], X[:20], exclude


@pytest.mark.parametrize("name", STRATEGY_NAMES)
@pytest.mark.parametrize("n", [1, 5])
def test_strategy_returns_n_distinct_pool_indices_never_a_labelled_one(name, n, pool):
    clf, X_pool, X_lab, exclude = pool
    idx, scores = STRATEGIES.get(name)(
        clf, X_pool, n_instances=n, random_state=3, exclude=exclude, X_labelled=X_lab
    )
    idx = np.asarray(idx)
    assert idx.dtype.kind == "i" and len(idx) == n and len(np.unique(idx)) == n, idx
    assert ((idx >= 0) & (idx < len(X_pool))).all()
    assert not exclude[idx].any(), f"{name} returned excluded (labelled) rows {idx[exclude[idx]]}"
    assert np.asarray(scores).shape == (len(X_pool),)


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_strategy_takes_the_whole_pool_when_asked(name, pool):
    clf, X_pool, X_lab, _ = pool
    idx, _ = STRATEGIES.get(name)(
        clf, X_pool, n_instances=len(X_pool), random_state=0, X_labelled=X_lab
    )
    assert sorted(np.asarray(idx).tolist()) == list(range(len(X_pool)))


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_strategy_is_deterministic_for_a_seed(name, pool):
    clf, X_pool, X_lab, exclude = pool
    strategy = STRATEGIES.get(name)
    runs = [
        strategy(clf, X_pool, n_instances=4, random_state=seed, exclude=exclude, X_labelled=X_lab)[
            0
        ]
        for seed in (7, 7)
    ]
    np.testing.assert_array_equal(*runs)


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_strategy_refuses_more_than_the_pool(name, pool):
    clf, X_pool, _, _ = pool
    for n in (len(X_pool) + 1, 0):
        with pytest.raises(
            ConfigError, match=rf"n_instances .*pool size \({len(X_pool)} candidates\), got {n}"
        ):
            STRATEGIES.get(name)(clf, X_pool, n_instances=n, random_state=0)


def test_every_registry_is_covered():
    """The parametrisations above were generated from the registries (none is empty)."""
    assert READERS and EXTRACTOR_NAMES and STRATEGY_NAMES
    assert pd.Index(READERS).is_unique
