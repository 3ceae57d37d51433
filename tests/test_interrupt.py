"""Ctrl-C and SIGTERM on a running batch: real ``earlyia`` subprocesses, real signals.

The run must stop within a second of the signal, exit 130 (SIGINT) or 143 (SIGTERM), and leave no
output and no temporary file, neither beside ``--out`` nor in the temporary folder (TMPDIR).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import reference, shared
from earlyia.features import get_extractor
from earlyia.io.fink import lightcurves_from_fink_frame
from earlyia.model.recipe import Recipe
from earlyia.model.training import train_model


@pytest.fixture(scope="module")
def alerts(tmp_path_factory):
    """The replay file twice (second copy under new ids), shuffled: ~40 000 alerts, objects not
    grouped."""
    df = pd.read_parquet(reference("ztf_replay_alerts_with_anchor.parquet"))
    twin = df.assign(objectId=df["objectId"] + "~1", candid=df["candid"].astype(str) + "~1")
    both = pd.concat([df.assign(candid=df["candid"].astype(str)), twin], ignore_index=True)
    path = tmp_path_factory.mktemp("alerts") / "alerts.parquet"
    both.sample(frac=1, random_state=5).reset_index(drop=True).to_parquet(path)
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    df = pd.read_parquet(reference("ztf_replay_alerts_with_anchor.parquet"))
    df = df[df["objectId"].isin(df["objectId"].drop_duplicates().iloc[:60])]
    lab = pd.read_csv(shared("ztf_fink_tns_labelled/objects.csv")).set_index("objectId")["tns_type"]
    ext = get_extractor("sigmoid", mode="fink")
    feats = ext.transform(lightcurves_from_fink_frame(df, source="replay"), per="alert")
    feats["label"] = feats["object_id"].map(lab)
    path = tmp_path_factory.mktemp("model") / "model.eia"
    train_model(feats, ext.config(), Recipe(n_estimators=5), random_state=1).save(path)
    return path


@pytest.mark.parametrize(
    ("command", "signum"),
    [("features", signal.SIGINT), ("score", signal.SIGTERM)],
)
def test_a_signal_stops_the_run_within_a_second_and_leaves_nothing(
    tmp_path, alerts, model_path, command, signum
):
    out_dir, tmp_dir = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    tmp_dir.mkdir()
    extra = ["--model", str(model_path)] if command == "score" else ["--extractor", "sigmoid"]
    env = dict(os.environ, TMPDIR=str(tmp_dir))
    cmd = [
        sys.executable,
        "-m",
        "earlyia.cli.main",
        command,
        str(alerts),
        "--out",
        str(out_dir / "t.parquet"),
        "--chunk-size",
        "500",
        *extra,
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(out_dir.iterdir()):  # the output's temporary appears with the first chunk
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no temporary output after 120 s"
            time.sleep(0.02)
        time.sleep(0.3)  # well inside the run: several chunks remain
        assert proc.poll() is None, "the run ended before the signal: use a larger input"
        sent = time.monotonic()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
        latency = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum, err
    assert latency < 1.0, f"stopped {latency:.2f} s after the signal"
    assert "Traceback" not in err and ("interrupted" in err or "SIGTERM" in err), err
    assert list(out_dir.iterdir()) == []  # no output, no temporary beside it
    assert list(tmp_dir.iterdir()) == []  # no regrouping buckets or slice files left in TMPDIR
