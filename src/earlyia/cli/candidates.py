"""``earlyia candidates``: early SN Ia candidates from a SCORES table, as a TNS AT report (and
sent on request)."""

from __future__ import annotations

import argparse
import json
import os
import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd

from earlyia.errors import InputError, RemoteError
from earlyia.io.spreadsheet import write_csv_for_people
from earlyia.io.table import atomic_write
from earlyia.report.candidates import (
    CandidateRule,
    ReportedRecord,
    operating_threshold,
    select_candidates,
)
from earlyia.report.submit import SubmitResult, SubmitSettings, collect_earlier, submit_candidates
from earlyia.report.tns import (
    SANDBOX_URL,
    TNSConfig,
    TNSCredentials,
    build_bulk_report,
    human_table,
    markdown_table,
    redact_url,
)
from earlyia.score.scores_file import model_version_of
from earlyia.score.scores_file import read_scores as read_scores_file

ENV_RECORD = "EARLYIA_REPORTED_DB"
DEFAULT_RECORD = "earlyia-reported.sqlite"

EPILOG = """examples:
  # candidates with Fink's rule; writes candidates.csv/.md, tns_report.json and summary.json
  earlyia candidates scores.parquet --out cands --model model.eia \\
      --reporting-group-id 42 --reporter "A. Astronomer on behalf of earlyia"
  # data without SuperNNova, drb or classtar (e.g. a replay): disable those cuts explicitly
  earlyia candidates scores.parquet --out cands --min-drb none --min-classtar none
  # send to the TNS sandbox (bot credentials from EARLYIA_TNS_BOT_ID, EARLYIA_TNS_BOT_NAME,
  # EARLYIA_TNS_API_KEY)
  earlyia candidates scores.parquet --out cands --model model.eia --send \\
      --tns-url https://sandbox.wis-tns.org
  # after checking on the TNS that reports of unknown outcome did not arrive: let them be sent again
  earlyia candidates --release-unknown ZTF24aaaaaaa ZTF24aaaaaab

Objects are reported once: the record (--record, default $EARLYIA_REPORTED_DB or
./earlyia-reported.sqlite) keeps each object's state (pending, sent, accepted with its TNS name,
rejected, unknown). A report whose outcome is unknown (no reply after it was sent) is never re-sent
blindly: check its objects on the TNS, then release those it does not have with --release-unknown.
"""


def _threshold(text: str) -> float | str | None:
    if text.strip().lower() in ("none", "off", "no"):
        return None
    if text.strip().lower() == "card":
        return "card"
    try:
        return float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from exc


def _prevalence(text: str) -> float | str:
    t = text.strip().lower()
    if t in ("auto", "training"):
        return t
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected a fraction in (0, 1), 'auto' or 'training', got {text!r}"
        ) from exc
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(
            f"a prevalence must be strictly between 0 and 1, got {text!r}"
        )
    return value


