"""Choose tonight's spectroscopic targets from a score file, under observability constraints.

Two lists, as in Fink's live loop:

- ``al``: the targets whose label teaches the classifier most, chosen by an active-learning
  strategy of :mod:`earlyia.learn.strategies` (uncertainty by default; ``batch_diverse`` avoids
  near-duplicate targets; ``cost_aware`` prefers bright objects, cheap to observe);
- ``early``: likely SN Ia while still young (score > 0.5, <= 10 days since the first detection),
  by descending score.

Each object is judged on its *latest* alert (one row per object; Fink's report mixed columns of
different alerts). Objects already requested, labelled, or in a model's training set (the
prohibited list) are never proposed again. The score file is recorded by path and sha256.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from earlyia.errors import ConfigError, SchemaError
from earlyia.followup.config import Constraints, EarlyList
from earlyia.followup.db import FollowupDB, dumps, utcnow
from earlyia.learn.strategies import PoolPredictions, get_strategy
from earlyia.model.artifact import Model
from earlyia.score.scores_file import file_sha256, model_version_of, read_scores

MJD_OFFSET = 2400000.5
#: CLI names of the strategies -> names in :data:`earlyia.learn.strategies.STRATEGIES`.
STRATEGY_ALIASES = {
    "uncertainty": "uncertainty",
    "batch_diverse": "diverse_uncertainty",
    "cost_aware": "uncertainty_per_cost",
    "random": "random",
}
REQUIRED = ("object_id", "mjd", "score")
#: Columns of a score file that are not features (everything else numeric is used for diversity).
NON_FEATURES = {
    "object_id",
    "alert_id",
    "mjd",
    "score",
    "passed",
    "reason",
    "ra",
    "dec",
    "ndethist",
    "jdstarthist",
    "drb",
    "classtar",
    "cdsxmatch",
    "n_detections",
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
    "type",
    "tns_type",
    "rf_snia_vs_nonia",
    "snn_snia_vs_nonia",
    "snn_sn_vs_all",
    "finkclass",
    "classification",
    "days_since_first",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "night",
}
#: Reference magnitude of the cost model: an object this bright costs one unit of telescope time.
COST_REFERENCE_MAG = 18.0


def latest_alerts(scores: pd.DataFrame, source: str = "scores") -> pd.DataFrame:
    """One row per object: its latest alert (largest mjd; the last row on ties), all columns from
    that alert."""
    missing = [c for c in REQUIRED if c not in scores.columns]
    if missing:
        raise SchemaError(
            f"missing column(s) {missing}; a score file from `earlyia score` has them",
            source=source,
        )
    df = scores.copy()
    df["object_id"] = df["object_id"].astype(str)
    df["_row"] = np.arange(len(df))
    df = df.sort_values(["object_id", "mjd", "_row"], kind="stable")
    out = df.groupby("object_id", sort=False).tail(1).sort_values("_row").drop(columns="_row")
    return out.reset_index(drop=True)


def days_since_first(df: pd.DataFrame) -> np.ndarray:
    """``mjd - (jdstarthist - 2400000.5)``, falling back on ``first_det_mjd``; NaN when neither
    is known."""
    mjd = df["mjd"].to_numpy(np.float64)
    first = np.full(len(df), np.nan)
    if "jdstarthist" in df.columns:
        first = pd.to_numeric(df["jdstarthist"], errors="coerce").to_numpy(np.float64) - MJD_OFFSET
    if "first_det_mjd" in df.columns:
        alt = pd.to_numeric(df["first_det_mjd"], errors="coerce").to_numpy(np.float64)
        first = np.where(np.isfinite(first), first, alt)
    return mjd - first


def constraint_mask(
    df: pd.DataFrame,
    c: Constraints,
    *,
    max_days: float | None = None,
    source: str = "scores",
    notes: list[str] | None = None,
) -> tuple[np.ndarray, dict]:
    """Boolean mask of the rows passing every constraint, and the number each constraint removed.

    An alert-quality cut (``drb``, ``classtar``) whose column no row carries (detections-only
    sources, other surveys) is skipped with a line appended to ``notes``, as ``earlyia candidates``
    does, instead of removing every object; a column the constraint needs for its meaning
    (declination, magnitude) is an error.
    """
    n = len(df)
    ok = np.ones(n, bool)
    removed: dict[str, int] = {}

    def need(col: str, option: str) -> np.ndarray:
        if col not in df.columns:
            raise SchemaError(
                f"no {col!r} column for the {option} constraint; add it or disable the "
                f"constraint ({option} none)",
                source=source,
            )
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(np.float64)
        if n and not np.isfinite(values).any():
            raise SchemaError(
                f"column {col!r} is empty (no finite value), so the {option} constraint "
                "would remove every object; "
                f"disable it with {option} none",
                source=source,
            )
        return values

    def known(col: str, option: str) -> np.ndarray | None:
        values = (
            pd.to_numeric(df[col], errors="coerce").to_numpy(np.float64)
            if col in df.columns
            else np.full(n, np.nan)
        )
        if n and not np.isfinite(values).any():
            if notes is not None:
                notes.append(
                    f"{col} is unknown for every object (the input does not carry it): the "
                    f"{option} cut is skipped"
                )
            return None
        return values

    def apply(name: str, keep: np.ndarray) -> None:
        keep = np.asarray(keep, bool)
        removed[name] = int((ok & ~keep).sum())
        ok[:] &= keep

    if "passed" in df.columns:
        apply("failed_cuts", df["passed"].fillna(False).to_numpy(bool))
    score = df["score"].to_numpy(np.float64)
    apply("score", np.isfinite(score) & (score > c.min_score))
    if c.dec_min is not None or c.dec_max is not None:
        dec = need("dec", "--dec-max")
        apply(
            "dec",
            (dec >= (c.dec_min if c.dec_min is not None else -90))
            & (dec < (c.dec_max if c.dec_max is not None else 91)),
        )
    days = df["days_since_first"].to_numpy(np.float64)
    limit = max_days if max_days is not None else c.max_days_since_first
    if limit is not None:
        apply("days_since_first", np.isfinite(days) & (days <= limit))
    if c.mag_limit is not None:
        apply("mag_limit", need("last_mag", "--mag-limit") <= c.mag_limit)
    if c.drb_min is not None and (drb := known("drb", "--min-drb")) is not None:
        apply("drb", drb > c.drb_min)
    if c.classtar_min is not None and (classtar := known("classtar", "--min-classtar")) is not None:
        apply("classtar", classtar > c.classtar_min)
    if c.extragalactic is not None or "cdsxmatch" in df.columns:
        if "cdsxmatch" not in df.columns:
            raise SchemaError(
                "no 'cdsxmatch' column for the extragalactic constraint", source=source
            )
        apply(
            "not_extragalactic",
            df["cdsxmatch"].fillna("Unknown").astype(str).isin(set(c.types())).to_numpy(),
        )
    return ok, removed


def feature_matrix(df: pd.DataFrame, feature_names: list[str] | None = None) -> np.ndarray:
    """Features for the diversity term (NaN -> column median, so a failed fit does not break
    distances)."""
    names = feature_names or [
        c for c in df.columns if c not in NON_FEATURES and pd.api.types.is_numeric_dtype(df[c])
    ]
    names = [n for n in names if n in df.columns]
    if not names:
        return df[["score"]].to_numpy(np.float64)
    X = df[names].to_numpy(np.float64).copy()
    med = (
        np.nanmedian(np.where(np.isfinite(X), X, np.nan), axis=0)
        if len(X)
        else np.zeros(X.shape[1])
    )
    med = np.where(np.isfinite(med), med, 0.0)
    bad = ~np.isfinite(X)
    X[bad] = np.take(med, np.nonzero(bad)[1])
    return X


def spectroscopy_cost(
    last_mag: np.ndarray, reference_mag: float = COST_REFERENCE_MAG
) -> np.ndarray:
    """Exposure time relative to a ``reference_mag`` object (source-limited: proportional to 1 /
    flux)."""
    m = np.asarray(last_mag, dtype=np.float64)
    m = np.where(np.isfinite(m), m, reference_mag + 2.0)  # unknown brightness: assume faint
    return 10.0 ** (0.4 * (m - reference_mag))


def excluded_objects(db: FollowupDB, prohibited: set[str] | None = None) -> dict[str, set[str]]:
    """Objects never to propose again, by reason."""
    out = {
        "requested": {r[0] for r in db.query("SELECT object_id FROM requests")},
        "requested_early": {
            r[0] for r in db.query("SELECT object_id FROM requests WHERE list = 'early'")
        },
        "labelled": {r[0] for r in db.query("SELECT object_id FROM labels")},
        "training": {r[0] for r in db.query("SELECT object_id FROM training_set")},
        "prohibited": set(prohibited or ()),
    }
    return out


@dataclass
class Selection:
    al: pd.DataFrame
    early: pd.DataFrame
    removed: dict = field(default_factory=dict)
    n_objects: int = 0
    notes: list[str] = field(default_factory=list)
    selection_id: int | None = None
    model_version: str | None = None
    strategy: str = "uncertainty"


def _classification(df: pd.DataFrame) -> list[str]:
    if "finkclass" in df.columns:
        return df["finkclass"].fillna("Unknown").astype(str).tolist()
    if "classification" in df.columns:
        return df["classification"].fillna("Unknown").astype(str).tolist()
    x = (
        df["cdsxmatch"].fillna("Unknown").astype(str)
        if "cdsxmatch" in df.columns
        else pd.Series(["Unknown"] * len(df))
    )
    s = df["score"].to_numpy(np.float64)
    return [
        f"Early SN Ia candidate ({x_})" if si > 0.5 else f"{x_}"
        for si, x_ in zip(s, x, strict=True)
    ]


def choose(
    latest: pd.DataFrame,
    *,
    n: int = 30,
    strategy: str = "uncertainty",
    constraints: Constraints | None = None,
    early: EarlyList | None = None,
    exclude: dict[str, set[str]] | None = None,
    feature_names: list[str] | None = None,
    budget: float | None = None,
    random_state=None,
    source: str = "scores",
) -> Selection:
    """Pure selection (no database): the two lists from one-row-per-object scores."""
    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}")
    constraints = constraints or Constraints()
    early = early or EarlyList(n=n)
    exclude = exclude or {}
    name = STRATEGY_ALIASES.get(strategy, strategy)
    func = get_strategy(name)
    df = latest.copy()
    df["days_since_first"] = days_since_first(df)
    df["classification"] = _classification(df)

    notes: list[str] = []
    ok, removed = constraint_mask(df, constraints, source=source, notes=notes)
    oid = df["object_id"].astype(str)
    never = set().union(
        exclude.get("requested", set()),
        exclude.get("labelled", set()),
        exclude.get("training", set()),
        exclude.get("prohibited", set()),
    )
    fresh = ~oid.isin(never).to_numpy()
    removed["already_requested_labelled_or_prohibited"] = int((ok & ~fresh).sum())
    pool_idx = np.flatnonzero(ok & fresh)
    pool = df.iloc[pool_idx].reset_index(drop=True)

    if len(pool):
        X_pool = feature_matrix(pool, feature_names)
        clf = PoolPredictions(X_pool, pool["score"].to_numpy(np.float64))
        kwargs = {}
        if name in ("uncertainty_per_cost",) or budget is not None:
            if "last_mag" in pool.columns:
                kwargs["cost"] = spectroscopy_cost(pool["last_mag"].to_numpy(np.float64))
            elif name == "uncertainty_per_cost":
                raise SchemaError(
                    "cost_aware needs a 'last_mag' column to estimate the exposure time",
                    source=source,
                )
        if budget is not None:
            kwargs["budget"] = float(budget)
        idx, qscore = func(
            clf, X_pool, n_instances=min(n, len(pool)), random_state=random_state, **kwargs
        )
        al = pool.iloc[np.asarray(idx, dtype=np.int64)].copy()
        al["query_score"] = np.asarray(qscore, dtype=np.float64)[idx]
    else:
        al = pool.copy()
        al["query_score"] = np.empty(0)
    al["rank"] = np.arange(1, len(al) + 1)

    # Early list: same constraints but younger and confident; never an object just put in the AL
    # list.
    ok_e, _ = constraint_mask(df, constraints, max_days=early.max_days_since_first, source=source)
    never_e = set().union(
        exclude.get("requested_early", set()),
        exclude.get("labelled", set()),
        exclude.get("training", set()),
        exclude.get("prohibited", set()),
        set(al["object_id"].astype(str)),
    )
    cand = df[
        ok_e & (df["score"].to_numpy(np.float64) > early.min_score) & ~oid.isin(never_e).to_numpy()
    ]
    cand = (
        cand.sort_values(["score", "object_id"], ascending=[False, True], kind="stable")
        .head(early.n)
        .copy()
    )
    cand["query_score"] = cand["score"]
    cand["rank"] = np.arange(1, len(cand) + 1)
    return Selection(
        al=al.reset_index(drop=True),
        early=cand.reset_index(drop=True),
        removed=removed,
        n_objects=len(df),
        strategy=strategy,
        notes=notes,
    )


def _col(df: pd.DataFrame, name: str) -> list:
    if name not in df.columns:
        return [None] * len(df)
    out = []
    for v in df[name].tolist():
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            out.append(None)
        elif isinstance(v, (np.floating, np.integer)):
            out.append(v.item())
        else:
            out.append(v)
    return out


def select(
    db: FollowupDB,
    scores_path: str | Path,
    *,
    n: int = 30,
    strategy: str = "uncertainty",
    constraints: Constraints | None = None,
    early: EarlyList | None = None,
    prohibited: set[str] | None = None,
    model_version: str | None = None,
    budget: float | None = None,
    random_state=None,
    record_scores: bool = True,
) -> Selection:
    """Read ``scores_path``, choose both lists and record everything in one transaction."""
    scores_path = Path(scores_path)
    scores, meta = read_scores(scores_path)
    version = model_version or model_version_of(meta)
    feature_names = None
    ext = meta.get("extractor") or meta.get("extractor_config")
    if isinstance(ext, dict) and ext.get("names"):
        feature_names = list(ext["names"])
    elif isinstance(meta.get("model"), dict) and meta["model"].get("features"):
        feature_names = list(meta["model"]["features"])
    latest = latest_alerts(scores, source=str(scores_path))
    sha = file_sha256(scores_path)
    constraints = constraints or Constraints()
    early = early or EarlyList(n=n)
    with db.transaction() as con:
        if version:
            prohibited = set(prohibited or ()) | _prohibited_from_registry(db, version)
        exclude = excluded_objects(db, prohibited)
        sel = choose(
            latest,
            n=n,
            strategy=strategy,
            constraints=constraints,
            early=early,
            exclude=exclude,
            feature_names=feature_names,
            budget=budget,
            random_state=random_state,
            source=str(scores_path),
        )
        now = utcnow()
        cur = con.execute(
            "INSERT INTO score_files (path, sha256, model_version, n_alerts, n_objects, "
            "ingested_at) VALUES (?, ?, ?, ?, ?, ?)",
            (str(scores_path.resolve()), sha, version, len(scores), len(latest), now),
        )
        file_id = cur.lastrowid
        if record_scores:
            con.executemany(
                "INSERT INTO scored_objects (score_file_id, object_id, alert_id, mjd, score, "
                "ra, dec) VALUES (?, ?, ?, ?, ?, ?, ?)",
                zip(
                    [file_id] * len(latest),
                    _col(latest, "object_id"),
                    [None if a is None else str(a) for a in _col(latest, "alert_id")],
                    _col(latest, "mjd"),
                    _col(latest, "score"),
                    _col(latest, "ra"),
                    _col(latest, "dec"),
                    strict=True,
                ),
            )
        params = {
            "n": n,
            "constraints": constraints.config(),
            "early": early.__dict__,
            "budget": budget,
            "random_state": random_state
            if isinstance(random_state, (int, type(None)))
            else "generator",
            "scores_sha256": sha,
            "removed": sel.removed,
        }
        cur = con.execute(
            "INSERT INTO selections (created_at, score_file_id, model_version, strategy, "
            "n_requested, params) VALUES (?, ?, ?, ?, ?, ?)",
            (now, file_id, version, strategy, n, dumps(params)),
        )
        sid = cur.lastrowid
        for list_name, frame in (("al", sel.al), ("early", sel.early)):
            rows = list(
                zip(
                    _col(frame, "rank"),
                    _col(frame, "object_id"),
                    [None if a is None else str(a) for a in _col(frame, "alert_id")],
                    _col(frame, "mjd"),
                    _col(frame, "score"),
                    _col(frame, "query_score"),
                    _col(frame, "ra"),
                    _col(frame, "dec"),
                    _col(frame, "days_since_first"),
                    _col(frame, "last_mag"),
                    _col(frame, "last_band"),
                    _col(frame, "cdsxmatch"),
                    _col(frame, "classification"),
                    strict=True,
                )
            )
            con.executemany(
                "INSERT INTO candidates (selection_id, list, rank, object_id, alert_id, mjd, "
                "score, query_score, ra, dec, "
                "days_since_first, last_mag, last_band, cdsxmatch, classification) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(sid, list_name, *r) for r in rows],
            )
            con.executemany(
                "INSERT INTO requests (object_id, list, selection_id, created_at, "
                "model_version, strategy, status, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'selected', ?)",
                [
                    (
                        r[1],
                        list_name,
                        sid,
                        now,
                        version,
                        strategy if list_name == "al" else "early",
                        now,
                    )
                    for r in rows
                ],
            )
    sel.selection_id = sid
    sel.model_version = version
    return sel


def _prohibited_from_registry(db: FollowupDB, version: str) -> set[str]:
    """Training ids of the scoring model: from the training_set table, else from its model card."""
    ids = {
        r[0]
        for r in db.query("SELECT object_id FROM training_set WHERE model_version = ?", (version,))
    }
    if ids:
        return ids
    row = db.query("SELECT path FROM models WHERE version = ?", (version,))
    if row:
        return set(Model.load(row[0]["path"]).prohibited_object_ids())
    return set()


def format_table(sel: Selection) -> str:
    """The two lists as a plain-text table."""
    cols = [
        "rank",
        "object_id",
        "score",
        "query_score",
        "ra",
        "dec",
        "days_since_first",
        "last_mag",
        "classification",
    ]
    parts = []
    for title, frame in (
        ("Active-learning targets (" + sel.strategy + ")", sel.al),
        ("Likely early SN Ia", sel.early),
    ):
        parts.append(f"{title}: {len(frame)}")
        if len(frame):
            show = frame[[c for c in cols if c in frame.columns]].copy()
            for c in ("score", "query_score"):
                if c in show.columns:
                    show[c] = show[c].map(lambda v: f"{v:.3f}")
            for c in ("ra", "dec"):
                if c in show.columns:
                    show[c] = show[c].map(lambda v: f"{v:.5f}")
            for c in ("days_since_first", "last_mag"):
                if c in show.columns:
                    show[c] = show[c].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
            parts.append(show.to_string(index=False))
    removed = ", ".join(f"{k}: {v}" for k, v in sel.removed.items() if v)
    parts.append(f"{sel.n_objects} object(s) scored; removed by constraint: {removed or 'none'}")
    parts.extend(f"note: {note}" for note in sel.notes)
    return "\n".join(parts)
