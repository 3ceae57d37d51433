"""Which survey a model was trained on, which survey an alert table comes from, and refusing to mix
them.

Why: a ZTF model (g and r only, ZTF's cadence and depth, SIMBAD and ``ndethist`` cuts) given Rubin
alerts computes features from g and r alone and scores them with numbers that mean nothing, without
any error; the same holds the other way round. The card records ``survey`` and ``bands``; cards
written before those fields existed get them inferred from the extractor's bands (``u``, ``z`` or
``Y``: LSST; only ``g`` and ``r``: ZTF; ``g``, ``r``, ``i`` could be either, so nothing is refused)
or, without bands, from the extractor's name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from earlyia.errors import FeatureMismatchError

#: Bands only Rubin has among the surveys earlyia reads (ZTF: g, r, i).
LSST_ONLY_BANDS = frozenset({"u", "z", "Y", "y"})
#: Bands that only ZTF models use alone (ZTF's i band is rare; g, r, i alone could be Rubin's too).
ZTF_BANDS = frozenset({"g", "r"})
#: Extractors made for one survey (when a card lists no bands).
EXTRACTOR_SURVEY = {"early": "ZTF", "sigmoid": "ZTF", "lsst_early": "LSST", "sigmoid_lsst": "LSST"}
#: What a survey's alerts carry when nothing more precise is known.
DEFAULT_BANDS = {"ZTF": ["g", "r"], "LSST": ["u", "g", "r", "i", "z", "Y"]}


class SurveyMismatchError(FeatureMismatchError):
    """Alerts of another survey than the one a model was trained on."""


def survey_of_bands(bands: Sequence[str] | None) -> str | None:
    """``LSST`` when the bands include u, z or Y, ``ZTF`` when they are among g and r, else None
    (ambiguous)."""
    found = {str(b) for b in bands or ()}
    if not found:
        return None
    if found & LSST_ONLY_BANDS:
        return "LSST"
    if found <= ZTF_BANDS:
        return "ZTF"
    return None


def card_survey(card: Mapping) -> tuple[str | None, list[str] | None]:
    """The survey and bands of a model card: its own fields, else inferred from its extractor
    (None: unknown)."""
    extractor = card.get("extractor") or {}
    params = extractor.get("params") or {}
    bands = card.get("bands") or params.get("bands")
    bands = [str(b) for b in bands] if isinstance(bands, (list, tuple)) and bands else None
    survey = card.get("survey") or params.get("survey")
    if not survey:  # from the bands; from the extractor's name only when the card lists none
        survey = (
            survey_of_bands(bands)
            if bands
            else EXTRACTOR_SURVEY.get(str(extractor.get("extractor", "")))
        )
    survey = str(survey).upper() if survey else None
    if bands is None and survey in DEFAULT_BANDS:
        bands = list(DEFAULT_BANDS[survey])
    return survey, bands


def data_survey(lc) -> str | None:
    """The survey of a light-curve table: its ``survey``, else the one its measured bands imply
    (None: unknown)."""
    if getattr(lc, "survey", ""):
        return str(lc.survey).upper()
    codes = np.unique(np.asarray(lc.band)) if len(lc.band) else []
    return survey_of_bands([lc.bands[int(c)] for c in codes if 0 <= int(c) < len(lc.bands)])


def check_survey(
    card: Mapping, survey: str | None, *, allow: bool = False, source: str = ""
) -> str | None:
    """Refuse alerts of ``survey`` for a model trained on another survey
    (:class:`SurveyMismatchError`).

    ``allow``: return the warning to print instead. None when the surveys agree or either is
    unknown.
    """
    trained, bands = card_survey(card)
    if not trained or not survey or str(survey).upper() == trained:
        return None
    model = str(card.get("hash", ""))[:12]
    what = f"{source}: " if source else ""
    text = (
        f"{what}alerts of {str(survey).upper()}, but model {model} was trained on {trained} alerts "
        f"(bands {','.join(bands or [])}): its scores would mean nothing"
    )
    if allow:
        return text + " (scored anyway: --allow-survey-mismatch)"
    raise SurveyMismatchError(
        text + f"; score them with a {str(survey).upper()} model, or pass --allow-survey-mismatch"
    )