def _card_of(model_path: str | None, metas: list[dict]) -> dict | None:
    """The model card: from --model, else the card summary the SCORES metadata carries."""
    if model_path:
        from earlyia.model.artifact import Model

        return Model.load(model_path).card
    return next((m["model"] for m in metas if isinstance(m.get("model"), dict)), None)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "candidates",
        help="early SN Ia candidates from scores: CSV/Markdown tables and a TNS AT bulk report",
        description=(
            "Apply the reporting rule (default: Fink's: score > 0.5 AND (snn_snia_vs_nonia > "
            "0.5 OR snn_sn_vs_all > 0.5) "
            "AND ndethist <= 20 AND drb > 0.5 AND classtar > 0.4 AND an extragalactic SIMBAD "
            "type) to every alert; report "
            "each object once, from its latest qualifying alert, leaving out the model's "
            "training objects and objects "
            "already reported. A threshold of 'none' disables that cut; SuperNNova columns "
            "are used when present."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scores", nargs="*", help="SCORES Parquet file(s) written by `earlyia score`")
    p.add_argument("--out", help="output directory (required with SCORES)")
    p.add_argument(
        "--model", help="the model that made the scores: its training objects are never reported"
    )
    p.add_argument(
        "--calibration",
        help="calibration JSON (earlyia calibrate): the rule then thresholds the "
        "calibrated probability; the raw score is kept as score_raw",
    )
    g = p.add_argument_group("rule (Fink's defaults; 'none' disables a cut)")
    d = CandidateRule()
    g.add_argument(
        "--min-score",
        type=_threshold,
        default="card",
        metavar="X",
        help="score threshold; default 'card': the model card's threshold for purity >= "
        "--min-purity within --max-ndethist "
        "detections at the stream's prevalence (see --prevalence), from the held-out curve "
        "`earlyia train` measured",
    )
    g.add_argument(
        "--min-purity",
        type=float,
        default=0.8,
        metavar="P",
        help="purity the card threshold aims at (default 0.8)",
    )
    g.add_argument(
        "--prevalence",
        type=_prevalence,
        default="auto",
        metavar="PI",
        help="fraction of SN Ia among the stream's objects: a number, 'training' (the model's), "
        "or 'auto' (default: estimated "
        "from these scores by EM prior adjustment, Saerens et al. 2002); moves the card "
        "threshold and the probabilities",
    )
    g.add_argument(
        "--min-snn",
        type=_threshold,
        default=d.min_snn,
        metavar="X",
        help="SuperNNova threshold (either column)",
    )
    g.add_argument("--max-ndethist", type=_threshold, default=d.max_ndethist, metavar="N")
    g.add_argument("--min-drb", type=_threshold, default=d.min_drb, metavar="X")
    g.add_argument("--min-classtar", type=_threshold, default=d.min_classtar, metavar="X")
    g.add_argument(
        "--any-xmatch", action="store_true", help="do not require an extragalactic SIMBAD type"
    )
    g.add_argument(
        "--ignore-selection",
        action="store_true",
        help="do not require the scorer's own selection cuts (passed)",
    )
    t = p.add_argument_group("TNS")
    t.add_argument(
        "--reporting-group-id",
        help="TNS reporting group id (default $EARLYIA_TNS_REPORTING_GROUP_ID)",
    )
    t.add_argument(
        "--data-source-id",
        help="TNS discovery data source group (default $EARLYIA_TNS_DATA_SOURCE_ID, else the "
        "survey's: 48 for ZTF)",
    )
    t.add_argument("--reporter", help="reporter line (default $EARLYIA_TNS_REPORTER)")
    t.add_argument(
        "--survey", default="ZTF", help="selects TNS instrument and filter ids (ZTF, LSST)"
    )
    t.add_argument(
        "--portal-url",
        default=None,
        metavar="URL",
        help="broker portal the remarks link to as URL/<object id> (default "
        "$EARLYIA_TNS_PORTAL_URL, else the "
        "survey's: https://fink-portal.org for ZTF); 'none' for no link",
    )
    t.add_argument(
        "--send",
        action="store_true",
        help="post the report to the TNS (bot credentials from the environment)",
    )
    t.add_argument(
        "--tns-url",
        default=SANDBOX_URL,
        help=f"TNS (or compatible) base URL (default: the sandbox, {SANDBOX_URL})",
    )
    t.add_argument(
        "--batch-size", type=int, default=50, help="candidates per bulk report sent (default 50)"
    )
    t.add_argument(
        "--record",
        default=None,
        help=f"reported-objects record (SQLite; default ${ENV_RECORD} or ./{DEFAULT_RECORD})",
    )
    t.add_argument(
        "--release-unknown",
        nargs="+",
        metavar="OBJECT",
        help="run alone (no SCORES): forget these objects whose report outcome is unknown, after "
        "checking that the "
        "TNS does not have them, so that they may be reported again",
    )
    n = p.add_argument_group("TNS network (defaults suit the TNS)")
    n.add_argument(
        "--tns-timeout",
        type=_timeout,
        default=60.0,
        metavar="S",
        help="seconds without an answer before a request "
        "counts as unanswered (default 60; a report then has an unknown outcome)",
    )
    n.add_argument(
        "--retry-wait",
        type=_positive,
        default=2.0,
        metavar="S",
        help="first wait before re-trying a refused connection or a 429 without Retry-After, "
        "doubled each time "
        "(default 2; at most 5 attempts)",
    )
    n.add_argument(
        "--reply-wait",
        type=_positive,
        default=5.0,
        metavar="S",
        help="first wait before asking the TNS for its answer to a report, doubled while it is "
        "processing (default 5)",
    )
    n.add_argument(
        "--reply-polls",
        type=int,
        default=6,
        metavar="N",
        help="times to ask for the answer before leaving the report 'sent' for the next run "
        "(default 6)",
    )
    n.add_argument(
        "--lock-wait",
        type=_positive,
        default=600.0,
        metavar="S",
        help="seconds to wait for another run sending with the same record (default 600)",
    )
    p.set_defaults(func=run)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from exc
    if not np.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number of seconds, got {text!r}")
    return value


def _timeout(text: str) -> float:
    value = _positive(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a timeout must be more than 0 seconds, got {text!r}")
    return value


def read_scores(paths: list[str]) -> tuple[pd.DataFrame, list[dict]]:
    """Concatenated SCORES tables (files or ``earlyia stream`` folders) and each input's
    ``earlyia.scores`` metadata."""
    frames, metas = [], []
    for path in paths:
        frame, meta = read_scores_file(path)
        frames.append(frame)
        metas.append(meta)
    df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return df, metas


def _record(args: argparse.Namespace) -> ReportedRecord:
    return ReportedRecord(args.record or os.environ.get(ENV_RECORD) or DEFAULT_RECORD)


def release_unknown(args: argparse.Namespace) -> int:
    if args.scores or args.send:
        raise InputError("--release-unknown runs alone: give only the object ids (and --record)")
    record = _record(args)
    if not record.path.exists():
        raise InputError("no such record", source=str(record.path))
    with record.exclusive(wait=args.lock_wait):
        released = record.release_unknown(args.release_unknown)
    print(
        f"released {len(released)} object(s) from {record.path}; they may be reported again: "
        f"{', '.join(released)}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    if args.release_unknown:
        return release_unknown(args)
    if not args.scores:
        raise InputError("give the SCORES Parquet file(s) to select candidates from")
    if not args.out:
        raise InputError(
            "--out is required: the directory for candidates.csv/.md, tns_report.json and "
            "summary.json"
        )
    record = _record(args)
    if not args.send:
        return _run(args, record, None)
    parts = urllib.parse.urlsplit(args.tns_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"--tns-url {redact_url(args.tns_url)!r} is not an http(s)://host URL")
    settings = SubmitSettings(
        url=args.tns_url,
        credentials=TNSCredentials.from_env(),
        batch_size=args.batch_size,
        timeout=args.tns_timeout,
        retry_wait=args.retry_wait,
        reply_wait=args.reply_wait,
        reply_polls=max(1, args.reply_polls),
    )
    with record.exclusive(wait=args.lock_wait):
        return _run(args, record, settings)


def _run(args: argparse.Namespace, record: ReportedRecord, settings: SubmitSettings | None) -> int:
    out = Path(args.out)
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    args.reporting_group_id = args.reporting_group_id or os.environ.get(
        "EARLYIA_TNS_REPORTING_GROUP_ID", ""
    )
    args.data_source_id = (
        args.data_source_id or os.environ.get("EARLYIA_TNS_DATA_SOURCE_ID") or None
    )
    args.reporter = args.reporter or os.environ.get("EARLYIA_TNS_REPORTER", "")
    scores, metas = read_scores(args.scores)
    hashes = sorted({h for m in metas if (h := model_version_of(m))})
    if args.calibration:
        from earlyia.report.calibration import ScoreCalibrator

        cal = ScoreCalibrator.load(args.calibration)
        scores = scores.assign(
            score_raw=scores["score"], score=cal.transform(scores["score"].to_numpy(float))
        )
    max_nd = None if args.max_ndethist is None else int(args.max_ndethist)
    notes: list[str] = []
    operating: dict | None = None
    if args.min_score == "card":
        card = _card_of(args.model, metas)
        if card is None or not (card.get("operating_curves") or card.get("operating_points")):
            args.min_score = 0.5
            notes.append("the model card has no operating point: candidates use score > 0.5")
        else:
            args.min_score, operating = operating_threshold(
                card,
                scores,
                prevalence=args.prevalence,
                max_detections=max_nd,
                min_purity=args.min_purity,
            )
            adjust = operating.pop("adjust")
            if adjust is not None:
                scores = scores.assign(probability=adjust(scores["score"].to_numpy(float)))
            print(
                f"prevalence {operating['prevalence']:.3f} "
                f"({operating['prevalence_source']}); threshold {args.min_score:.3f} "
                f"for purity >= {args.min_purity:g} within {operating['max_detections']} "
                "detections "
                f"(held-out efficiency {operating['efficiency']:.3f} at that prevalence)"
            )
    elif args.prevalence not in ("auto", "training"):
        notes.append(
            "--prevalence moves only the card threshold: with a fixed --min-score it changes "
            "nothing"
        )
    rule = CandidateRule(
        min_score=args.min_score,
        min_snn=args.min_snn,
        max_ndethist=max_nd,
        min_drb=args.min_drb,
        min_classtar=args.min_classtar,
        xmatch=() if args.any_xmatch else None,
        require_passed=not args.ignore_selection,
    )
    prohibited: frozenset[str] = frozenset()
    model_id = hashes[0][:12] if len(hashes) == 1 else None
    if args.model:
        from earlyia.model.artifact import Model

        model = Model.load(args.model)
        prohibited = model.prohibited_object_ids()
        model_id = model.hash[:12]
        if hashes and model.hash not in hashes:
            raise InputError(
                f"the scores were made by model(s) {[h[:12] for h in hashes]}, not "
                f"{model.hash[:12]}: "
                "give the model that scored them (its training objects must not be reported)",
                source=args.model,
            )
    else:
        notes.append("no --model given: the model's training objects could not be excluded")
    # the TNS's answers to earlier reports first: an object it has since rejected is a candidate
    # again
    earlier = collect_earlier(record, settings) if settings is not None else None
    sel = select_candidates(
        scores, rule, prohibited=prohibited, record=record, source=", ".join(args.scores)
    )
    cand = sel.candidates
    portal = (
        args.portal_url if args.portal_url is not None else os.environ.get("EARLYIA_TNS_PORTAL_URL")
    )
    config = TNSConfig(
        reporting_group_id=str(args.reporting_group_id),
        reporter=args.reporter,
        discovery_data_source_id=args.data_source_id,
        survey=args.survey,
        portal_url=""
        if portal is not None and portal.strip().lower() in ("", "none", "off")
        else portal,
    )
    if args.send:
        config.validate()
    elif not str(args.reporting_group_id).strip() or not args.reporter.strip():
        notes.append(
            "tns_report.json lacks the reporting group and/or reporter: set them before sending"
        )
    bulk = build_bulk_report(cand, config, model_id=model_id, validate=args.send)
    notes += [f"left out of the TNS report: {p}" for p in bulk.problems]
    table = human_table(cand)
    text = json.dumps(bulk.report, indent=2)
    atomic_write(out / "tns_report.json", lambda tmp: Path(tmp).write_text(text))
    write_csv_for_people(cand, out / "candidates.csv")
    md = (
        f"# Early SN Ia candidates\n\n{len(cand)} candidate(s) from {sel.n_alerts} alerts "
        f"({sel.n_alerts_passing} pass the rule).\n\n"
    )
    md += markdown_table(table)
    atomic_write(out / "candidates.md", lambda tmp: Path(tmp).write_text(md))
    summary = {
        **sel.summary(),
        "notes": sel.notes + notes,
        "record": str(record.path),
        "sent": False,
        "model": model_id,
        "operating_point": operating,
    }
    summary["in_tns_report"] = bulk.object_ids

    def write_summary() -> None:
        stext = json.dumps(summary, indent=2, default=str)
        atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(stext))

    result = None
    if settings is not None:
        summary["tns_url"] = settings.destination
        write_summary()  # what is about to be sent is on disk before anything goes out
        result = submit_candidates(bulk, record, settings, result=earlier)
        summary.update(sent=bool(result.report_ids), tns=result.to_dict())
        if not bulk.object_ids:
            summary["notes"].append("nothing to send")
        if result.failed:
            summary["send_error"] = _error_line(result, out)
    write_summary()
    for note in summary["notes"]:
        print(f"note: {note}")
    print(
        f"{len(cand)} candidate(s) from {sel.n_alerts} alerts -> {out}/candidates.md, "
        "candidates.csv, tns_report.json"
    )
    if result is not None:
        _print_result(result, settings.destination, record)
        if result.failed:
            raise RemoteError(summary["send_error"], permanent=False)
    return 0


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _print_result(result: SubmitResult, destination: str, record: ReportedRecord) -> None:
    for o in result.earlier + result.objects:
        if o.state == "accepted":
            print(f"accepted by the TNS: {o.object_id} -> {o.tns_name}")
        elif o.state == "rejected":
            print(f"rejected by the TNS: {o.object_id}: {_one_line(o.message)}")
        elif o.state == "unknown" and o.previous != "unknown":
            print(f"outcome unknown: {o.object_id} (report {o.report_key}): {_one_line(o.message)}")
        elif o.state == "not sent":
            print(f"not sent: {o.object_id}: {_one_line(o.message)}")
    waiting = result.with_state("sent")
    if waiting:
        ids = sorted({o.report_id for o in waiting})
        print(
            f"awaiting the TNS's answer: {len(waiting)} object(s) of report(s) "
            f"{', '.join(map(str, ids))} "
            f"({destination}); the next --send run asks again"
        )
    if result.not_attempted:
        print(
            f"not attempted after that failure: {len(result.not_attempted)} object(s); the "
            "next run sends them"
        )
    if result.to_check:
        ids = [o.object_id for o in result.to_check]
        print(
            f"check on the TNS: {len(ids)} object(s) whose report may or may not have "
            f"arrived: {', '.join(ids)}. "
            "Those the TNS does not list can be released: earlyia candidates "
            f"--release-unknown {' '.join(ids)} "
            f"--record {record.path}"
        )
    for dest, n in result.other_destinations.items():
        print(
            f"note: {n} object(s) await an answer from {dest}: run --send --tns-url {dest} "
            "(with its credentials) to collect it"
        )
    if result.report_ids:
        print(
            f"sent to {destination} (report id(s) {', '.join(result.report_ids)}); states "
            f"recorded in {record.path}"
        )


def _error_line(result: SubmitResult, out: Path) -> str:
    counts = []
    for state, word in (
        ("rejected", "rejected by the TNS"),
        ("unknown", "with an unknown outcome"),
        ("not sent", "not sent"),
    ):
        n = len([o for o in result.with_state(state) if o.state != o.previous])
        if n:
            counts.append(f"{n} object(s) {word}")
    if result.interrupted:
        counts.append(
            f"{len(result.interrupted)} object(s) left with an unknown outcome by an "
            "interrupted run"
        )
    text = "TNS: " + (", ".join(counts) or "sending stopped")
    if result.stopped:
        text += f" ({_one_line(result.stopped, 200)})"
    return _one_line(f"{text}; details in {out / 'summary.json'}", 500)
