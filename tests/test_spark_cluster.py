"""earlyia on a real Spark standalone cluster: a master and two workers started from pyspark's jars.

The cluster runs on 127.0.0.1 for the module (free ports, temporary work directories, every process
in its own process group, killed at teardown whatever happens). Its workers do not inherit
``PYTHONPATH``: executors get earlyia's code from the driver, as on a user's cluster.

Each worker has two cores and each application two one-core executors (one per worker), so the
in-process session of the first tests and the command line of the last one can share the cluster.
The worker-kill test runs last: it leaves one worker.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import reference, shared

pytestmark = [
    pytest.mark.spark,
    pytest.mark.xdist_group(
        "spark-cluster"
    ),  # one cluster for the module under `pytest -n 2 --dist loadgroup`
    pytest.mark.skipif(
        importlib.util.find_spec("pyspark") is None,
        reason="pyspark not installed (pip install 'earlyia[spark]')",
    ),
    pytest.mark.skipif(
        shutil.which("java") is None and not os.environ.get("JAVA_HOME"),
        reason="Spark needs Java 17",
    ),
    pytest.mark.filterwarnings("ignore::FutureWarning"),  # pyspark 4.3 on pandas 3
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

N_OBJECTS = 120
N_FILES = 3
START_TIMEOUT = 240.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    url: str
    ui: str
    master: subprocess.Popen
    workers: list[subprocess.Popen]
    logs: Path
    killed: list[int] = field(default_factory=list)

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.ui}/json/", timeout=5) as resp:
            return json.load(resp)

    def alive_workers(self) -> int:
        return sum(w["state"] == "ALIVE" for w in self.state()["workers"])

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker ``i`` and its executor and Python workers (its whole process group): a
        lost node."""
        os.killpg(self.workers[i].pid, signal.SIGKILL)
        self.workers[i].wait(timeout=30)
        self.killed.append(i)

    def log_tail(self) -> str:
        tails = [
            (p.name, p.read_text(errors="replace").splitlines()[-15:])
            for p in sorted(self.logs.glob("*.log"))
        ]
        return "\n".join(f"--- {name}\n" + "\n".join(lines) for name, lines in tails)


