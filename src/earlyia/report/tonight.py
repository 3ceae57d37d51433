"""Tonight's observing list: score tonight's alerts and write one page to open in a browser.

One call (:func:`observing_list`, the ``earlyia tonight`` command) runs what an observer would
otherwise chain by hand: ``earlyia score`` (:func:`earlyia.score.pipeline.score_files`), the likely
early SN Ia of ``earlyia candidates`` (the reporting rule at the model card's threshold for the
target purity at the stream's prevalence, :func:`earlyia.report.candidates.operating_threshold` and
:func:`~earlyia.report.candidates.select_candidates`), and the active-learning targets of ``earlyia
followup select`` (:func:`earlyia.followup.targets.choose`, without recording them in a follow-up
database). Both lists go into ``index.html`` (a self-contained page: one table per list, a
light-curve PNG per object, RA/Dec, last magnitude, score, days since the first detection, the
broker portal link), ``tonight.csv`` (the same rows, spreadsheet-safe) and ``scores.parquet`` (every
alert's score).

Every string that comes from an alert (object ids, bands, SIMBAD types) is HTML-escaped, image files
are named by position (never by object id), and each file is written atomically, ``index.html``
last.
"""

from __future__ import annotations

import html
import json
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from earlyia.errors import InputError
from earlyia.followup.config import Constraints
from earlyia.followup.notify import lightcurve_png
from earlyia.followup.targets import choose, days_since_first, latest_alerts
from earlyia.io.chunks import iter_chunks
from earlyia.io.spreadsheet import write_csv_for_people
from earlyia.io.table import atomic_write
from earlyia.model.artifact import Model
from earlyia.model.shipped import default_model_path
from earlyia.model.survey import card_survey
from earlyia.report.candidates import CandidateRule, operating_threshold, select_candidates
from earlyia.score.pipeline import score_files

#: Columns of tonight.csv, in this order.
CSV_COLUMNS = (
    "list",
    "rank",
    "object_id",
    "ra",
    "dec",
    "mag",
    "band",
    "score",
    "query_score",
    "days_since_first",
    "ndethist",
    "cdsxmatch",
    "mjd",
    "alert_id",
    "portal_url",
    "image",
)
#: Broker portal of each survey's objects (``<portal>/<object id>``).
PORTALS = {"ZTF": "https://fink-portal.org"}
IMAGES = "img"


@dataclass
class TonightResult:
    """What :func:`observing_list` wrote and chose."""

    out: Path
    candidates: pd.DataFrame
    targets: pd.DataFrame
    n_alerts: int
    n_objects: int
    n_scored: int
    model: str
    model_path: str
    threshold: float
    operating_point: dict | None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def index(self) -> Path:
        return self.out / "index.html"


def portal_link(object_id: str, base: str | None) -> str | None:
    """``<base>/<object id>`` with the id URL-quoted (None without a portal)."""
    if not base:
        return None
    return f"{base.rstrip('/')}/{urllib.parse.quote(str(object_id), safe='')}"


def _rows(frame: pd.DataFrame, list_name: str, portal: str | None) -> pd.DataFrame:
    """One list in the CSV/page layout."""
    out = pd.DataFrame(index=range(len(frame)))
    f = frame.reset_index(drop=True)

    def col(name, fill=np.nan):
        return f[name] if name in f.columns else pd.Series([fill] * len(f))

    out["list"] = list_name
    out["rank"] = np.arange(1, len(f) + 1)
    out["object_id"] = col("object_id", "").astype(str)
    ra = col("ra_mean") if "ra_mean" in f.columns else col("ra")
    dec = col("dec_mean") if "dec_mean" in f.columns else col("dec")
    out["ra"] = pd.to_numeric(ra, errors="coerce")
    out["dec"] = pd.to_numeric(dec, errors="coerce")
    out["mag"] = pd.to_numeric(col("last_mag"), errors="coerce")
    out["band"] = col("last_band", "").fillna("").astype(str)
    out["score"] = pd.to_numeric(col("score"), errors="coerce")
    out["query_score"] = pd.to_numeric(col("query_score"), errors="coerce")
    out["days_since_first"] = days_since_first(f) if len(f) else np.zeros(0)
    out["ndethist"] = pd.to_numeric(col("ndethist"), errors="coerce")
    out["cdsxmatch"] = col("cdsxmatch", "").fillna("").astype(str)
    out["mjd"] = pd.to_numeric(col("mjd"), errors="coerce")
    out["alert_id"] = col("alert_id", "").fillna("").astype(str)
    out["portal_url"] = [portal_link(o, portal) or "" for o in out["object_id"]]
    out["image"] = ""
    return out


