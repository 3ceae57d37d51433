"""``earlyia stream``: score alerts from Kafka (Fink livestream, ZTF or Rubin topics) as they
arrive, exactly once."""

from __future__ import annotations

import argparse
import os
import signal
import sys

EPILOG = """examples:
  # a Fink livestream user: the fink-client credentials file gives servers, group, user, password
  # and topics
  earlyia stream --credentials ~/.finkclient/ztf_credentials.yml --model model.eia --out stream_out/
  # chosen topics of that file only
  earlyia stream --credentials ~/.finkclient/ztf_credentials.yml \\
      --topic fink_early_sn_candidates_ztf --model model.eia --out o/
  # any Kafka broker with ZTF Avro alerts, stopping when the topic is drained for 30 s
  earlyia stream --bootstrap kafka:9092 --group me --topic ztf_20260101_programid1 \\
      --model model.eia --out o/ --idle-timeout 30
  # then: earlyia followup select --scores o/scores --n 30

Outputs: o/scores/night=YYYY-MM-DD/*.parquet (one SCORES row per alert, the columns of `earlyia
score` plus kafka_topic, kafka_partition, kafka_offset), o/candidates/night=YYYY-MM-DD/*.parquet
(the rows at or above the candidate threshold) and o/_offsets/ (what is written). Kill it at any
moment and start it again: no alert is lost and none is written twice (docs/stream.md). A password
is read from the credentials file or from $EARLYIA_KAFKA_PASSWORD, never from the command line. Exit
code 0 when it stops (--max-alerts, --idle-timeout, SIGTERM or Ctrl-C: the batch in progress is
finished first; a second Ctrl-C stops at once, exit 130), 2 on a usage or connection error.
"""


def _option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE (a librdkafka consumer property), got {text!r}"
        )
    return key.strip(), value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stream",
        help="score alerts from Kafka as they arrive (Fink livestream, ZTF, Rubin)",
        description=(
            "Consume Kafka topics, score every alert with a model file as it arrives and "
            "write the scores (Parquet "
            "partitioned by night) and the night's candidates. Offsets are committed only "
            "after the outputs are on "
            "disk, and the outputs are idempotent by alert id: a restart after any stop, "
            "kill -9 included, loses no "
            "alert and writes none twice. A progress line (alerts/s, lag) goes to stderr."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("where the alerts come from")
    src.add_argument(
        "--credentials",
        metavar="YML",
        help="fink-client credentials file (~/.finkclient/ztf_credentials.yml): servers, groupid, "
        "username, "
        "password, topics; the options below override it",
    )
    src.add_argument(
        "--topic",
        action="append",
        default=None,
        help="topic to consume (repeatable; default: the credentials' topics)",
    )
    src.add_argument("--bootstrap", help="Kafka bootstrap servers host:port[,host:port]")
    src.add_argument("--group", help="consumer group id (offsets are committed under it)")
    src.add_argument(
        "--username", help="SASL SCRAM-SHA-512 user (password from $EARLYIA_KAFKA_PASSWORD)"
    )
    src.add_argument(
        "--offset-reset",
        choices=("earliest", "latest"),
        default="earliest",
        help="where a group without committed offsets starts (default earliest, as fink-client)",
    )
    src.add_argument(
        "--assign",
        action="store_true",
        help="read every partition without joining the consumer group (one process per group; "
        "restarts never "
        "wait for a rebalance)",
    )
    src.add_argument(
        "--kafka-option",
        action="append",
        type=_option,
        default=[],
        metavar="KEY=VALUE",
        help="extra librdkafka consumer property (repeatable), e.g. ssl.ca.location=/path/ca.pem",
    )
    dec = p.add_argument_group("decoding")
    dec.add_argument(
        "--schema", help="Avro schema (.avsc) of schemaless messages that carry none in their key"
    )
    dec.add_argument(
        "--schema-registry",
        metavar="URL",
        help="Confluent-compatible schema registry for wire-format messages (Rubin)",
    )
    out = p.add_argument_group("scoring and outputs")
    out.add_argument("--model", required=True, help="model file (`earlyia train`)")
    out.add_argument(
        "--out", required=True, help="output directory (scores/, candidates/, _offsets/)"
    )
    out.add_argument(
        "--min-score",
        type=float,
        default=None,
        metavar="X",
        help="candidate threshold (default: the model card's, purity 0.8 within 20 detections)",
    )
    out.add_argument(
        "--batch-size",
        type=int,
        default=1000,
        help="messages per batch, written and committed together (default 1000)",
    )
    out.add_argument(
        "--batch-seconds",
        type=float,
        default=2.0,
        help="a batch closes this long after its first message (default 2)",
    )
    stop = p.add_argument_group("stopping and progress")
    stop.add_argument(
        "--max-alerts", type=int, default=None, metavar="N", help="stop after N messages"
    )
    stop.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds without a message",
    )
    stop.add_argument(
        "--progress-seconds",
        type=float,
        default=10.0,
        metavar="S",
        help="a progress line every S seconds (default 10)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from earlyia.errors import ConfigError
    from earlyia.model.artifact import Model
    from earlyia.stream import ENV_PASSWORD, Decoder, KafkaSettings, run_stream

    overrides = {
        "servers": args.bootstrap,
        "topics": tuple(args.topic or ()),
        "group_id": args.group,
        "offset_reset": args.offset_reset,
        "assign": args.assign,
        "extra": dict(args.kafka_option),
    }
    if args.username:
        overrides["username"] = args.username
        overrides["password"] = os.environ.get(ENV_PASSWORD)
        if overrides["password"] is None:
            raise ConfigError(
                f"--username {args.username}: set the password in ${ENV_PASSWORD} (never on "
                "the command line)"
            )
    if args.credentials:
        settings = KafkaSettings.from_fink_credentials(args.credentials, **overrides)
    else:
        overrides.update(servers=args.bootstrap or "", group_id=args.group or "")
        settings = KafkaSettings(**overrides)
    settings.check()
    model = Model.load(args.model)  # refuses a bad model file before connecting
    note = model.version_note()
    if note:
        print(f"earlyia stream: note: {note}", file=sys.stderr)
    decoder = Decoder(schema_registry=args.schema_registry, schema=args.schema)
    stopping = {"now": False}

    def on_term(signum, frame):
        if stopping["now"] and signum == signal.SIGINT:
            # a second Ctrl-C: stop now (what was not committed is read again on restart)
            raise KeyboardInterrupt
        stopping["now"] = True

    previous = {sig: signal.signal(sig, on_term) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        print(f"earlyia stream: {settings.describe()} -> {args.out}", file=sys.stderr, flush=True)
        report = run_stream(
            settings,
            model,
            args.out,
            decoder=decoder,
            batch_size=args.batch_size,
            batch_seconds=args.batch_seconds,
            idle_exit=args.idle_timeout,
            max_messages=args.max_alerts,
            threshold=args.min_score,
            progress_every=args.progress_seconds,
            should_stop=lambda: stopping["now"],
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(
        f"earlyia stream: candidate threshold {report.threshold:.3f}; {report.n_batches} "
        f"batch(es) in {report.seconds:.1f} s "
        f"-> {args.out}",
        file=sys.stderr,
    )
    return 0
