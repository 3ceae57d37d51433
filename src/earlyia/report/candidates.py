"""Early SN Ia candidates: Fink's reporting rule, made explicit, per object, without mixing alerts.

Fink reports an object when one of its alerts has ``rf score > 0.5 AND (snn_snia_vs_nonia > 0.5 OR
snn_sn_vs_all > 0.5) AND ndethist <= 20 AND drb > 0.5 AND classtar > 0.4 AND cdsxmatch`` in the
extragalactic list, then builds the report row with ``groupby(objectId).min()`` over all columns,
which mixes fields of different alerts (the RA of one alert, the magnitude of another...). Here:

* every threshold is a field of the frozen :class:`CandidateRule` (``None`` disables a cut);
* other brokers' classifiers (SuperNNova) are optional: when their columns are absent the rule
  uses our score alone and says so (``notes`` and the ``snn_used`` column);
* one report per object, built from that object's single LATEST qualifying alert; the one field
  drawn from several alerts is the position, which (as Fink reports it) is the mean of the object's
  alert positions up to that alert, with their scatter as its error (``ra_mean``, ``dec_mean``,
  ``ra_err_arcsec``, ``dec_err_arcsec``, ``n_positions``);
* objects the model was trained on (``prohibited``) and objects already reported (a
  :class:`~earlyia.report.record.ReportedRecord`) are excluded, and the exclusions are counted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from earlyia.errors import InputError, SchemaError
from earlyia.model.operating import adjust_prevalence, card_threshold, stream_prevalence
from earlyia.report.record import BLOCKING, ReportedRecord
from earlyia.select import EXTRAGALACTIC_TYPES, simbad_type

log = logging.getLogger(__name__)

#: SuperNNova columns Fink adds to its alerts (either one above threshold passes the clause).
SNN_COLUMNS = ("snn_snia_vs_nonia", "snn_sn_vs_all")

#: Columns of a candidate table, in this order (the ones absent from the scores are left out).
CANDIDATE_COLUMNS = (
    "object_id",
    "alert_id",
    "mjd",
    "score",
    "score_raw",
    "probability",
    "snn_snia_vs_nonia",
    "snn_sn_vs_all",
    "snn_used",
    "ra",
    "dec",
    "ra_mean",
    "dec_mean",
    "ra_err_arcsec",
    "dec_err_arcsec",
    "n_positions",
    "ndethist",
    "n_detections",
    "drb",
    "classtar",
    "cdsxmatch",
    "first_det_mjd",
    "first_det_mag",
    "first_det_mag_err",
    "first_det_limit_mag",
    "first_det_band",
    "last_nondet_mjd",
    "last_nondet_limit_mag",
    "last_nondet_band",
    "last_mag",
    "last_band",
    "label",
)


#: How the notes name the record's states.
STATE_WORDS = {
    "accepted": "accepted by the TNS",
    "sent": "awaiting the TNS's answer",
    "pending": "being sent",
    "unknown": "with an unknown outcome",
}

__all__ = [
    "CANDIDATE_COLUMNS",
    "CandidateRule",
    "CandidateSelection",
    "ReportedRecord",
    "RuleResult",
    "mean_positions",
    "operating_threshold",
    "select_candidates",
]


def extragalactic_types() -> tuple[str, ...]:
    """Fink's list of SIMBAD types compatible with a supernova (owned by :mod:`earlyia.select`)."""
    return tuple(EXTRAGALACTIC_TYPES)


