"""Model cards record their survey and bands; alerts of another survey are refused unless asked
for."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import shared
from earlyia.cli.main import main
from earlyia.features import get_extractor
from earlyia.model.artifact import Model
from earlyia.model.recipe import Recipe
from earlyia.model.shipped import default_model_path
from earlyia.model.survey import SurveyMismatchError, card_survey, check_survey, survey_of_bands
from earlyia.model.training import train_model

ELASTICC = (
    "elasticc_fink_ia_ii/ftransfer_elasticc_2023-02-08_902820/classId=111/part-0-1000.parquet"
)
ZTF_ALERTS = "external_alert_samples/fink_client/ZTF19acihgng.avro"


def _tiny_model(extractor: str, **kw) -> Model:
    ext = get_extractor(extractor)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, len(ext.names)))
    df = pd.DataFrame(X, columns=ext.names).assign(
        object_id=[f"o{i}" for i in range(40)], label=[1, 0] * 20
    )
    return train_model(df, ext.config(), Recipe(n_estimators=3, cv_folds=0), **kw)


def test_cards_record_the_survey_and_bands():
    ztf = _tiny_model("early")
    assert (ztf.card["survey"], ztf.card["bands"]) == ("ZTF", ["g", "r"])
    lsst = _tiny_model("lsst_early")
    assert lsst.card["survey"] == "LSST" and set(lsst.card["bands"]) == set("ugrizY")
    # the data's survey wins over the extractor's guess (an early model trained on DES light curves
    # is a DES model)
    des = _tiny_model("early", survey="DES", bands=["g", "r", "i", "z"])
    assert (des.card["survey"], des.card["bands"]) == ("DES", ["g", "r", "i", "z"])


def test_older_cards_get_the_survey_from_their_bands():
    """Cards written before the fields existed: inferred from the extractor's bands, else its
    name."""
    assert card_survey({"extractor": {"extractor": "early", "params": {"bands": ["g", "r"]}}}) == (
        "ZTF",
        ["g", "r"],
    )
    assert (
        card_survey(
            {"extractor": {"extractor": "sigmoid_lsst", "params": {"bands": list("ugrizY")}}}
        )[0]
        == "LSST"
    )
    assert card_survey({"extractor": {"extractor": "sigmoid", "params": {"mode": "fink"}}}) == (
        "ZTF",
        ["g", "r"],
    )
    assert card_survey(
        {"extractor": {"extractor": "rainbow", "params": {"bands": None, "survey": None}}}
    ) == (None, None)
    assert (
        survey_of_bands(["g", "r"]) == "ZTF"
        and survey_of_bands(["g", "y"]) == "LSST"
        and survey_of_bands([]) is None
    )
    # g, r and i alone could be either survey: unknown, so nothing is refused
    assert card_survey(
        {"extractor": {"extractor": "sigmoid", "params": {"bands": ["g", "r", "i"]}}}
    ) == (None, ["g", "r", "i"])
    old = {"extractor": {"extractor": "early", "params": {"bands": ["g", "r"]}}, "hash": "ab" * 32}
    with pytest.raises(SurveyMismatchError, match=r"LSST.*trained on ZTF.*--allow-survey-mismatch"):
        check_survey(old, "LSST")
    assert "scored anyway" in check_survey(old, "LSST", allow=True)
    assert check_survey(old, "ztf") is None and check_survey(old, None) is None
    lsst_card = {"extractor": {"extractor": "lsst_early", "params": {"bands": list("grizuY")}}}
    with pytest.raises(SurveyMismatchError, match=r"ZTF.*trained on LSST"):
        check_survey(lsst_card, "ZTF")


def test_scoring_rubin_alerts_with_the_ztf_model_is_refused(tmp_path, capsys):
    """The shipped ZTF model given ELAsTiCC (LSST) alerts: exit 2, one line naming both surveys
    and the option, no output file; with --allow-survey-mismatch it scores them and warns."""
    alerts = shared(ELASTICC)
    out = tmp_path / "s.parquet"
    assert main(["score", str(alerts), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    line = [ln for ln in err.splitlines() if "error" in ln]
    assert (
        len(line) == 1
        and "alerts of LSST" in line[0]
        and "trained on ZTF" in line[0]
        and "--allow-survey-mismatch" in line[0]
    )
    assert "Traceback" not in err and not out.exists() and not list(tmp_path.iterdir())
    code = main(["score", str(alerts), "--out", str(out), "--allow-survey-mismatch"])
    err = capsys.readouterr().err
    assert code in (0, 1) and out.exists() and len(pd.read_parquet(out)) > 0
    assert "warning" in err and "scored anyway" in err


def test_score_without_model_uses_the_shipped_model_and_says_so(tmp_path, capsys):
    alerts = shared(ZTF_ALERTS)
    out = tmp_path / "s.parquet"
    assert main(["score", str(alerts), "--out", str(out)]) in (0, 1)
    err = capsys.readouterr().err
    said = [ln for ln in err.splitlines() if "shipped default model" in ln]
    shipped = Model.load(default_model_path())
    assert len(said) == 1 and shipped.hash[:12] in said[0] and "ZTF" in said[0]
    import json

    import pyarrow.parquet as pq

    meta = json.loads(pq.read_schema(out).metadata[b"earlyia.scores"])
    assert meta["model_hash"] == shipped.hash


def test_tonight_refuses_another_surveys_alerts_too(tmp_path, capsys):
    alerts = shared(ELASTICC)
    out = tmp_path / "tonight"
    assert main(["tonight", str(alerts), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "alerts of LSST" in err and "--allow-survey-mismatch" in err and "Traceback" not in err
    assert not (out / "index.html").exists() and not (out / "scores.parquet").exists()
