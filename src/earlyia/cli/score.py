"""``earlyia score``: score any supported alert input with a model file, chunk by chunk, into a
SCORES Parquet file."""

from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  # a directory of ZTF Avro alerts
  earlyia score alerts/ --model model.eia --out scores.parquet
  earlyia score ztf_replay_alerts_with_anchor.parquet --model model.eia --out scores.parquet \\
      --chunk-size 2000
  # the model card picks the extractor
  earlyia score lsst_alerts.parquet --model lsst_model.eia --out scores.parquet
  # the shipped default ZTF model
  earlyia score alerts/ --out scores.parquet

One row per alert (per object for inputs without alerts); the columns are documented in
docs/scoring.md. Exit code 0 when at least one alert was scored by the model, 1 when none was (the
file is still written, with the reason of every row), 2 on a usage error or a refused model
(tampered, other features, another survey's alerts without --allow-survey-mismatch).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score alerts with a model file",
        description=(
            "Read any supported input (ZTF Avro alerts, Fink or ZTF alert Parquet, ELAsTiCC, "
            "canonical tables...), "
            "apply the early-SN selection, compute the features the model was trained on "
            "(from its card) and write "
            "one row per alert with the score, whether it passed, why not, and the alert's "
            "context. Inputs are "
            "processed in chunks so memory stays flat; bad alerts are reported in the "
            "output, never fatal."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", nargs="+", help="input files or directories (any supported format)")
    p.add_argument(
        "--model",
        help="model file (`earlyia train`; default: the shipped early model for ZTF alerts)",
    )
    p.add_argument("--out", required=True, help="SCORES Parquet file to write (atomically)")
    p.add_argument(
        "--chunk-size",
        type=int,
        default=5_000,
        help="input rows (alerts) read at a time (default 5000; memory grows with it)",
    )
    p.add_argument(
        "--format",
        help="input format name when detection is not wanted (see `earlyia convert --help`)",
    )
    p.add_argument(
        "--no-select",
        action="store_true",
        help="skip the early-SN selection cuts: score every alert",
    )
    p.add_argument(
        "--allow-survey-mismatch",
        action="store_true",
        help="score alerts of another survey than the model's (refused by default: the scores "
        "would mean nothing)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: only on a terminal)",
    )
    p.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="local (default) or spark: the same scoring in Apache Spark tasks (pip install "
        "'earlyia[spark]'; Parquet inputs)",
    )
    p.add_argument(
        "--master",
        help="Spark master for --engine spark: local[N] (default local[*]), spark://HOST:PORT, "
        "yarn, k8s://URL",
    )
    p.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Spark setting for --engine spark, repeatable (e.g. spark.executor.memory=4g)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from earlyia.errors import InputError
    from earlyia.io.output import check_inputs, check_output
    from earlyia.model.artifact import Model
    from earlyia.score.pipeline import score_files

    if args.chunk_size < 1:
        raise InputError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    spark_conf = _spark_conf(args.conf)
    if args.engine != "spark" and (args.master or spark_conf):
        raise InputError("--master and --conf are Spark settings: add --engine spark")
    shipped = args.model is None
    if shipped:
        from earlyia.model.shipped import default_model_path

        args.model = str(default_model_path())
    spark_folder = args.engine == "spark" and not str(args.out).endswith(".parquet")
    check_output(args.out, [*args.input, args.model], directory=spark_folder)
    model = Model.load(args.model)  # refuses a bad model file before any input is looked at
    check_inputs(args.input)
    if shipped:
        from earlyia.model.survey import card_survey

        survey, bands = card_survey(model.card)
        print(
            f"earlyia score: no --model: using the shipped default model {args.model} "
            f"({survey} {','.join(bands or [])}, "
            f"hash {model.hash[:12]})",
            file=sys.stderr,
        )
    note = model.version_note()
    if note:
        print(f"earlyia score: note: {note}", file=sys.stderr)
    if args.engine == "spark":
        from earlyia.spark import score_spark

        res = score_spark(
            args.input,
            args.model,
            args.out,
            master=args.master or "local[*]",
            conf=spark_conf,
            score_kwargs={"select": not args.no_select},
        )
        print(
            f"earlyia score: {res['n_alerts']} rows with Spark ({res['master']}) -> {res['out']}",
            file=sys.stderr,
        )
        return 0
    summary = score_files(
        args.input,
        model,
        args.out,
        chunk_size=args.chunk_size,
        select=not args.no_select,
        format=args.format,
        progress=args.progress,
        allow_survey_mismatch=args.allow_survey_mismatch,
    )
    for note in summary.notes:
        print(f"earlyia score: warning: {note}", file=sys.stderr)
    rate = f", {summary.rate:,.0f} rows/s" if summary.seconds > 0 else ""
    print(
        f"earlyia score: {summary.n_rows} rows ({summary.n_passed} scored by model "
        f"{model.hash[:12]}, "
        f"{summary.n_rows - summary.n_passed} failed selection/features, "
        f"{summary.n_problems} unreadable) "
        f"in {summary.seconds:.1f} s{rate} -> {summary.path}",
        file=sys.stderr,
    )
    for p in summary.unreadable[:5]:
        print(f"earlyia score: unreadable input: {p}", file=sys.stderr)
    if len(summary.unreadable) > 5:
        print(
            f"earlyia score: ... and {len(summary.unreadable) - 5} more unreadable inputs "
            "(rows with their reason)",
            file=sys.stderr,
        )
    if summary.n_passed == 0:
        top = sorted(summary.reasons.items(), key=lambda kv: -kv[1])[:5]
        detail = "; ".join(f"{k} ({v})" for k, v in top) or "no input rows"
        print(f"earlyia score: nothing could be scored: {detail}", file=sys.stderr)
        return 1
    return 0


def _spark_conf(items: list[str]) -> dict[str, str]:
    """``--conf KEY=VALUE`` options as a dict (a value may itself contain ``=``).

    A malformed option is named by its position, not echoed: it may hold a secret.
    """
    from earlyia.errors import InputError

    conf = {}
    for i, item in enumerate(items, 1):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(
                f"--conf number {i} is not KEY=VALUE (e.g. --conf spark.executor.memory=4g)"
            )
        conf[key.strip()] = value
    return conf