@dataclass(frozen=True)
class CandidateRule:
    """The reporting rule; defaults are Fink's. A threshold of ``None`` disables that cut.

    Args:
        min_score: our score must be strictly above this.
        min_snn: at least one of ``snn_columns`` must be strictly above this, for alerts that have
            a value in any of them; alerts (or tables) without any use our score alone.
        snn_columns: the other classifiers' columns. max_ndethist: ZTF ``ndethist`` (detections in
        the survey's history) at most this. min_drb, min_classtar: real-bogus and star-galaxy scores
        strictly above these. xmatch: allowed ``cdsxmatch`` values (default:
        :func:`extragalactic_types`); ``()`` disables. require_passed: also require the scorer's own
        selection cuts (``passed`` column).
    """

    min_score: float | None = 0.5
    min_snn: float | None = 0.5
    snn_columns: tuple[str, ...] = SNN_COLUMNS
    max_ndethist: int | None = 20
    min_drb: float | None = 0.5
    min_classtar: float | None = 0.4
    xmatch: tuple[str, ...] | None = None
    require_passed: bool = True

    def allowed_xmatch(self) -> frozenset[str] | None:
        if self.xmatch is None:
            return frozenset(extragalactic_types())
        return frozenset(self.xmatch) if len(self.xmatch) else None

    def config(self) -> dict:
        out = asdict(self)
        out["xmatch"] = sorted(self.allowed_xmatch()) if self.allowed_xmatch() is not None else []
        return out

    def evaluate(self, scores: pd.DataFrame, *, source: str = "<scores>") -> RuleResult:
        """Apply the rule to every alert row: which pass, why the others fail, and notes.

        A column needed by an enabled cut must exist (else :class:`SchemaError` naming the cut to
        disable); a missing value in a row fails that cut, as in Fink (NaN compares false).
        """
        n = len(scores)
        ok = np.ones(n, bool)
        reason = np.full(n, "", dtype=object)
        notes: list[str] = []

        def cut(name: str, passed: np.ndarray, why: str) -> None:
            nonlocal ok
            fail = ok & ~passed
            reason[fail] = why
            ok &= passed

        def column(name: str, option: str) -> np.ndarray | None:
            """The column's values, or None (cut skipped, with a note) when no alert knows it."""
            if name not in scores.columns:
                raise SchemaError(
                    f"scores lack column {name!r} needed by the {option} cut; disable that "
                    "cut to report without it",
                    source=source,
                )
            values = pd.to_numeric(scores[name], errors="coerce").to_numpy(np.float64)
            if n and not np.isfinite(values).any():
                notes.append(
                    f"{name} is unknown for every alert (the input does not carry it): the "
                    f"{option} cut is skipped; "
                    f"disable it ({option} = None) to silence this"
                )
                return None
            return values

        if self.require_passed and "passed" in scores.columns:
            passed = scores["passed"].fillna(False).to_numpy(bool)
            why = (
                scores["reason"].astype(str).to_numpy(object)
                if "reason" in scores.columns
                else np.full(n, "", object)
            )
            fail = ok & ~passed
            reason[fail] = [
                "selection cuts: " + (w if w and w != "nan" else "failed") for w in why[fail]
            ]
            ok &= passed
        if self.min_score is not None:
            s = column("score", "min_score")
            cut("score", s > self.min_score, f"score <= {self.min_score}")
        snn_present = [c for c in self.snn_columns if c in scores.columns]
        snn_used = np.zeros(n, bool)
        if self.min_snn is not None:
            if not snn_present:
                notes.append(
                    f"other classifiers' columns {list(self.snn_columns)} absent: the rule "
                    "uses our score alone"
                )
            else:
                vals = np.column_stack(
                    [
                        pd.to_numeric(scores[c], errors="coerce").to_numpy(np.float64)
                        for c in snn_present
                    ]
                )
                snn_used = np.isfinite(vals).any(axis=1)
                above = (vals > self.min_snn).any(axis=1)
                if (~snn_used).any():
                    notes.append(
                        f"{int((~snn_used).sum())} of {n} alerts have no value in "
                        f"{snn_present}: our score alone decides for them"
                    )
                cut("snn", above | ~snn_used, f"{' and '.join(snn_present)} <= {self.min_snn}")
        for name, option, limit, above in (
            ("ndethist", "max_ndethist", self.max_ndethist, False),
            ("drb", "min_drb", self.min_drb, True),
            ("classtar", "min_classtar", self.min_classtar, True),
        ):
            if limit is None:
                continue
            values = column(name, option)
            if values is not None:
                cut(
                    name,
                    values > limit if above else values <= limit,
                    f"{name} {'<=' if above else '>'} {limit} (or unknown)",
                )
        allowed = self.allowed_xmatch()
        if allowed is not None:
            if "cdsxmatch" not in scores.columns:
                raise SchemaError(
                    "scores lack column 'cdsxmatch' needed by the xmatch cut; disable that "
                    "cut to report without it",
                    source=source,
                )
            xm = np.array(
                [simbad_type(v) for v in scores["cdsxmatch"].astype(object).to_numpy()],
                dtype=object,
            )
            if n and (xm == "Unknown").all():
                notes.append(
                    "no SIMBAD cross-match in the input (cdsxmatch empty or Unknown for "
                    "every alert): every alert counts "
                    "as 'Unknown', which the extragalactic cut accepts; stars and variables "
                    "cannot be told apart"
                )
            good = np.array([v in allowed for v in xm], bool)
            fail = ok & ~good
            reason[fail] = [f"cdsxmatch {v!r} not extragalactic" for v in xm[fail]]
            ok &= good
        return RuleResult(passed=ok, reason=reason, snn_used=snn_used, notes=notes)