def _spark_class(*args: str, env: dict, log: Path) -> subprocess.Popen:
    import pyspark

    home = Path(pyspark.__file__).parent
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(home / "bin" / "spark-class"), *args],
            env={**env, "SPARK_HOME": str(home)},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("spark-cluster")
    (root / "conf").mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SPARK_", "PYSPARK_")) and k != "PYTHONPATH"
    }
    env.update(
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_CONF_DIR=str(root / "conf"),
        SPARK_LOG_DIR=str(root),
        SPARK_LOCAL_DIRS=str(root),
        SPARK_DAEMON_JAVA_OPTS="-XX:TieredStopAtLevel=1",
        SPARK_DAEMON_MEMORY="256m",
    )
    port, ui = _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []
    try:
        procs.append(
            _spark_class(
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--webui-port",
                str(ui),
                env=env,
                log=root / "master.log",
            )
        )
        for i in (1, 2):
            procs.append(
                _spark_class(
                    "org.apache.spark.deploy.worker.Worker",
                    "--host",
                    "127.0.0.1",
                    "--cores",
                    "2",
                    "--memory",
                    "1g",
                    "--webui-port",
                    "0",
                    "--work-dir",
                    str(root / f"work{i}"),
                    url,
                    env=env,
                    log=root / f"worker{i}.log",
                )
            )
        c = Cluster(
            url=url, ui=f"http://127.0.0.1:{ui}", master=procs[0], workers=procs[1:], logs=root
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(OSError, ValueError):
                if c.alive_workers() == 2:
                    break
            dead = [p.args[1] for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                pytest.fail(
                    f"standalone cluster did not start ({dead or 'timeout'}):\n{c.log_tail()}"
                )
            time.sleep(0.5)
        yield c
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=30)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Replay alerts of N_OBJECTS labelled objects (Fink columns) in N_FILES files, no object
    split; a small model."""
    from earlyia.features import get_extractor
    from earlyia.io.fink import read_fink_parquet
    from earlyia.model.recipe import Recipe
    from earlyia.model.training import train_model

    d = tmp_path_factory.mktemp("cluster-data")
    replay = pd.read_parquet(reference("ztf_replay_alerts_with_anchor.parquet"))
    labels = pd.read_csv(shared("ztf_fink_tns_labelled/objects.csv")).set_index("objectId")[
        "tns_type"
    ]
    ids = np.random.default_rng(11).choice(replay["objectId"].unique(), N_OBJECTS, replace=False)
    sub = (
        replay[replay["objectId"].isin(ids)]
        .assign(TNS=lambda f: f["objectId"].map(labels))
        .reset_index(drop=True)
    )
    inputs = d / "alerts"
    inputs.mkdir()
    for k, part in enumerate(np.array_split(ids, N_FILES)):
        sub[sub["objectId"].isin(part)].reset_index(drop=True).to_parquet(
            inputs / f"part-{k}.parquet"
        )
    ex = get_extractor("sigmoid", mode="fink")
    model = train_model(
        ex.transform(read_fink_parquet(inputs / "part-0.parquet"), per="alert"),
        ex.config(),
        Recipe(n_estimators=15),
        random_state=3,
    )
    model.save(d / "model.eia")
    local = d / "local.parquet"
    _cli("score", str(inputs), "--model", str(d / "model.eia"), "--out", str(local))
    scores = pd.read_parquet(local)
    assert len(scores) == len(sub) and scores["passed"].any()
    return {"inputs": inputs, "model": d / "model.eia", "local": scores}


def _cli_env() -> dict:
    """The command line runs this checkout's earlyia (the driver's code is what executors get)."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [sys.executable, "-m", "earlyia.cli.main", *args],
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["object_id", "mjd", "alert_id"], kind="mergesort").reset_index(drop=True)


def _cluster_conf() -> dict:
    """Two one-core executors per application, one on each worker: two applications can share the
    cluster."""
    return {
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.executor.memory": "512m",
        "spark.executor.cores": "1",
        "spark.cores.max": "2",
        "spark.executor.extraJavaOptions": "-XX:TieredStopAtLevel=1",
        "spark.scheduler.minRegisteredResourcesRatio": "1.0",
        "spark.locality.wait": "0",
    }  # tasks go to whichever executor is free: both take part


# ---------------------------------------------------------------------------------------------- one
# in-process session
@pytest.fixture(scope="module")
def session(cluster):
    import earlyia.spark as sp

    spark = sp.get_session(cluster.url, app_name="earlyia-cluster-test", conf=_cluster_conf())
    spark.sparkContext.setLogLevel("ERROR")
    deadline = time.monotonic() + START_TIMEOUT
    while (
        len(spark.sparkContext._jsc.sc().statusTracker().getExecutorInfos()) < 3
    ):  # the driver and both executors
        assert time.monotonic() < deadline, cluster.log_tail()
        time.sleep(0.5)
    yield spark
    spark.stop()


def test_scores_on_the_cluster_equal_local_scores(session, data, tmp_path):
    import earlyia.spark as sp

    out = tmp_path / "scores.parquet"
    summary = sp.score_spark(data["inputs"], data["model"], out, spark=session, partitions=4)
    assert summary["master"] == session.sparkContext.master and summary["n_alerts"] == len(
        data["local"]
    )
    pd.testing.assert_frame_equal(
        _sorted(pd.read_parquet(out)), _sorted(data["local"]), check_exact=True
    )