#: Follow-up constraints that read a column tonight's alerts may not carry (constraint field ->
#: column).
OPTIONAL_CONSTRAINTS = {"drb_min": "drb", "classtar_min": "classtar", "mag_limit": "last_mag"}


def _usable_constraints(
    latest: pd.DataFrame, constraints: Constraints
) -> tuple[Constraints, list[str]]:
    """``constraints`` without the cuts whose column no alert knows (each with a note), as the
    candidates' rule does."""
    from dataclasses import replace

    notes = []
    for name, col in OPTIONAL_CONSTRAINTS.items():
        if getattr(constraints, name) is None:
            continue
        values = (
            pd.to_numeric(latest[col], errors="coerce")
            if col in latest.columns
            else pd.Series(dtype=float)
        )
        if len(latest) and not np.isfinite(values.to_numpy(np.float64)).any():
            constraints = replace(constraints, **{name: None})
            notes.append(
                f"{col} is unknown for every alert (the input does not carry it): the "
                f"active-learning {col} "
                "constraint is skipped"
            )
    return constraints, notes


def _plots(
    inputs: list, wanted: dict[str, str], out: Path, *, chunk_size: int, format: str | None
) -> dict[str, str]:
    """Light-curve PNGs of the ``wanted`` objects (object id -> file name), read chunk by chunk from
    the inputs.

    Returns the objects drawn; an object whose light curve cannot be drawn is left without image.
    """
    drawn: dict[str, str] = {}
    for chunk in iter_chunks(inputs, chunk_size, format):
        if chunk.lc is None or not len(wanted):
            continue
        ids = set(chunk.lc.objects["object_id"].astype(str))
        for oid in [o for o in wanted if o in ids and o not in drawn]:
            png = lightcurve_png(chunk.lc, oid)
            if png is None:
                continue
            name = wanted[oid]
            atomic_write(out / IMAGES / name, lambda tmp, png=png: Path(tmp).write_bytes(png))
            drawn[oid] = name
    return drawn


def _fmt(value, spec: str) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return ""
    return format(v, spec) if np.isfinite(v) else ""


def _table(rows: pd.DataFrame, title: str, explain: str, query: bool) -> str:
    e = html.escape
    head = (
        ["#", "light curve", "object", "RA", "Dec", "mag", "score"]
        + (["query score"] if query else [])
        + ["days since first detection", "SIMBAD", "portal"]
    )
    parts = [f"<h2>{e(title)} ({len(rows)})</h2>", f"<p>{e(explain)}</p>"]
    if not len(rows):
        parts.append("<p><em>none tonight</em></p>")
        return "\n".join(parts)
    parts.append(
        "<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>"
    )
    for r in rows.itertuples(index=False):
        img = (
            f'<img src="{e(IMAGES + "/" + r.image)}" alt="light curve of {e(r.object_id)}" '
            'width="400">'
            if r.image
            else "<em>no light curve</em>"
        )
        link = (
            f'<a href="{e(r.portal_url)}" rel="noopener noreferrer">portal</a>'
            if r.portal_url
            else ""
        )
        mag = _fmt(r.mag, ".2f") + (f" ({e(r.band)})" if r.band and _fmt(r.mag, ".2f") else "")
        cells = (
            [
                str(r.rank),
                img,
                f"<code>{e(r.object_id)}</code>",
                _fmt(r.ra, ".5f"),
                _fmt(r.dec, ".5f"),
                mag,
                _fmt(r.score, ".3f"),
            ]
            + ([_fmt(r.query_score, ".3f")] if query else [])
            + [_fmt(r.days_since_first, ".1f"), e(r.cdsxmatch), link]
        )
        parts.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    parts.append("</tbody></table>")
    return "\n".join(parts)


STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin-bottom:2em}
td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:middle;text-align:right}
td:nth-child(3){text-align:left}
th{background:#f0f0f0}img{display:block}p.notes{color:#555;font-size:90%}"""


def render_page(
    result: TonightResult, rows_cand: pd.DataFrame, rows_al: pd.DataFrame, strategy: str
) -> str:
    """The HTML page (no script, no external resource: the images sit next to it)."""
    e = html.escape
    op = result.operating_point
    if op:
        how = (
            f"above the card threshold {result.threshold:.3f}: purity >= "
            f"{op['min_purity']:g} within "
            f"{op['max_detections']} detections at the stream's prevalence {op['prevalence']:.3f} "
            f"({op['prevalence_source']}); held-out efficiency there {op['efficiency']:.3f}"
        )
    else:
        how = f"score above {result.threshold:.3f}"
    notes = "".join(f"<li>{e(n)}</li>" for n in result.notes)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "img-src 'self'; style-src 'unsafe-inline'\">",
            "<title>earlyia: tonight's observing list</title>",
            f"<style>{STYLE}</style></head><body>",
            "<h1>Tonight's observing list</h1>",
            f"<p>{result.n_alerts} alerts of {result.n_objects} objects, {result.n_scored} "
            "scored by model "
            f"<code>{e(result.model)}</code> ({e(result.model_path)}).</p>",
            _table(
                rows_cand,
                "Likely early SN Ia",
                f"Reporting rule of `earlyia candidates`, {how}; each object once, "
                "from its latest qualifying alert; the model's training objects left out.",
                query=False,
            ),
            _table(
                rows_al,
                "Active-learning targets",
                f"Spectra that would teach the model most ({strategy}), among "
                "objects passing the follow-up constraints of `earlyia followup select`.",
                query=True,
            ),
            f'<ul class="notes">{notes}</ul>' if notes else "",
            "</body></html>",
            "",
        ]
    )