@dataclass
class RuleResult:
    """Per alert row: ``passed`` (bool), ``reason`` of the first failed cut, ``snn_used``."""

    passed: np.ndarray
    reason: np.ndarray
    snn_used: np.ndarray
    notes: list[str] = field(default_factory=list)


@dataclass
class CandidateSelection:
    """The candidates (one row per object) and an account of everything left out."""

    candidates: pd.DataFrame
    n_alerts: int
    n_alerts_passing: int
    excluded_prohibited: list[str]
    excluded_reported: list[str]
    notes: list[str]
    rule: CandidateRule

    def summary(self) -> dict:
        return {
            "n_alerts": self.n_alerts,
            "n_alerts_passing": self.n_alerts_passing,
            "n_candidates": len(self.candidates),
            "excluded_prohibited": self.excluded_prohibited,
            "excluded_already_reported": self.excluded_reported,
            "snn_used": bool(self.candidates["snn_used"].any()) if len(self.candidates) else False,
            "notes": self.notes,
            "rule": self.rule.config(),
        }


def select_candidates(
    scores: pd.DataFrame,
    rule: CandidateRule | None = None,
    *,
    prohibited: Iterable[str] = (),
    record: ReportedRecord | None = None,
    source: str = "<scores>",
) -> CandidateSelection:
    """One candidate per object: its latest alert that passes ``rule``, all fields from that alert.

    ``prohibited`` (e.g. the model's training objects) and objects in ``record`` are excluded.
    """
    rule = rule or CandidateRule()
    for col in ("object_id", "alert_id", "mjd"):
        if col not in scores.columns:
            raise SchemaError(f"scores lack column {col!r}", source=source)
    res = rule.evaluate(scores, source=source)
    notes = list(res.notes)
    for note in notes:
        log.info("candidates: %s", note)
    passing = scores.loc[res.passed].assign(snn_used=res.snn_used[res.passed])
    passing = passing.assign(
        object_id=passing["object_id"].astype(str), alert_id=passing["alert_id"].astype(str)
    )
    order = (
        ["object_id", "mjd"]
        + (["ndethist"] if "ndethist" in passing.columns else [])
        + ["alert_id"]
    )
    latest = passing.sort_values(order, kind="mergesort").drop_duplicates("object_id", keep="last")
    prohibited = set(map(str, prohibited))
    is_prohibited = latest["object_id"].isin(prohibited).to_numpy()
    excluded_prohibited = sorted(latest.loc[is_prohibited, "object_id"])
    latest = latest.loc[~is_prohibited]
    excluded_reported: list[str] = []
    if record is not None and len(latest):
        known = record.objects(latest["object_id"])
        done = {k for k, v in known.items() if v.state in BLOCKING}
        excluded_reported = sorted(done)
        latest = latest.loc[~latest["object_id"].isin(done)]
        if excluded_reported:
            by_state = pd.Series([known[k].state for k in excluded_reported]).value_counts()
            notes.append(
                f"{len(excluded_reported)} object(s) excluded: already reported ("
                + ", ".join(f"{n} {STATE_WORDS.get(s, s)}" for s, n in by_state.items())
                + ")"
            )
        again = sorted(k for k, v in known.items() if v.state == "rejected")
        if again:
            notes.append(
                f"{len(again)} object(s) the TNS rejected before are candidates again: "
                f"{', '.join(again[:10])}"
            )
    if len(latest):
        means = mean_positions(scores, latest)
        latest = latest.drop(columns=[c for c in means.columns if c in latest.columns]).join(
            means, on="object_id"
        )
    if excluded_prohibited:
        notes.append(f"{len(excluded_prohibited)} object(s) excluded: in the model's training set")
    cols = [c for c in CANDIDATE_COLUMNS if c in latest.columns]
    cand = latest.sort_values(["score", "object_id"], ascending=[False, True], kind="mergesort")[
        cols
    ].reset_index(drop=True)
    return CandidateSelection(
        candidates=cand,
        n_alerts=len(scores),
        n_alerts_passing=int(res.passed.sum()),
        excluded_prohibited=excluded_prohibited,
        excluded_reported=excluded_reported,
        notes=notes,
        rule=rule,
    )