def test_executors_run_the_drivers_earlyia_and_load_the_model_once_per_python_worker(
    session, data, tmp_path
):
    import earlyia.spark as sp

    def origin(_):
        import earlyia

        return sys.executable, earlyia.__file__

    shipped = sp.code_archive(tmp_path).name  # the same code gives the same archive name
    seen = session.sparkContext.parallelize(range(8), 8).map(origin).collect()
    assert {exe for exe, _ in seen} == {sys.executable}
    assert all(f"{os.sep}{shipped}{os.sep}earlyia{os.sep}" in path for _, path in seen), (
        shipped,
        seen,
    )

    ref = sp.ship_model(session, data["model"])
    df = sp.with_provenance(session.read.parquet(str(data["inputs"])))
    out = sp._collect_arrow(sp.score_dataframe(df, ref, partitions=8, diagnostics=True)).to_pandas()
    per_worker = out.groupby("_worker_pid").agg(
        loads=("_model_loads", "max"), batches=("_batch", "nunique")
    )
    assert len(per_worker) >= 2, "both executors should have scored"
    assert (per_worker["loads"] == 1).all(), per_worker
    assert per_worker["batches"].sum() > len(per_worker), (
        "the test needs more batches than Python workers to mean anything"
    )
    assert len(out) == len(data["local"])


# ----------------------------------------------------------------------------------------------
# command line, worker loss (last)
def _processes() -> dict[int, tuple[int, int, bytes]]:
    """pid -> (parent pid, process group, command line) of every process (Linux /proc)."""
    procs = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                procs[int(entry.name)] = (
                    int(fields[1]),
                    int(fields[2]),
                    (entry / "cmdline").read_bytes(),
                )
    return procs


def _scoring_on(group: int, app_id: str) -> bool:
    """Whether the executor of application ``app_id`` in process group ``group`` has started
    Python workers."""
    procs = _processes()
    executors = {
        pid
        for pid, (_, pgrp, cmd) in procs.items()
        if pgrp == group and b"CoarseGrainedExecutorBackend" in cmd and app_id.encode() in cmd
    }
    return any(ppid in executors and b"pyspark.daemon" in cmd for ppid, _, cmd in procs.values())


def _app_id(cluster: Cluster, name: str) -> str | None:
    with contextlib.suppress(OSError, ValueError):
        return next((a["id"] for a in cluster.state()["activeapps"] if a["name"] == name), None)
    return None


@pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="finds Spark's Python workers through /proc"
)
def test_cli_on_the_cluster_survives_a_killed_worker_with_identical_scores(cluster, data, tmp_path):
    """``earlyia score --engine spark --master spark://...``; a worker SIGKILLed while its executor
    scores.

    The executors start Python workers only for the scoring stage (reading, sampling and grouping
    alerts run in the JVM): the kill comes as soon as the command's executor on the victim has one.
    """
    out, victim = tmp_path / "cluster.parquet", cluster.workers[1]
    args = [
        "score",
        str(data["inputs"]),
        "--model",
        str(data["model"]),
        "--out",
        str(out),
        "--engine",
        "spark",
        "--master",
        cluster.url,
        *(a for k, v in _cluster_conf().items() for a in ("--conf", f"{k}={v}")),
    ]
    with open(tmp_path / "driver.log", "w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "earlyia.cli.main", *args],
            env=_cli_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            app = None
            while proc.poll() is None and not (app and _scoring_on(victim.pid, app)):
                app = app or _app_id(cluster, "earlyia")
                time.sleep(0.02)
            assert proc.poll() is None, (
                "the command ended before the victim's executor scored anything"
            )
            cluster.kill_worker(1)
            assert proc.wait(timeout=600) == 0
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        log.seek(0)
        text = log.read()
    assert f"with Spark ({cluster.url})" in text, text[-3000:]
    lines = text.replace("\r", "\n").splitlines()
    notes = "\n".join(line for line in lines if " ERROR " in line or " WARN " in line)
    work = sorted(p.relative_to(cluster.logs) for p in cluster.logs.glob("work*/*/*"))
    debug = f"{notes}\n{cluster.log_tail()}\n{work}"
    assert "Lost executor" in text, debug  # the command's own executor died while scoring
    assert victim.poll() is not None and cluster.alive_workers() <= 1
    pd.testing.assert_frame_equal(
        _sorted(pd.read_parquet(out)), _sorted(data["local"]), check_exact=True
    )
