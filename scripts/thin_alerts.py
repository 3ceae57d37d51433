"""How a model scores real ZTF alerts that hold too little to judge: one or two detections, or
negative differences only.

Scores every real ZTF alert file of the shared data (the alert pool and the public samples: ZTF's
packets of every schema, Fink's livestream and data-transfer files, Fink's Parquet) with ``earlyia
score``'s pipeline and reports, per number of detections in the alert's history, how many alerts
score above 0.5 and above the card's candidate threshold (purity >= 0.8 within 20 detections at the
training prevalence).

Usage:
    earlyia train ../shared/reference/ztf_replay_alerts_with_anchor.parquet \\
        --labels ../shared/data/ztf_fink_tns_labelled/objects.csv --out default.eia
    python scripts/thin_alerts.py default.eia [--out thin_alerts.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from earlyia.data import data_dir
from earlyia.io import read_many
from earlyia.model.artifact import Model
from earlyia.score.pipeline import score_lightcurves

SOURCES = (
    "ztf_fink_alerts_pool/ztf_alerts_pool.parquet",
    "external_alert_samples/ztf_avro_history",
    "external_alert_samples/fink_client/ZTF19acihgng.avro",
    "external_alert_samples/fink_client/ZTF19acyfkzd.avro",
    "external_alert_samples/fink_client/ZTF19acxxwrs.avro",
    "external_alert_samples/fink_client/ZTF19acyjzeo.avro",
    "external_alert_samples/fink_client/ztf_part-3-305711.avro",
    "external_alert_samples/fink_broker/online_raw__part-00000.parquet",
    "external_alert_samples/fink_broker/online_raw__part-00001.parquet",
    "external_alert_samples/fink_broker/utest_datasets__part-00000.parquet",
    "external_alert_samples/fink_science/datatest_part-00002.parquet",
)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("model")
    ap.add_argument("--data", default=str(data_dir()))
    ap.add_argument("--out", help="write the Markdown table here too")
    args = ap.parse_args()
    model = Model.load(args.model)
    thr = model.threshold(20)["threshold"]
    frames = []
    for rel in SOURCES:
        tables, problems = read_many([Path(args.data) / rel])
        for p in problems:
            print(f"unreadable: {p}")
        for lc in tables:
            if lc.survey and lc.survey != "ZTF":
                continue
            s = score_lightcurves(lc, model, per="alert")
            frames.append(s.assign(source=rel))
    s = pd.concat(frames, ignore_index=True).drop_duplicates("alert_id")
    pos = s["n_detections"].to_numpy()  # detections in the alert's history (either sign)
    neg_only = s["reason"].eq("no positive detection")
    rows = []
    for name, mask in (
        ("1 detection", pos == 1),
        ("2 detections", pos == 2),
        ("3-5 detections", (pos >= 3) & (pos <= 5)),
        ("negative differences only", neg_only.to_numpy()),
    ):
        sub = s[mask]
        rows.append(
            {
                "alerts": name,
                "n": len(sub),
                "> 0.5": f"{(sub['score'] > 0.5).mean():.1%}" if len(sub) else "-",
                f"> card threshold ({thr:.3f})": f"{(sub['score'] > thr).mean():.1%}"
                if len(sub)
                else "-",
                "said 'too little to judge'": (
                    f"{sub['reason'].str.startswith('too little').mean():.1%}"
                )
                if len(sub)
                else "-",
            }
        )
    table = pd.DataFrame(rows)
    head = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns)
    body = ["| " + " | ".join(str(v) for v in r) + " |" for r in table.itertuples(index=False)]
    text = "\n".join([head, *body])
    print(f"{len(s)} distinct real ZTF alerts from {len(SOURCES)} sources; model {model.hash[:12]}")
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
