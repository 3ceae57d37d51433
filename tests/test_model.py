"""Model artifacts: round trip, tamper detection, feature checks, no pickle, training options."""

from __future__ import annotations

import inspect
import io
import json
import re
import zipfile

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import RandomForestClassifier
from sklearn.isotonic import IsotonicRegression

from earlyia.errors import (
    ConfigError,
    DataNotFoundError,
    FeatureMismatchError,
    InputError,
    IntegrityError,
    ModelError,
)
from earlyia.labels import TypeMap
from earlyia.model import artifact, modelfile, operating
from earlyia.model.artifact import Model, content_hash
from earlyia.model.recipe import Recipe
from earlyia.model.training import train_model

NAMES = ["f_a", "f_b", "f_c"]
CONFIG = {"extractor": "toy", "params": {"k": 1}, "names": NAMES}


def _table(n=240, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    types = np.where(X[:, 0] + 0.4 * rng.normal(size=n) > 0.3, "SN Ia", "SN II")
    types[rng.random(n) < 0.1] = "SN"  # vague: unlabelled, must be left out
    df = pd.DataFrame(X, columns=NAMES)
    df.insert(0, "object_id", [f"ZTF{i:05d}" for i in range(n)])
    df.insert(1, "alert_id", [f"a{i}" for i in range(n)])
    df["label"] = types
    return df


@pytest.fixture(scope="module")
def trained():
    return train_model(_table(), CONFIG, Recipe(n_estimators=30), random_state=3)


def test_round_trip(tmp_path, trained):
    path = trained.save(tmp_path / "m.eia")
    loaded = Model.load(path)
    assert loaded.hash == trained.hash
    assert loaded.card == trained.card
    X = np.random.default_rng(1).normal(size=(500, 3))
    np.testing.assert_array_equal(loaded.predict_proba(X), trained.predict_proba(X))
    # the card carries what the brief asks for
    card = loaded.card
    assert card["features"] == NAMES and card["extractor"] == CONFIG
    assert card["positive_class"] == ["SN Ia"] and card["type_map"] == TypeMap().config()
    tr = card["training"]
    df = _table()
    labelled = df[df["label"] != "SN"]
    assert tr["n_samples"] == len(labelled) and tr["object_ids"] == labelled["object_id"].tolist()
    assert tr["labels"] == (labelled["label"] == "SN Ia").astype(int).tolist()
    assert loaded.prohibited_object_ids() == set(labelled["object_id"])
    assert {"numpy", "scikit-learn", "earlyia"} <= set(card["versions"])
    assert set(card["metrics"]["oob"]) >= {"accuracy", "efficiency", "purity", "fom"}


def test_matches_sklearn_forest(trained):
    df = _table()
    df = df[df["label"] != "SN"]
    rf = RandomForestClassifier(n_estimators=30, random_state=3, bootstrap=True, oob_score=True)
    rf.fit(df[NAMES].to_numpy(), (df["label"] == "SN Ia").to_numpy())
    X = np.random.default_rng(2).normal(size=(300, 3))
    np.testing.assert_allclose(trained.predict_proba(X), rf.predict_proba(X), atol=1e-12)
    # the OOB metrics are the forest's own out-of-bag predictions
    oob = rf.oob_decision_function_[:, 1]
    ok = np.isfinite(oob)
    y = (df["label"] == "SN Ia").to_numpy()[ok]
    assert trained.card["metrics"]["oob"]["accuracy"] == pytest.approx(
        ((oob[ok] > 0.5) == y).mean()
    )


def test_dataframe_columns_matched_by_name(trained):
    df = _table(50, seed=5)
    shuffled = df[["label", "f_c", "object_id", "f_a", "f_b"]]
    np.testing.assert_array_equal(
        trained.predict_proba(shuffled), trained.predict_proba(df[NAMES].to_numpy())
    )
    with pytest.raises(FeatureMismatchError, match="f_b"):
        trained.predict_proba(df[["f_a", "f_c"]])


def test_flip_a_byte_inside_the_trees_is_refused(tmp_path, trained):
    path = trained.save(tmp_path / "m.eia")
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("trees.npz")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start + info.compress_size // 2] ^= 0x10
    bad = tmp_path / "bad.eia"
    bad.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match=re.escape(str(bad))):
        Model.load(bad)