def observing_list(
    inputs: Iterable[str | Path],
    out: str | Path,
    *,
    model=None,
    min_purity: float = 0.8,
    prevalence: float | str = "auto",
    max_detections: int = 20,
    n_targets: int = 30,
    strategy: str = "uncertainty",
    constraints: Constraints | None = None,
    portal_url: str | None = None,
    allow_survey_mismatch: bool = False,
    chunk_size: int = 20_000,
    format: str | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> TonightResult:
    """Score ``inputs`` and write tonight's observing list into the directory ``out`` (see the
    module docstring).

    ``model``: a model file path or :class:`~earlyia.model.artifact.Model` (default: the shipped
    model, :func:`earlyia.model.shipped.default_model_path`). ``min_purity``, ``prevalence``,
    ``max_detections``: the candidates' card threshold, as ``earlyia candidates --min-purity
    --prevalence --max-ndethist``. ``n_targets``, ``strategy``, ``constraints``: the active-learning
    targets, as ``earlyia followup select``. ``portal_url``: object pages (default: the survey's
    broker portal; ``""`` for none).
    """
    say = progress or (lambda _line: None)
    t0 = time.perf_counter()
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not inputs:
        raise InputError("no input given: pass tonight's alert files or directories")
    if n_targets < 1:
        raise InputError(f"the number of active-learning targets must be >= 1, got {n_targets}")
    if not 0.0 < min_purity <= 1.0:
        raise InputError(f"the target purity must be in (0, 1], got {min_purity}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("the output must be a directory", source=str(out))
    model_path = "the shipped default model"
    if model is None:
        model_file = default_model_path()
        model_path = f"the shipped default model {model_file.name}"
        model = Model.load(model_file)
        survey, bands = card_survey(model.card)
        say(
            f"no model given: using {model_path} ({survey} {','.join(bands or [])}, hash "
            f"{model.hash[:12]})"
        )
    elif not isinstance(model, Model):
        model_path = str(model)
        model = Model.load(model)
    notes: list[str] = []
    note = model.version_note()
    if note:
        notes.append(note)
    scores_path = out / "scores.parquet"
    summary = score_files(
        inputs,
        model,
        scores_path,
        chunk_size=chunk_size,
        format=format,
        allow_survey_mismatch=allow_survey_mismatch,
    )
    notes += summary.notes
    say(
        f"scored {summary.n_rows} alerts ({summary.n_passed} by the model) in "
        f"{summary.seconds:.1f} s -> {scores_path}"
    )
    scores = pd.read_parquet(scores_path)
    if summary.n_passed == 0:
        top = sorted(summary.reasons.items(), key=lambda kv: -kv[1])[:3]
        notes.append(
            "no alert could be scored: "
            + ("; ".join(f"{k} ({v})" for k, v in top) or "no input rows")
        )
    # likely early SN Ia: `earlyia candidates` with its default rule at the card threshold
    card = model.card
    operating = None
    if card.get("operating_curves") or card.get("operating_points"):
        threshold, operating = operating_threshold(
            card,
            scores,
            prevalence=prevalence,
            max_detections=max_detections,
            min_purity=min_purity,
        )
        adjust = operating.pop("adjust")
        if adjust is not None:
            scores = scores.assign(probability=adjust(scores["score"].to_numpy(float)))
    else:
        threshold = 0.5
        notes.append("the model card has no operating point: candidates use score > 0.5")
    prohibited = model.prohibited_object_ids()
    rule = CandidateRule(min_score=threshold, max_ndethist=max_detections)
    sel = select_candidates(scores, rule, prohibited=prohibited, source=str(scores_path))
    notes += sel.notes
    # active-learning targets: `earlyia followup select`'s choice, without a follow-up database
    latest = latest_alerts(scores, source=str(scores_path))
    constraints, skipped = _usable_constraints(latest, constraints or Constraints())
    notes += skipped
    al = choose(
        latest,
        n=n_targets,
        strategy=strategy,
        constraints=constraints,
        exclude={"prohibited": set(prohibited)},
        feature_names=model.features,
        random_state=seed,
        source=str(scores_path),
    ).al
    survey, _bands = card_survey(card)
    portal = PORTALS.get(survey or "") if portal_url is None else portal_url
    rows_cand = _rows(sel.candidates, "early_ia", portal)
    rows_al = _rows(al, "active_learning", portal)
    wanted: dict[str, str] = {}
    for oid in [*rows_cand["object_id"], *rows_al["object_id"]]:
        if oid not in wanted:
            wanted[oid] = f"lc_{len(wanted) + 1:04d}.png"
    drawn = _plots(inputs, wanted, out, chunk_size=chunk_size, format=format)
    for rows in (rows_cand, rows_al):
        rows["image"] = [drawn.get(o, "") for o in rows["object_id"]]
    missing = [o for o in wanted if o not in drawn]
    if missing:
        notes.append(
            f"{len(missing)} object(s) without a light-curve plot (not found again in the inputs)"
        )
    result = TonightResult(
        out=out,
        candidates=rows_cand,
        targets=rows_al,
        n_alerts=len(scores),
        n_objects=int(scores["object_id"].astype(str).nunique()) if len(scores) else 0,
        n_scored=summary.n_passed,
        model=model.hash[:12],
        model_path=model_path,
        threshold=float(threshold),
        operating_point=operating,
        notes=notes,
    )
    table = pd.concat([rows_cand, rows_al], ignore_index=True)[list(CSV_COLUMNS)]
    write_csv_for_people(table, out / "tonight.csv")
    summary_json = {
        "model": model.hash,
        "model_path": model_path,
        "threshold": float(threshold),
        "operating_point": operating,
        "n_alerts": result.n_alerts,
        "n_objects": result.n_objects,
        "n_scored": result.n_scored,
        "candidates": rows_cand["object_id"].tolist(),
        "targets": rows_al["object_id"].tolist(),
        "strategy": strategy,
        "notes": notes,
    }
    text = json.dumps(summary_json, indent=2, default=str)
    atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(text))
    page = render_page(result, rows_cand, rows_al, strategy)
    atomic_write(out / "index.html", lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    result.seconds = time.perf_counter() - t0
    return result
