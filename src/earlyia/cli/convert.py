"""``earlyia convert``: any mix of alert / light-curve inputs -> one canonical light-curve table
(Parquet)."""

from __future__ import annotations

import argparse
import contextlib
import sys

import numpy as np

from earlyia.errors import InputError
from earlyia.io import detect_format, expand_inputs, harmonise_columns, read_many, readers
from earlyia.io.output import check_inputs, check_output
from earlyia.io.table import LightCurves

EPILOG = """examples:
  # the labelled ZTF set: Fink monthly parquet + the long CSV, merged per object
  earlyia convert ../shared/data/ztf_fink_tns_labelled/fink_cross_tns_*.parquet \\
      ../shared/data/ztf_fink_tns_labelled/all_nonIa.csv.gz --out ztf_labelled.parquet
  # ZTF alert packets (Avro files, a folder of them, or Parquet alert tables)
  earlyia convert alerts/ night.avro --out night.parquet
  # SNPCC straight from the archive
  earlyia convert SIMGEN_PUBLIC_DES.tar.xz --out snpcc.parquet
  # force a format when detection cannot tell
  earlyia convert lightcurves.csv.xz --format plasticc_csv --out plasticc.parquet
  # Rubin Kafka messages in the wire format (one message per file), schema from a registry or a file
  earlyia convert msg-*.bin --schema-registry https://registry.example.org --out rubin.parquet
  earlyia convert msg-*.bin --schema lsst.v10_0.alert.avsc --out rubin.parquet
  # list the formats
  earlyia convert --list-formats
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="read alerts / light curves of any supported format into one canonical table",
        description=(
            "Reads every input (files or directories; the format of each is detected unless "
            "--format is given), "
            "merges alerts of the same object into one light curve without duplicate epochs, "
            "and writes one "
            "earlyia light-curve table (Parquet, written atomically). An input or object "
            "that cannot be read is "
            "reported with the reason and the rest is converted; the exit code is non-zero "
            "when nothing was read."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="files or directories (Avro, Parquet, CSV, SNANA DAT, tar archives)",
    )
    p.add_argument("--out", "-o", help="output table (.parquet)")
    p.add_argument(
        "--format",
        "-f",
        choices=sorted(readers()),
        metavar="NAME",
        help="read every input with this format (see --list-formats; default: detect per file)",
    )
    wire = p.add_mutually_exclusive_group()
    wire.add_argument(
        "--schema",
        metavar="AVSC",
        help="inputs are Rubin Kafka wire-format messages (one per file) with this Avro schema",
    )
    wire.add_argument(
        "--schema-registry",
        metavar="URL",
        help="inputs are Rubin Kafka wire-format messages (one per file); schemas from this "
        "registry",
    )
    p.add_argument(
        "--max-problems",
        type=int,
        default=20,
        metavar="N",
        help="print at most N problems (default 20)",
    )
    p.add_argument("--list-formats", action="store_true", help="list the known formats and exit")
    p.set_defaults(func=run)


def summary(lc: LightCurves, formats: dict[str, str]) -> list[str]:
    """Human-readable lines describing a converted table."""
    n_det = int(lc.detected.sum())
    lines = [
        f"survey {lc.survey or '?'} | bands {''.join(lc.bands)}",
        f"objects {lc.n_objects} | points {lc.n_points} ({n_det} detections, "
        f"{lc.n_points - n_det} non-detections)"
        f" | alerts {len(lc.alerts)}",
    ]
    if "label" in lc.objects.columns:
        counts = lc.objects["label"].value_counts(dropna=True)
        top = ", ".join(f"{k} {v}" for k, v in counts.head(6).items())
        lines.append(
            f"labelled objects {int(counts.sum())}"
            + (f" ({top}{', ...' if len(counts) > 6 else ''})" if len(counts) else "")
        )
    if lc.n_objects:
        npts = np.diff(lc.offsets)
        lines.append(f"points per object: median {int(np.median(npts))}, max {int(npts.max())}")
    by_format: dict[str, int] = {}
    for fmt in formats.values():
        by_format[fmt] = by_format.get(fmt, 0) + 1
    lines.append("inputs read: " + ", ".join(f"{v} {k}" for k, v in sorted(by_format.items())))
    return lines


def run(args: argparse.Namespace) -> int:
    if args.list_formats:
        for name, r in readers().items():
            print(f"{name:20s} {r.description}")
        return 0
    if not args.inputs:
        raise InputError("give at least one INPUT (file or directory)")
    if not args.out:
        raise InputError("give --out TABLE.parquet")
    check_inputs(args.inputs)
    out = check_output(args.out, args.inputs)
    files = expand_inputs(args.inputs)
    formats: dict[str, str] = {}
    if args.schema or args.schema_registry:
        from earlyia.io.rubin import SchemaRegistry, load_schema, read_wire_files

        schema = load_schema(args.schema) if args.schema else None
        registry = SchemaRegistry(args.schema_registry) if args.schema_registry else None
        tables, problems = [read_wire_files(files, registry=registry, schema=schema)], []
        formats = dict.fromkeys(map(str, files), "rubin_wire")
    else:
        for f in files:
            with contextlib.suppress(InputError):  # an undetectable input is reported by read_many
                formats[str(f)] = args.format or detect_format(f)
        tables, problems = read_many(files, args.format)
    if not tables:
        if len(problems) == 1:  # one line says it all
            raise InputError(f"nothing was read from {len(files)} input(s): {problems[0]}")
        for p in problems[: args.max_problems]:
            print(f"problem: {p}", file=sys.stderr)
        raise InputError(f"nothing was read from {len(files)} input(s); see the problems above")
    lc = (
        harmonise_columns(LightCurves.concat(tables, source="<convert>"))
        if len(tables) > 1
        else tables[0]
    )
    lc.problems = problems + lc.problems
    if lc.n_objects == 0:
        for p in lc.problems[: args.max_problems]:
            print(f"problem: {p}", file=sys.stderr)
        if len(lc.problems) > args.max_problems:
            print(
                f"... and {len(lc.problems) - args.max_problems} more (--max-problems N)",
                file=sys.stderr,
            )
        why = (
            f"every object was dropped ({len(lc.problems)} problem(s) above)"
            if lc.problems
            else "they are empty"
        )
        raise InputError(f"the inputs hold no light curve: {why}")
    lc.to_parquet(out)
    read_ok = {
        k: v
        for k, v in formats.items()
        if not any(p.source == k and p.object_id is None for p in problems)
    }
    print(f"wrote {out}")
    for line in summary(lc, read_ok):
        print("  " + line)
    if lc.problems:
        print(f"  problems {len(lc.problems)} (inputs, alerts or objects skipped or repaired):")
        for p in lc.problems[: args.max_problems]:
            print(f"    - {p}")
        if len(lc.problems) > args.max_problems:
            print(f"    ... and {len(lc.problems) - args.max_problems} more (--max-problems N)")
    return 0


__all__ = ["register", "run", "summary"]