def test_any_byte_flip_is_refused_or_harmless(tmp_path, trained):
    """Every flipped byte either makes the load fail, or changes nothing the model computes (zip
    header padding)."""
    path = trained.save(tmp_path / "m.eia")
    raw = path.read_bytes()
    X = np.random.default_rng(4).normal(size=(50, 3))
    expected = trained.predict_proba(X)
    rng = np.random.default_rng(0)
    positions = np.unique(
        np.concatenate(
            [rng.integers(0, len(raw), 150), np.arange(0, 64), np.arange(len(raw) - 64, len(raw))]
        )
    )
    refused = 0
    for pos in positions:
        b = bytearray(raw)
        b[pos] ^= 0x01
        p = tmp_path / "flip.eia"
        p.write_bytes(bytes(b))
        try:
            m = Model.load(p)
        except ModelError:
            refused += 1
            continue
        assert m.hash == trained.hash
        np.testing.assert_array_equal(m.predict_proba(X), expected)
    assert refused > len(positions) // 2


def _rewrite(path, out, card=None, trees=None):
    """A valid zip (correct CRCs) with edited content: only the content hash can catch it."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    if card is not None:
        members["card.json"] = json.dumps(card).encode()
    if trees is not None:
        buf = io.BytesIO()
        np.savez(buf, **trees)
        members["trees.npz"] = buf.getvalue()
    with zipfile.ZipFile(out, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    return out


def test_edited_card_or_trees_are_refused(tmp_path, trained):
    path = trained.save(tmp_path / "m.eia")
    card = json.loads(json.dumps(trained.card))
    card["positive_class"] = ["SN II"]
    with pytest.raises(IntegrityError, match="modified or corrupted"):
        Model.load(_rewrite(path, tmp_path / "c.eia", card=card))
    arrays = trained.ensemble.arrays()
    arrays["value"] = 1.0 - arrays["value"]
    with pytest.raises(IntegrityError, match="modified or corrupted"):
        Model.load(_rewrite(path, tmp_path / "t.eia", trees=arrays))
    # a pickled (object) array is refused before anything else, even in a well-formed zip
    arrays = trained.ensemble.arrays()
    arrays["value"] = np.array([{"x": 1}], dtype=object)
    with pytest.raises(IntegrityError, match="pickle"):
        Model.load(_rewrite(path, tmp_path / "p.eia", trees=arrays))
    # an extra member (e.g. a pickle smuggled in) is refused
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("extra.pkl", b"\x80\x04.")
    with pytest.raises(IntegrityError, match="unexpected members"):
        Model.load(path)


def test_not_a_model(tmp_path):
    p = tmp_path / "model.obj.xz"
    p.write_bytes(b"\xfd7zXZ\x00 not a zip")
    with pytest.raises(ModelError, match="from_fink"):
        Model.load(p)
    with pytest.raises(DataNotFoundError, match="not found"):
        Model.load(tmp_path / "absent.eia")


def test_feature_mismatch_names_the_feature(trained):
    trained.check_features(NAMES)
    with pytest.raises(FeatureMismatchError, match="missing feature") as e:
        trained.check_features(["f_a", "f_x", "f_c"])
    assert "f_b" in str(e.value) and "f_x" in str(e.value)
    with pytest.raises(
        FeatureMismatchError, match="feature 1 is 'f_c' in the input but 'f_b' in the model"
    ):
        trained.check_features(["f_a", "f_c", "f_b"])
    with pytest.raises(FeatureMismatchError, match="params"):
        trained.check_extractor({**CONFIG, "params": {"k": 2}})
    trained.check_extractor(dict(CONFIG))


def test_no_pickle_anywhere(tmp_path, trained):
    path = trained.save(tmp_path / "m.eia")
    with zipfile.ZipFile(path) as zf:
        assert set(zf.namelist()) <= {"card.json", "trees.npz", "calibration.npz"}
        json.loads(zf.read("card.json"))
        with zipfile.ZipFile(io.BytesIO(zf.read("trees.npz"))) as inner:
            assert all(n.endswith(".npy") for n in inner.namelist())
        with np.load(io.BytesIO(zf.read("trees.npz")), allow_pickle=False) as npz:
            assert all(npz[k].dtype != object for k in npz.files)
    source = inspect.getsource(artifact) + inspect.getsource(modelfile)
    assert "import pickle" not in source and "pickle.load" not in source
    loads = [line for line in source.splitlines() if "np.load(" in line]
    assert all(
        "allow_pickle=False" in args for args in loads
    )  # the loader itself parses .npy headers, no np.load


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_calibration(tmp_path, method):
    df = _table(400, seed=7)
    m = train_model(df, CONFIG, Recipe(n_estimators=40, calibrate=method), random_state=0)
    raw = train_model(df, CONFIG, Recipe(n_estimators=40), random_state=0)
    X = np.random.default_rng(3).normal(size=(400, 3))
    p_raw = raw.predict_proba(X)[:, 1]
    p_cal = m.predict_proba(X)[:, 1]
    assert np.all((p_cal >= 0) & (p_cal <= 1))
    assert np.all(
        np.diff(p_cal[np.argsort(p_raw, kind="stable")]) >= -1e-12
    )  # monotone in the raw score
    # reference: refit the map on the forest's out-of-bag probabilities with scikit-learn
    lab = df[df["label"] != "SN"]
    rf = RandomForestClassifier(n_estimators=40, random_state=0, oob_score=True).fit(
        lab[NAMES].to_numpy(), lab["label"] == "SN Ia"
    )
    oob = rf.oob_decision_function_[:, 1]
    ok = np.isfinite(oob)
    y = (lab["label"] == "SN Ia").to_numpy()[ok]
    if method == "isotonic":
        ref = (
            IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip")
            .fit(oob[ok], y)
            .predict(p_raw)
        )
        np.testing.assert_allclose(p_cal, ref, atol=1e-12)
    else:
        a, b = m.calibration["ab"]
        np.testing.assert_allclose(p_cal, 1 / (1 + np.exp(a * p_raw + b)), atol=1e-12)
        assert a < 0  # a higher forest probability means a higher calibrated one
    loaded = Model.load(m.save(tmp_path / "c.eia"))
    np.testing.assert_array_equal(loaded.predict_proba(X), m.predict_proba(X))
    assert loaded.card["calibration"]["method"] == method


def test_training_options():
    df = _table()
    same = train_model(df, CONFIG, Recipe(n_estimators=10), random_state=11)
    again = train_model(df, CONFIG, Recipe(n_estimators=10), random_state=11)
    for k, v in same.ensemble.arrays().items():
        np.testing.assert_array_equal(v, again.ensemble.arrays()[k])
    ids = df["alert_id"].iloc[::3].tolist()
    sub = train_model(df, CONFIG, Recipe(n_estimators=10), sample_ids=ids)
    expected = df[df["alert_id"].isin(ids) & (df["label"] != "SN")]
    assert sub.card["training"]["alert_ids"] == expected["alert_id"].tolist()
    with pytest.raises(InputError, match="none of the"):
        train_model(df, CONFIG, Recipe(n_estimators=5), sample_ids=["nope"])
    sub = train_model(df, CONFIG, Recipe(n_estimators=5), type_map=TypeMap(positive=("SN II",)))
    assert sub.card["positive_class"] == ["SN II"]
    assert sum(sub.card["training"]["labels"]) == int((df["label"] == "SN II").sum())
    with pytest.raises(InputError, match="both classes"):
        train_model(df[df["label"] != "SN Ia"], CONFIG, Recipe(n_estimators=5))
    with pytest.raises(FeatureMismatchError, match="f_c"):
        train_model(df.drop(columns="f_c"), CONFIG, Recipe(n_estimators=5))
    numeric = df.assign(
        label=np.where(df["label"] == "SN Ia", 1, np.where(df["label"] == "SN", -1, 0)), valid=True
    )
    numeric.loc[:9, "valid"] = False
    m = train_model(numeric, CONFIG, Recipe(n_estimators=5))
    assert m.card["training"]["n_samples"] == int(
        ((numeric["label"] >= 0) & numeric["valid"]).sum()
    )


def test_content_hash_covers_everything(trained):
    arrays = {f"trees/{k}": v for k, v in trained.ensemble.arrays().items()}
    assert content_hash(trained.card, arrays) == trained.hash
    card = dict(trained.card, parent="x")
    assert content_hash(card, arrays) != trained.hash
    arrays["trees/threshold"] = arrays["trees/threshold"] + 1e-9
    assert content_hash(trained.card, arrays) != trained.hash


def test_no_pickle_in_the_package_outside_the_pinned_fink_loader():
    from pathlib import Path

    import earlyia

    root = Path(earlyia.__file__).parent
    offenders = []
    for f in root.rglob("*.py"):
        if f.relative_to(root).as_posix() == "model/fink_pickle.py":
            continue
        text = f.read_text()
        if (
            re.search(
                r"^\s*(import pickle|from pickle import|import joblib|import cloudpickle)",
                text,
                re.M,
            )
            or "allow_pickle=True" in text
        ):
            offenders.append(str(f.relative_to(root)))
    assert offenders == []


def test_grouped_held_out_metrics_when_objects_repeat():
    """Alerts of one object are near copies: out-of-bag looks great, folds by object show there
    is no signal."""
    from sklearn.model_selection import GroupKFold

    rng = np.random.default_rng(5)
    n_obj, per = 60, 5
    centre = rng.normal(size=(n_obj, 3))
    X = np.repeat(centre, per, axis=0) + 0.01 * rng.normal(size=(n_obj * per, 3))
    lab = np.repeat(
        np.where(rng.random(n_obj) < 0.5, "SN Ia", "SN II"), per
    )  # labels unrelated to features
    df = pd.DataFrame(X, columns=NAMES).assign(
        object_id=np.repeat([f"o{i}" for i in range(n_obj)], per), label=lab
    )
    m = train_model(df, CONFIG, Recipe(n_estimators=40, calibrate="isotonic"), random_state=0)
    met = m.card["metrics"]
    assert met["oob"]["accuracy"] > 0.85 and "optimistic" in met["oob"]["note"]
    assert met["grouped_cv"]["accuracy"] < 0.7 and met["grouped_cv"]["folds"] == 5
    assert "grouped" in m.card["calibration"]["fitted_on"]
    # reference: the same folds by hand
    y = lab == "SN Ia"
    oof = np.zeros(len(y))
    for tr, te in GroupKFold(5).split(X, y, df["object_id"]):
        f = RandomForestClassifier(n_estimators=40, random_state=0).fit(X[tr], y[tr])
        oof[te] = f.predict_proba(X[te])[:, 1]
    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(oof, y)
    assert met["grouped_cv"]["accuracy"] == pytest.approx(((iso.predict(oof) > 0.5) == y).mean())
    no_cv = train_model(df, CONFIG, Recipe(n_estimators=10, cv_folds=0))
    assert "grouped_cv" not in no_cv.card["metrics"]


def test_object_weights_make_every_object_count_once():
    # object A is replayed at 30 alerts, the others once: with object weights the forest equals one
    # trained on the same rows with explicit weights 1/30 and 1, and differs from the unweighted
    # forest
    df = _table(n=120, seed=5)
    rep = pd.concat([df.iloc[[0]]] * 29, ignore_index=True)
    rep["alert_id"] = [f"rep{i}" for i in range(len(rep))]
    big = pd.concat([df, rep], ignore_index=True)
    weighted = train_model(
        big, CONFIG, Recipe(n_estimators=20, object_weights=True, cv_folds=0), random_state=1
    )
    plain = train_model(big, CONFIG, Recipe(n_estimators=20, cv_folds=0), random_state=1)
    usable = big[big["label"] != "SN"]
    X = usable[NAMES].to_numpy()
    y = usable["label"].to_numpy() == "SN Ia"
    w = 1.0 / usable["object_id"].map(usable["object_id"].value_counts()).to_numpy(float)
    ref = RandomForestClassifier(20, random_state=1, oob_score=True).fit(X, y, sample_weight=w)
    grid = np.random.default_rng(2).normal(size=(300, 3))
    np.testing.assert_allclose(weighted.predict_proba(grid)[:, 1], ref.predict_proba(grid)[:, 1])
    assert not np.allclose(weighted.predict_proba(grid), plain.predict_proba(grid))
    assert weighted.card["classifier"]["object_weights"] is True
    balanced = train_model(
        df, CONFIG, Recipe(n_estimators=10, class_weight="balanced"), random_state=1
    )
    assert balanced.card["classifier"]["params"]["class_weight"] == "balanced"
    with pytest.raises(ConfigError, match="recipe setting class_weight"):
        Recipe(n_estimators=10, class_weight="heavy")


def _slow_operating_point(obj, det, pos, score, n, min_purity):
    """Brute force: every threshold (highest first), objects flagged when any alert with <= n
    detections is above it."""
    best = (np.nan, 0.0, np.nan)
    n_pos = len({o for o, p in zip(obj, pos, strict=True) if p})
    for t in sorted(
        {np.nextafter(s, -np.inf) for s in score}, reverse=True
    ):  # ties: the highest threshold
        flagged = {o for o, d, s in zip(obj, det, score, strict=True) if d <= n and s > t}
        positives = {o for o, p in zip(obj, pos, strict=True) if p}
        tp, fp = len(flagged & positives), len(flagged - positives)
        if tp + fp and tp / (tp + fp) >= min_purity and tp / n_pos > best[1]:
            best = (t, tp / n_pos, tp / (tp + fp))
    return best


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(3, 30), st.sampled_from([0.6, 0.8]))
def test_operating_points_match_a_brute_force_reference(seed, n_obj, min_purity):
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 6, n_obj)
    obj = np.repeat([f"o{i}" for i in range(n_obj)], per)
    pos = np.repeat(rng.random(n_obj) < 0.5, per)
    det = np.concatenate([np.arange(1, k + 1) * rng.integers(1, 6) for k in per])
    score = np.round(rng.random(len(obj)) * 0.6 + 0.4 * pos, 2)  # ties on purpose
    ops = operating.operating_points(
        obj, det, pos, score, targets=((5, min_purity), (20, min_purity))
    )
    if not pos.any():
        assert ops == []
        return
    for op, n in zip(ops, (5, 20), strict=True):
        t, eff, pur = _slow_operating_point(obj, det, pos, score, n, min_purity)
        if np.isnan(t):
            assert op["efficiency"] == 0.0
            continue
        assert op["efficiency"] == pytest.approx(eff) and op["purity"] == pytest.approx(pur)
        # the threshold reproduces the point when applied
        flagged = {
            o for o, d, s in zip(obj, det, score, strict=True) if d <= n and s > op["threshold"]
        }
        tp = len(flagged & set(obj[pos]))
        assert tp / len(set(obj[pos])) == pytest.approx(eff)


def test_card_records_operating_points_from_grouped_scores(tmp_path):
    """Replayed alerts (object_id + ndethist): the card carries the purity >= 0.8 thresholds,
    estimated on held-out objects only, and they survive saving."""
    rng = np.random.default_rng(11)
    n_obj, per = 120, 4
    centre = rng.normal(size=(n_obj, 3))
    ia = centre[:, 0] + 0.5 * rng.normal(size=n_obj) > 0
    X = np.repeat(centre, per, axis=0) + 0.3 * rng.normal(size=(n_obj * per, 3))
    df = pd.DataFrame(X, columns=NAMES).assign(
        object_id=np.repeat([f"o{i}" for i in range(n_obj)], per),
        ndethist=np.tile(np.arange(3, 3 + per) * 3, n_obj),
        label=np.repeat(np.where(ia, "SN Ia", "SN II"), per),
    )
    m = train_model(df, CONFIG, Recipe(n_estimators=30), random_state=0)
    ops = m.card["operating_points"]
    assert [(o["max_detections"], o["min_purity"]) for o in ops] == [(10, 0.8), (20, 0.8)]
    assert all(
        o["purity"] >= 0.8 and 0 < o["efficiency"] <= 1 and "grouped" in o["estimated_on"]
        for o in ops
    )
    assert Model.load(m.save(tmp_path / "m.eia")).card["operating_points"] == ops
    # without a detections column there is no replay to estimate them on
    assert (
        train_model(
            df.drop(columns="ndethist"), CONFIG, Recipe(n_estimators=10), random_state=0
        ).card["operating_points"]
        == []
    )
