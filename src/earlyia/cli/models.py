"""``earlyia models``: inspect model files (and, through extensions, manage a model registry).

``show`` reads a model file; ``list``, ``promote`` and ``rollback`` act on the follow-up registry
(their parsers live with the other follow-up commands,
:func:`earlyia.cli.followup.add_models_commands`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from earlyia.cli.followup import add_models_commands
from earlyia.model.artifact import Model, extractor_name

EPILOG = """examples:
  earlyia models show model.eia
  earlyia models show model.eia --json          # the whole card, training ids included
"""


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def describe(model: Model, path: str = "") -> str:
    """The card as aligned text lines (what ``earlyia models show`` prints)."""
    c = model.card
    ext = c.get("extractor", {})
    params = ext.get("params", {})
    feats = c.get("features", [])
    tr = c.get("training", {})
    n_objects = tr.get("n_objects")
    if n_objects is None:
        n_objects = len(set(tr.get("object_ids", [])))
    cal = c.get("calibration") or {}
    lines = [
        ("model", path or "-"),
        ("hash", model.hash),
        ("format", c.get("format")),
        ("created", c.get("created")),
        ("parent", c.get("parent") or "-"),
        (
            "extractor",
            f"{extractor_name(ext)} ({', '.join(f'{k}={v}' for k, v in params.items())})",
        ),
        ("features", f"{len(feats)}: {', '.join(feats)}"),
        (
            "positive",
            f"{', '.join(c.get('positive_class', []))} (type map: "
            f"{json.dumps(c.get('type_map', {}))})",
        ),
        (
            "classifier",
            f"{c.get('classifier', {}).get('kind', '?')}, {c.get('n_trees')} trees; "
            + ", ".join(f"{k}={v}" for k, v in c.get("classifier", {}).items() if k != "kind"),
        ),
        (
            "training",
            f"{tr.get('n_samples')} samples ({tr.get('n_positive')} positive, "
            f"{tr.get('n_negative')} negative), "
            f"{n_objects} objects "
            f"(prohibited list: {len(set(tr.get('object_ids', [])))} object ids)"
            + (
                f"; only rows the gate accepts ({tr.get('n_gate_rejected')} labelled rows left out)"
                if tr.get("rows") == "gate"
                else ""
            ),
        ),
        ("calibration", cal.get("method") or "none"),
        *_evidence_lines(c),
        # what `earlyia score` does before and after the features: which alerts this model never
        # scores
        (
            "selection",
            json.dumps(c["selection"], sort_keys=True)
            if c.get("selection") is not None
            else "select_early defaults",
        ),
        ("gate", json.dumps(c["gate"], sort_keys=True) if c.get("gate") else "none"),
    ]
    if c.get("lineage"):
        lines.append(("lineage", json.dumps(c["lineage"], sort_keys=True)))
    for name, m in (c.get("metrics") or {}).items():
        if isinstance(m, dict):
            lines.append((f"metrics.{name}", ", ".join(f"{k}={_fmt(v)}" for k, v in m.items())))
        else:
            lines.append((f"metrics.{name}", _fmt(m)))
    for op in c.get("operating_points") or []:
        lines.append(
            (
                f"threshold(purity>={op['min_purity']:g}, N<={op['max_detections']})",
                f"{_fmt(op.get('threshold'))} (efficiency {_fmt(op.get('efficiency'))}, "
                f"purity {_fmt(op.get('purity'))} "
                f"on {op.get('estimated_on', '?')})",
            )
        )
    lines.append(("versions", ", ".join(f"{k} {v}" for k, v in c.get("versions", {}).items())))
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines)


def _evidence_lines(card: dict) -> list[tuple[str, str]]:
    """What a model calibrated by evidence says about thin alerts, its prevalence and its
    augmentation."""
    out = []
    ev = card.get("evidence")
    if ev:
        judged = ev.get("judged_from")
        out.append(
            (
                "evidence",
                f"calibrated per {ev['feature']} stratum {ev['edges']} at prevalence "
                f"{ev['prevalence']:.3f}; "
                + (
                    f"can reach the candidate threshold from {judged} positive detection(s)"
                    if judged
                    else "reaches the candidate threshold at no evidence level"
                ),
            )
        )
    aug = card.get("augmentation")
    if aug:
        steps = ", ".join(
            f"{s.get('name')} {_fmt(s.get('probability'))}"
            for s in aug.get("steps") or []
            if isinstance(s, dict)
        )
        win = (
            f"; {_fmt(aug['window_days'])}-day history {_fmt(aug.get('window_probability'))}"
            if aug.get("window_days")
            else ""
        )
        out.append(
            (
                "augmentation",
                f"{aug.get('copies')} copies, detections "
                f"{aug.get('min_detections')}-{aug.get('max_detections')} "
                f"replayed; {steps}{win}; seed {aug.get('seed')}",
            )
        )
    return out


def _register_show(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "show",
        help="print a model's card",
        description="Print a model file's card (extractor, features, positive class, training "
        "size, "
        "metrics, versions, "
        "hash, parent), after verifying its content hash.",
        epilog="example:\n  earlyia models show model.eia",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("path", help="model file written by `earlyia train`")
    p.add_argument("--json", action="store_true", help="print the full card as JSON")
    p.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    model = Model.load(args.path)
    if args.json:
        print(json.dumps(model.card, indent=1, sort_keys=True))
    else:
        print(describe(model, args.path))
    return 0


#: Built-in actions: name -> function adding its parser to the actions subparsers.
ACTIONS: dict[str, Callable[[argparse._SubParsersAction], None]] = {"show": _register_show}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="inspect (and manage) model files",
        description="Model files: `show` prints a card; `list`, `promote` and `rollback` act on "
        "the "
        "follow-up registry.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    for add in ACTIONS.values():
        add(actions)
    add_models_commands(actions)
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])
