"""``earlyia followup``: the live active-learning loop (select, notify, label, retrain) on a
SQLite database."""

from __future__ import annotations

import argparse
import sys

from earlyia.errors import ConfigError
from earlyia.followup.promotion import METRICS, PromotionRule

EPILOG = """the nightly loop:
  export EARLYIA_DB=$HOME/earlyia/loop.db                  # or --db PATH (default ./earlyia.db)
  earlyia followup register MODEL.eia --production         # once: the model that scores the stream
  earlyia followup select --scores SCORES.parquet --n 30   # uncertainty sampling + early-SN-Ia list
  EARLYIA_SLACK_BOT_TOKEN=xoxb-... earlyia followup notify --sink slack-bot --al-channel C0123ABCDEF
  --early-channel C0456GHIJKL
  earlyia followup label classifications.csv               # or: --format tns tns_search.csv
  # promoted only if not worse than production
  earlyia followup retrain --features FEATURES.parquet
  earlyia models list | earlyia models rollback
"""


def _opt_float(text: str) -> float | None:
    if text.lower() in ("none", "off", "no"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db", help="SQLite database of the loop (default: $EARLYIA_DB, else ./earlyia.db)"
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "followup",
        help="live active learning: select targets, notify Slack, ingest spectra, retrain, promote",
        description=(
            "Run the spectroscopic follow-up loop. State (selections, requests, labels, "
            "models) lives in one SQLite "
            "database; every command is one transaction, so an interrupted command changes nothing."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fs = p.add_subparsers(dest="followup_command", metavar="ACTION")

    r = fs.add_parser(
        "register",
        help="add a model file to the registry (--production to serve it)",
        description="Register an existing model (its card gives the training set = prohibited "
        "list) and "
        "the "
        "rows it learned from (needed to retrain it), stored beside the database.",
        epilog="example:\n  earlyia train lc.parquet --labels objects.csv --out model.eia "
        "--training-rows rows.parquet\n"
        "  earlyia followup register model.eia --training-rows rows.parquet --production",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("model", help="an earlyia model file (earlyia train)")
    r.add_argument(
        "--training-rows",
        metavar="ROWS",
        help="the rows the model learned from (`earlyia train --training-rows`); without them it "
        "cannot be retrained",
    )
    r.add_argument(
        "--production",
        action="store_true",
        help="put it in production (the current one is retired)",
    )
    _add_db(r)
    r.set_defaults(func=run_register)

    s = fs.add_parser(
        "select",
        help="choose tonight's targets from a score file",
        description="Choose targets by active learning under observability constraints, plus "
        "the list of "
        "likely early SN Ia (score > 0.5, young), and record them as follow-up requests.",
        epilog="examples:\n  earlyia followup select --scores scores.parquet --n 30\n"
        "  earlyia followup select --scores scores.parquet --strategy cost_aware --budget 20 "
        "--mag-limit 19",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument(
        "--scores",
        required=True,
        help="SCORES.parquet written by `earlyia score`, or the output directory of `earlyia "
        "stream` "
        "(all its nights; or its scores/night=YYYY-MM-DD folder for one night)",
    )
    s.add_argument(
        "--n", type=int, default=30, help="number of active-learning targets (default 30)"
    )
    s.add_argument(
        "--n-early", type=int, default=None, help="length of the early-SN-Ia list (default: --n)"
    )
    s.add_argument(
        "--strategy",
        default="uncertainty",
        help="uncertainty (default, Fink's rule), batch_diverse, cost_aware, random, or any "
        "earlyia.learn strategy",
    )
    s.add_argument(
        "--budget",
        type=float,
        default=None,
        help="total cost allowed, in exposures of an 18-mag object",
    )
    s.add_argument("--dec-min", type=_opt_float, default=-90.0, help="lowest declination (deg)")
    s.add_argument(
        "--dec-max",
        type=_opt_float,
        default=20.0,
        help="declination must be below this (deg; Siding Spring: 20)",
    )
    s.add_argument(
        "--max-days",
        type=_opt_float,
        default=20.0,
        help="max days since the first detection (default 20)",
    )
    s.add_argument(
        "--mag-limit",
        type=_opt_float,
        default=19.5,
        help="faintest last magnitude (default 19.5; 'none' = off)",
    )
    s.add_argument(
        "--min-drb",
        "--drb-min",
        dest="drb_min",
        type=_opt_float,
        default=0.5,
        help="drb must exceed this (default 0.5; skipped with a note when no alert carries drb; "
        "none: off)",
    )
    s.add_argument(
        "--min-classtar",
        "--classtar-min",
        dest="classtar_min",
        type=_opt_float,
        default=0.4,
        help="classtar must exceed this (default 0.4; skipped with a note when no alert carries "
        "it; none: off)",
    )
    s.add_argument(
        "--min-score", type=float, default=0.0, help="score must exceed this (default 0)"
    )
    s.add_argument("--early-min-score", type=float, default=0.5)
    s.add_argument("--early-max-days", type=float, default=10.0)
    s.add_argument("--seed", type=int, default=0, help="random tie-breaking seed")
    s.add_argument(
        "--model",
        help="model file whose training ids are also excluded (default: the scoring model if "
        "registered)",
    )
    _add_db(s)
    s.set_defaults(func=run_select)

    n = fs.add_parser(
        "notify",
        help="post the pending targets (Slack bot or webhook, a file or stdout), each once",
        description="Post each selected target exactly once. --sink slack-bot (like Fink's bot) "
        "posts "
        "with "
        "the bot token in EARLYIA_SLACK_BOT_TOKEN: a nightly summary first in each list's channel, "
        "one message per target, its light curve and cutouts as files. --sink slack posts to the "
        "incoming webhook in EARLYIA_SLACK_WEBHOOK. Secrets are never printed. A post whose "
        "outcome is unknown (timeout after sending, dropped connection) is never re-sent blindly: "
        "the bot checks the channel's history first; a webhook cannot, so the post is reported "
        "and re-sent only with --retry-unknown.",
        epilog="examples:\n"
        "  EARLYIA_SLACK_BOT_TOKEN=xoxb-... earlyia followup notify --sink slack-bot \\\n"
        "      --al-channel C0123ABCDEF --early-channel C0456GHIJKL --lightcurves alerts/\n"
        "  EARLYIA_SLACK_WEBHOOK=... earlyia followup notify\n"
        "  earlyia followup notify --sink file:tonight.jsonl\n  earlyia followup notify "
        "--sink stdout --list al\n"
        "  earlyia followup notify --retry-unknown ZTF24abcdefg   # after checking it is not "
        "in the channel",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    n.add_argument(
        "--sink",
        default="slack",
        help="slack (incoming webhook, default), slack-bot (Web API: summary, files, history "
        "checks), stdout or file:PATH",
    )
    n.add_argument(
        "--al-channel",
        help="slack-bot: channel ID of the active-learning list (default "
        "$EARLYIA_SLACK_AL_CHANNEL)",
    )
    n.add_argument(
        "--early-channel",
        help="slack-bot: channel ID of the early-SN-Ia list (default $EARLYIA_SLACK_EARLY_CHANNEL)",
    )
    n.add_argument(
        "--list",
        choices=["al", "early", "both"],
        default="both",
        help="which list to post (default both)",
    )
    n.add_argument(
        "--retry-failed",
        action="store_true",
        help="also re-send requests that failed permanently before",
    )
    n.add_argument(
        "--retry-unknown",
        nargs="*",
        metavar="OBJECT_ID",
        default=None,
        help="re-send posts whose outcome is unknown and cannot be checked (webhook): all, or "
        "only these objects; "
        "pass it after checking the channel for their 'earlyia ref'",
    )
    n.add_argument(
        "--resend-interrupted", action="store_true", help=argparse.SUPPRESS
    )  # the former name of --retry-unknown
    n.add_argument(
        "--summary",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="post each list's nightly summary first in its channel (default: on for slack-bot "
        "only)",
    )
    n.add_argument(
        "--pace",
        type=float,
        default=None,
        help="seconds between two posts (default 3 for slack and slack-bot, else 0)",
    )
    n.add_argument(
        "--verify-after",
        type=float,
        default=30.0,
        help="slack-bot: seconds after an unknown outcome before the channel's history is read "
        "(default 30)",
    )
    n.add_argument("--max-attempts", type=int, default=5)
    n.add_argument(
        "--backoff",
        type=float,
        default=1.0,
        help="first retry delay in seconds (doubles each time)",
    )
    n.add_argument("--max-delay", type=float, default=60.0)
    n.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout per attempt (s)")
    n.add_argument(
        "--lightcurves",
        help="light curves of the targets (any input `earlyia convert` reads): a light-curve PNG "
        "(slack-bot uploads it with the alerts' cutouts; slack needs --upload-url)",
    )
    n.add_argument(
        "--no-cutouts",
        action="store_true",
        help="slack-bot: do not attach the cutouts of the --lightcurves alerts",
    )
    n.add_argument(
        "--upload-url",
        help='slack: where to POST the PNGs (answers JSON {"url": ...}); default '
        "$EARLYIA_UPLOAD_URL",
    )
    _add_db(n)
    n.set_defaults(func=run_notify)

    lab = fs.add_parser(
        "label",
        help="ingest spectroscopic classifications (CSV or TNS search export)",
        description="Map types to classes with earlyia.labels.TypeMap ('SN Ia' positive, Ia "
        "sub-types "
        "with "
        "--include-subtypes, 'SN' and vague types unlabelled, all others negative). Unknown "
        "objects, conflicts and duplicates are reported; valid rows are stored.",
        epilog="examples:\n  earlyia followup label spectra.csv   # "
        "object_id,type,date,source[,who]\n"
        "  earlyia followup label tns_search.csv --format tns --include-subtypes",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lab.add_argument("file")
    lab.add_argument("--format", choices=["csv", "tns"], default="csv")
    lab.add_argument(
        "--include-subtypes",
        action="store_true",
        help="count SN Ia sub-types (91T-like, pec, ...) as positive",
    )
    lab.add_argument(
        "--positive", nargs="+", default=["SN Ia"], help="positive types (default: 'SN Ia')"
    )
    lab.add_argument(
        "--allow-unknown", action="store_true", help="store labels of objects the loop never saw"
    )
    lab.add_argument("--strict", action="store_true", help="exit 1 when any row was rejected")
    lab.add_argument(
        "--max-problems",
        type=int,
        default=20,
        metavar="N",
        help="print at most N rejected rows (default 20)",
    )
    _add_db(lab)
    lab.set_defaults(func=run_label)

    t = fs.add_parser(
        "retrain",
        help="retrain with the new labels; promote only on evidence that it is not worse",
        description="Train on production's stored training rows + the rows of the objects labelled "
        "since, "
        "compare both models as deployed (per object, each at its own card threshold) on the fixed "
        "validation rows, and promote when the validation set is large enough and a paired "
        "bootstrap "
        "over its objects bounds the loss of the metric by --margin with --confidence.",
        epilog="example:\n  earlyia followup retrain --features tonight_features.parquet\n"
        "  earlyia followup retrain --features f.parquet --margin 0.01 --confidence 0.95",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument(
        "--features",
        required=True,
        help="feature table (earlyia features) with the rows of the newly labelled objects (and, "
        "the first time, "
        "of the validation objects); production's own rows come from the registry",
    )
    t.add_argument(
        "--validation",
        help="labelled feature table to validate on (default: the database's fixed validation "
        "rows)",
    )
    d = PromotionRule()
    t.add_argument(
        "--metric",
        default=d.metric,
        choices=METRICS,
        help=f"metric of the decision (default {d.metric})",
    )
    t.add_argument(
        "--margin",
        type=float,
        default=d.margin,
        help=f"tolerated loss of the metric (default {d.margin})",
    )
    t.add_argument(
        "--confidence",
        type=float,
        default=d.confidence,
        help=f"confidence that the loss is within the margin (default {d.confidence})",
    )
    t.add_argument(
        "--min-validation-objects",
        type=int,
        default=d.min_objects,
        help=f"no promotion with fewer validation objects (default {d.min_objects})",
    )
    t.add_argument(
        "--min-validation-positives",
        type=int,
        default=d.min_positive,
        help=f"no promotion with fewer positive validation objects (default {d.min_positive})",
    )
    t.add_argument(
        "--bootstrap",
        type=int,
        default=d.n_bootstrap,
        help=f"paired bootstrap resamples (default {d.n_bootstrap})",
    )
    t.add_argument("--validation-fraction", type=float, default=0.3)
    t.add_argument(
        "--use-feature-labels",
        action="store_true",
        help="also learn from the feature table's own labels",
    )
    t.add_argument(
        "--no-promote", action="store_true", help="register the candidate without promoting it"
    )
    t.add_argument("--include-subtypes", action="store_true")
    t.add_argument("--n-estimators", type=int, default=None, help="trees (default: production's)")
    t.add_argument("--seed", type=int, default=42)
    _add_db(t)
    t.set_defaults(func=run_retrain)

    st = fs.add_parser("status", help="counts of the database tables and the requests by status")
    _add_db(st)
    st.set_defaults(func=run_status)

    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])


def _open(args):
    from earlyia.followup.db import FollowupDB, resolve_db_path

    return FollowupDB(resolve_db_path(getattr(args, "db", None)))


def run_register(args) -> int:
    from earlyia.followup.model_registry import register

    with _open(args) as db:
        version = register(
            db, args.model, production=args.production, training_rows=args.training_rows
        )
    print(f"registered model {version[:12]} as {'production' if args.production else 'candidate'}")
    return 0


def run_select(args) -> int:
    from earlyia.followup.config import Constraints, EarlyList
    from earlyia.followup.targets import format_table, select

    c = Constraints(
        dec_min=args.dec_min,
        dec_max=args.dec_max,
        max_days_since_first=args.max_days,
        mag_limit=args.mag_limit,
        drb_min=args.drb_min,
        classtar_min=args.classtar_min,
        min_score=args.min_score,
    )
    e = EarlyList(
        min_score=args.early_min_score,
        max_days_since_first=args.early_max_days,
        n=args.n if args.n_early is None else args.n_early,
    )
    prohibited = None
    if args.model:
        from earlyia.model.artifact import Model

        prohibited = set(Model.load(args.model).prohibited_object_ids())
    with _open(args) as db:
        sel = select(
            db,
            args.scores,
            n=args.n,
            strategy=args.strategy,
            constraints=c,
            early=e,
            budget=args.budget,
            random_state=args.seed,
            prohibited=prohibited,
        )
    print(format_table(sel))
    print(
        f"selection {sel.selection_id} recorded (model {str(sel.model_version)[:12]}); post "
        "it with `earlyia followup notify`"
    )
    return 0


def run_notify(args) -> int:
    from earlyia.followup.config import RetryPolicy
    from earlyia.followup.notify import notify
    from earlyia.followup.sinks import make_sink

    for option in ("pace", "verify_after", "timeout", "backoff", "max_delay"):
        value = getattr(args, option)
        if value is not None and not value >= 0:
            raise ConfigError(f"--{option.replace('_', '-')} must be >= 0, got {value}")
    retry = RetryPolicy(
        max_attempts=args.max_attempts,
        base_delay=args.backoff,
        max_delay=args.max_delay,
        timeout=args.timeout,
    )
    bot = args.sink == "slack-bot"
    lists = ("al", "early") if args.list == "both" else (args.list,)
    sink = make_sink(
        args.sink, retry=retry, channels={"al": args.al_channel, "early": args.early_channel}
    )
    if bot:
        for list_ in lists:
            sink.destination(list_)  # a missing channel is a clear error before anything is posted
    image_for = attachments = None
    if args.lightcurves:
        import os

        from earlyia.io import read

        lc = read(args.lightcurves)
        if bot:
            from earlyia.followup.cutouts import TargetFiles

            attachments = TargetFiles(lc, None if args.no_cutouts else args.lightcurves)
        else:
            from earlyia.followup.notify import ImageUploader

            url = args.upload_url or os.environ.get("EARLYIA_UPLOAD_URL", "")
            if not url:
                raise ConfigError(
                    "--lightcurves with --sink slack needs --upload-url (or "
                    "EARLYIA_UPLOAD_URL): where to upload "
                    "the PNGs; --sink slack-bot uploads them to Slack itself"
                )
            image_for = ImageUploader(lc, url, retry=retry)
    retry_unknown = (
        True
        if args.resend_interrupted or args.retry_unknown == []
        else set(args.retry_unknown or ())
    )
    pace = (
        args.pace
        if args.pace is not None
        else (3.0 if args.sink in ("slack", "slack-bot") else 0.0)
    )
    with _open(args) as db:
        report = notify(
            db,
            sink,
            lists=lists,
            retry_failed=args.retry_failed,
            retry_unknown=retry_unknown or False,
            image_for=image_for,
            attachments_for=attachments,
            summary=bot if args.summary is None else args.summary,
            pace=pace,
            verify_after=args.verify_after,
            max_sends=2,
        )
    for err in [
        *getattr(image_for, "errors", []),
        *getattr(attachments, "problems", []),
        *report.warnings,
    ]:
        print(f"  warning: {err}", file=sys.stderr)
    out = sys.stderr if args.sink == "stdout" else sys.stdout
    parts = [
        f"{len(report.posted)} posted to {sink.channel}",
        f"{len(report.failed)} failed",
        f"{len(report.deferred)} deferred",
        f"{len(report.unknown)} unknown",
        f"{len(report.skipped)} taken by another process",
    ]
    if report.found:
        parts.append(f"{len(report.found)} found already in the channel (not re-sent)")
    if report.summaries:
        parts.append(f"summary posted for {' and '.join(report.summaries)}")
    if report.files:
        parts.append(f"files posted for {len(report.files)}")
    print(", ".join(parts), file=out)
    for label, why in report.failed + report.deferred + report.unknown:
        print(f"  {label}: {why}", file=sys.stderr)
    for label, why in report.still_unknown:
        print(f"  {label}: {why}", file=sys.stderr)
    if report.stopped:
        print(f"stopped: {report.stopped}", file=sys.stderr)
    return 0 if report.ok else 1


def run_label(args) -> int:
    from earlyia.followup.ingest import ingest_labels, known_objects, read_label_csv, read_label_tns
    from earlyia.labels import TypeMap

    tm = TypeMap(positive=tuple(args.positive), include_subtypes=args.include_subtypes)
    with _open(args) as db:
        frame = (
            read_label_tns(args.file, known_objects(db))
            if args.format == "tns"
            else read_label_csv(args.file)
        )
        report = ingest_labels(
            db, frame, type_map=tm, file=str(args.file), allow_unknown=args.allow_unknown
        )
    for problem in report.problems[: max(args.max_problems, 0)]:
        print(f"  {problem}", file=sys.stderr)
    if len(report.problems) > max(args.max_problems, 0):
        print(
            f"  ... and {len(report.problems) - max(args.max_problems, 0)} more (--max-problems N)",
            file=sys.stderr,
        )
    print(report.summary())
    print(f"positive class: {tm.describe()}")
    return 1 if (args.strict and report.problems) else 0


def run_retrain(args) -> int:
    from earlyia.features.io import read_features
    from earlyia.followup.retrain import retrain
    from earlyia.labels import TypeMap

    feats, meta = read_features(args.features)
    validation = read_features(args.validation)[0] if args.validation else None
    tm = TypeMap(include_subtypes=args.include_subtypes)
    rule = PromotionRule(
        metric=args.metric,
        margin=args.margin,
        confidence=args.confidence,
        min_objects=args.min_validation_objects,
        min_positive=args.min_validation_positives,
        n_bootstrap=args.bootstrap,
        random_state=args.seed,
    )
    rule.check()
    with _open(args) as db:
        rep = retrain(
            db,
            feats,
            meta["extractor"],
            validation=validation,
            rule=rule,
            type_map=tm,
            validation_fraction=args.validation_fraction,
            use_feature_labels=args.use_feature_labels,
            auto_promote=not args.no_promote,
            n_estimators=args.n_estimators,
            random_state=args.seed,
        )
    print(rep.summary())
    return 0


def run_status(args) -> int:
    with _open(args) as db:
        counts = db.counts()
        by_status = db.query(
            "SELECT list, status, COUNT(*) AS n FROM requests GROUP BY list, status ORDER BY "
            "list, status"
        )
        prod = db.query("SELECT version FROM models WHERE status = 'production'")
        print(f"database {db.path} (schema v{db.schema_version()})")
        for t, k in counts.items():
            print(f"  {t:16s} {k}")
        for r in by_status:
            print(f"  requests[{r['list']}] {r['status']}: {r['n']}")
        if "posts" in counts:
            for r in db.query(
                "SELECT kind, status, COUNT(*) AS n FROM posts GROUP BY kind, status ORDER "
                "BY kind, status"
            ):
                print(f"  posts[{r['kind']}] {r['status']}: {r['n']}")
        print(f"  production model: {prod[0]['version'][:12] if prod else 'none'}")
    return 0


# -- `earlyia models list|promote|rollback` (registered by cli/models.py)
# ------------------------------
def add_models_commands(models_sub: argparse._SubParsersAction) -> None:
    """Add ``list``, ``promote`` and ``rollback`` to the ``earlyia models`` subparsers."""
    ls = models_sub.add_parser(
        "list",
        help="models of the follow-up registry with status, parent and validation FoM",
        epilog="example:\n  earlyia models list --db loop.db",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_db(ls)
    ls.set_defaults(func=run_models_list)
    pr = models_sub.add_parser(
        "promote",
        help="put a registered model in production (the current one is kept for rollback)",
        epilog="example:\n  earlyia models promote 3fa9c2e1b7",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pr.add_argument("version", help="model hash or a unique prefix (>= 6 characters)")
    pr.add_argument("--reason", default="promoted by hand")
    _add_db(pr)
    pr.set_defaults(func=run_models_promote)
    rb = models_sub.add_parser(
        "rollback",
        help="restore the model production replaced",
        epilog="example:\n  earlyia models rollback",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rb.add_argument("--reason", default="rolled back by hand")
    _add_db(rb)
    rb.set_defaults(func=run_models_rollback)


def run_models_list(args) -> int:
    from earlyia.followup.model_registry import format_models, list_models

    with _open(args) as db:
        print(format_models(list_models(db)))
    return 0


def run_models_promote(args) -> int:
    from earlyia.followup.model_registry import promote

    with _open(args) as db:
        new, old = promote(db, args.version, reason=args.reason)
    print(
        f"model {new[:12]} is in production"
        + (f" (replacing {old[:12]}, kept for rollback)" if old else "")
    )
    return 0


def run_models_rollback(args) -> int:
    from earlyia.followup.model_registry import rollback

    with _open(args) as db:
        restored, demoted = rollback(db, reason=args.reason)
    print(f"rolled back: {restored[:12]} is in production again, {demoted[:12]} retired")
    return 0