def mean_positions(scores: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """Per object of ``chosen`` (rows with ``object_id``, ``mjd``): the mean RA/Dec of its alerts in
    ``scores`` up to the chosen alert's time, and their scatter (arcsec on the sky, population
    standard deviation as Fink's).

    Each alert is a detection with its own measured position. RA is averaged across the 0/360 wrap.
    Returns ``ra_mean, dec_mean, ra_err_arcsec, dec_err_arcsec, n_positions`` indexed by object id.
    """
    cols = ["ra_mean", "dec_mean", "ra_err_arcsec", "dec_err_arcsec", "n_positions"]
    if not {"ra", "dec"} <= set(scores.columns):
        return pd.DataFrame(columns=cols, index=pd.Index([], name="object_id"))
    until = chosen.set_index("object_id")["mjd"].astype(float)
    pos = pd.DataFrame(
        {
            "object_id": scores["object_id"].astype(str).to_numpy(),
            "alert_id": scores["alert_id"].astype(str).to_numpy()
            if "alert_id" in scores.columns
            else np.arange(len(scores)).astype(str),
            "mjd": pd.to_numeric(scores["mjd"], errors="coerce").to_numpy(np.float64),
            "ra": pd.to_numeric(scores["ra"], errors="coerce").to_numpy(np.float64),
            "dec": pd.to_numeric(scores["dec"], errors="coerce").to_numpy(np.float64),
        }
    )
    pos = pos[pos["object_id"].isin(until.index) & np.isfinite(pos["ra"]) & np.isfinite(pos["dec"])]
    pos = pos[pos["mjd"].to_numpy() <= pos["object_id"].map(until).to_numpy() + 1e-9]
    pos = pos.drop_duplicates(["object_id", "alert_id"])
    if pos.empty:
        return pd.DataFrame(columns=cols, index=pd.Index([], name="object_id"))
    ref = pos.groupby("object_id")["ra"].transform("first")
    pos = pos.assign(dra=((pos["ra"] - ref + 180.0) % 360.0) - 180.0)
    g = pos.groupby("object_id")
    out = pd.DataFrame(
        {
            "ra_mean": (g["ra"].first() + g["dra"].mean()) % 360.0,
            "dec_mean": g["dec"].mean(),
            "n_positions": g.size().astype(np.int64),
        }
    )
    out["ra_err_arcsec"] = g["dra"].std(ddof=0) * np.cos(np.radians(out["dec_mean"])) * 3600.0
    out["dec_err_arcsec"] = g["dec"].std(ddof=0) * 3600.0
    out.index.name = "object_id"
    return out[cols]


def operating_threshold(
    card: dict | None,
    scores: pd.DataFrame,
    *,
    prevalence,
    max_detections: int | None,
    min_purity: float,
) -> tuple[float, dict]:
    """The candidate threshold a model card gives at the stream's prevalence, and what it rests
    on (printed and stored in summary.json). ``prevalence``: a number, ``"training"`` or
    ``"auto"`` (EM estimate from the scores)."""
    if card is None:
        raise InputError(
            "the card threshold needs the model: give --model (or scores whose metadata "
            "names a model)"
        )
    n_det = 20 if max_detections is None else int(max_detections)
    ns = sorted(
        {
            int(c["max_detections"])
            for c in card.get("operating_curves") or card.get("operating_points") or []
        }
    )
    usable = [n for n in ns if n <= n_det]
    if not usable:
        raise InputError(
            f"the model card has no operating point within {n_det} detections (train on "
            "replayed alerts with "
            "object ids and ndethist to get one)"
        )
    n = max(usable)
    trained = (card.get("evidence") or {}).get("prevalence")
    if prevalence == "training" or (prevalence == "auto" and trained is None):
        pi, how = (
            None,
            "training prevalence"
            + ("" if trained is not None else " (the model predates prevalence curves)"),
        )
        n_obj = None
    elif prevalence == "auto":
        pi, n_obj, how = stream_prevalence(scores, card)
        if how.startswith("training"):
            pi = None
    else:
        pi, how, n_obj = float(prevalence), "given", None
    best = card_threshold(card, n, min_purity, pi)
    info = {
        "max_detections": n,
        "min_purity": min_purity,
        "prevalence": trained if pi is None else pi,
        "prevalence_source": how,
        "training_prevalence": trained,
        "objects_used": n_obj,
        **best,
    }
    if not np.isfinite(best["threshold"]):
        raise InputError(
            f"no threshold reaches purity {min_purity:g} within {n} detections at prevalence "
            f"{info['prevalence']:.3g} ({how}): lower --min-purity, or give --min-score"
        )
    info["adjust"] = (
        (lambda p: adjust_prevalence(p, trained, pi))
        if (pi is not None and trained is not None)
        else None
    )
    return float(best["threshold"]), info
