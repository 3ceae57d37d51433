"""Many active-learning realisations of several strategies: parallel, resumable, reproducible.

:func:`run_experiment` runs ``n_realisations`` of :func:`~earlyia.learn.loop.run_active_learning`
for every strategy on one feature table, and writes everything needed to read and reproduce the
result (see ``docs/experiments.md``):

* ``realisations/<strategy>/r<NNN>/``: one folder per completed realisation, written to a
  temporary folder and renamed into place (atomic): ``metrics.parquet``, ``early_metrics.parquet``,
  ``queried.csv``, ``initial.csv``, ``ids.json`` (``earlyia train --from-run`` reads it),
  ``model.eia`` (the final forest as a safe model file) and ``done.json`` (its config hash);
* ``metrics.parquet/.csv``, ``early_metrics.parquet/.csv``, ``queried.parquet/.csv``,
  ``initial.csv``: every realisation together;
* ``best_model.eia`` + ``best.json``: the realisation with the highest final-loop FoM;
* ``learning_curves.png``, ``early_metrics.png``, ``summary.md`` and ``manifest.json`` (config,
  seeds, sha256 of the data, package versions, protocol).

Why these choices:

* Realisation ``r`` uses the same seed for every strategy (derived from ``(seed, r)``): the same
  initial labels, test set and forest seed, so strategies are compared *paired* and their
  difference is not split noise. The strategy's own random choices come from that seed too.
* A re-run with the same configuration skips completed realisations (kill it and run it again), and
  more realisations or strategies can be added later in the same folder; a different configuration
  (data, protocol, loops, classifier, seed...) there is refused instead of mixing results.
* Same seed, same numbers: nothing depends on the order in which workers finish.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from earlyia import __version__
from earlyia.errors import ConfigError, InputError
from earlyia.features.gates import apply_gate, gate_spec
from earlyia.features.io import read_features
from earlyia.io.table import atomic_write
from earlyia.labels import NEGATIVE, POSITIVE, TypeMap
from earlyia.learn.forest import FastForest
from earlyia.learn.loop import run_active_learning
from earlyia.learn.plots import plot_early_metrics, plot_learning_curves
from earlyia.learn.protocols import Protocol
from earlyia.learn.report import paired_differences, summarise, write_summary
from earlyia.learn.strategies import get_strategy
from earlyia.model.artifact import Model, versions
from earlyia.progress import Progress

#: Metrics drawn as learning curves (one panel each) and summarised in the report.
CURVE_METRICS = ("accuracy", "efficiency", "purity", "fom", "f1", "roc_auc")
MANIFEST = "manifest.json"
_NON_FEATURES = {
    "object_id",
    "alert_id",
    "mjd",
    "n_detections",
    "label",
    "valid",
    "reason",
    "ndethist",
    "cdsxmatch",
    "drb",
    "classtar",
    "jdstarthist",
    "anchor_score",
    "objectId",
    "candid",
    "ok",
    "passed",
    "type",
    "tns_type",
    "source",
    "row",
}


@dataclass
class ExperimentData:
    """The rows an experiment learns from (after dropping invalid and unlabelled rows)."""

    X: np.ndarray
    y: np.ndarray
    ids: np.ndarray  # alert id (or object id) per row: what a query labels
    groups: np.ndarray  # object id per row: the honest protocol splits by it
    n_detections: np.ndarray | None
    feature_names: list[str]
    extractor: dict
    dropped: dict
    sha256: dict


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` produced (all of it is also on disk under ``out_dir``)."""

    out_dir: Path
    metrics: pd.DataFrame
    early_metrics: pd.DataFrame | None
    summary: pd.DataFrame
    best: dict
    manifest: dict
    n_computed: int
    n_skipped: int
    paired: pd.DataFrame | None = None


# ------------------------------------------------------------------------------------ data
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_data(
    features,
    type_map: TypeMap | None = None,
    feature_names: list[str] | None = None,
    gate: str = "none",
) -> ExperimentData:
    """Rows of a feature table (path written by ``write_features`` or a DataFrame) ready for the
    loop.

    ``gate="rise"`` keeps only the rows the rise gate accepts (:mod:`earlyia.features.gates`): a
    model whose card carries the gate scores the others 0 whatever it learnt, so labels spent on
    them are wasted.
    """
    type_map = type_map or TypeMap()
    extractor: dict = {}
    sha: dict = {}
    if isinstance(features, (str, Path)):
        path = Path(features)
        if not path.exists():
            raise InputError(f"{path}: feature file not found; produce one with `earlyia features`")
        df, meta = read_features(path)
        extractor = dict(meta.get("extractor", {}))
        sha[str(path)] = _sha256(path)
    elif isinstance(features, pd.DataFrame):
        df = features
        sha["<DataFrame>"] = hashlib.sha256(
            pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes()
        ).hexdigest()
    else:
        raise InputError(
            f"features must be a feature-table path or a DataFrame, got {type(features).__name__}"
        )
    if "label" not in df.columns:
        raise InputError(
            "the feature table has no 'label' column: active learning needs the true types "
            "of the rows "
            "(give light curves with an object 'label' column to `earlyia features`)"
        )
    if feature_names is None:
        feature_names = list(
            extractor.get("names")
            or [
                c
                for c in df.columns
                if c not in _NON_FEATURES
                and (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]))
            ]
        )
    missing = [c for c in feature_names if c not in df.columns]
    if missing:
        raise InputError(f"the feature table lacks feature column(s) {missing[:5]}")
    if not feature_names:
        raise InputError("the feature table has no feature columns")
    if not extractor:
        extractor = {"extractor": "unknown", "params": {}, "names": list(feature_names)}
    n0 = len(df)
    keep = np.ones(n0, bool)
    dropped = {}
    if "valid" in df.columns:
        v = df["valid"].fillna(False).to_numpy(bool)
        dropped["invalid_features"] = int((~v).sum())
        keep &= v
    codes = type_map.encode(df["label"].tolist())
    dropped["unlabelled"] = int(((codes != POSITIVE) & (codes != NEGATIVE) & keep).sum())
    keep &= codes != -1
    X = df[feature_names].to_numpy(np.float64)
    finite = np.isfinite(X).all(axis=1)
    dropped["non_finite"] = int((~finite & keep).sum())
    keep &= finite
    if gate != "none":
        accepted = apply_gate(gate_spec(gate, feature_names), X, feature_names)
        dropped["gate"] = int((~accepted & keep).sum())
        keep &= accepted
    df = df[keep]
    X = X[keep]
    y = codes[keep] == POSITIVE
    if len(y) == 0:
        raise InputError(f"no usable rows: of {n0}, dropped {dropped}")
    obj = (
        df["object_id"].astype(str).to_numpy(object)
        if "object_id" in df.columns
        else np.arange(len(df)).astype(str).astype(object)
    )
    if "alert_id" in df.columns and df["alert_id"].notna().all():
        ids = df["alert_id"].astype(str).to_numpy(object)
    else:
        ids = obj
    nd = df["n_detections"].to_numpy(np.int64) if "n_detections" in df.columns else None
    return ExperimentData(
        np.ascontiguousarray(X), y, ids, obj, nd, list(feature_names), extractor, dropped, sha
    )


# ------------------------------------------------------------------------------------ seeds
def realisation_seed(seed: int, realisation: int) -> int:
    """The seed of realisation ``r``: shared by every strategy (paired comparison)."""
    return int(
        np.random.SeedSequence([int(seed), int(realisation)]).generate_state(1, np.uint64)[0]
        >> np.uint64(1)
    )


def _strategy_tag(name: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
    return safe if safe == name else f"{safe}-{zlib.crc32(name.encode()):08x}"


# ------------------------------------------------------------------------------------ workers
_WORKER: dict[str, Any] = {}


def _init_worker(data: ExperimentData, cfg: dict) -> None:
    _WORKER["data"] = data
    _WORKER["cfg"] = cfg


def _run_one(strategy: str, r: int, out_dir: str) -> tuple[str, int]:
    """Run realisation ``r`` of ``strategy`` and write its folder atomically."""
    data: ExperimentData = _WORKER["data"]
    cfg: dict = _WORKER["cfg"]
    seed = realisation_seed(cfg["seed"], r)
    proto = Protocol(
        name=cfg["protocol"],
        n_initial=cfg["n_initial"],
        n_initial_positive=cfg["n_initial_positive"],
        n_loops=cfg["n_loops"],
        batch_size=cfg["batch_size"],
        **({"test_fraction": cfg["test_fraction"]} if cfg["protocol"] == "honest" else {}),
    )
    clf = FastForest(**cfg["classifier"], random_state=seed % (2**31 - 1))
    res = run_active_learning(
        data.X,
        data.y,
        strategy=strategy,
        protocol=proto,
        classifier=clf,
        random_state=seed,
        ids=data.ids,
        groups=data.groups,
        n_detections=data.n_detections,
        early_every=0,
    )
    final = _realisation_dir(Path(out_dir), strategy, r)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; results are for reading
    try:
        m = res.metrics.copy()
        m.insert(0, "realisation", r)
        m.insert(0, "strategy", strategy)
        m.to_parquet(tmp / "metrics.parquet", index=False)
        if res.early_metrics is not None:
            e = res.early_metrics.copy()
            e.insert(0, "realisation", r)
            e.insert(0, "strategy", strategy)
            e.to_parquet(tmp / "early_metrics.parquet", index=False)
        q_rows = [
            (loop + 1, int(row), str(data.ids[row]), str(data.groups[row]), bool(data.y[row]))
            for loop, batch in enumerate(res.queried)
            for row in batch
        ]
        pd.DataFrame(q_rows, columns=["loop", "row", "id", "object_id", "positive"]).to_csv(
            tmp / "queried.csv", index=False
        )
        pd.DataFrame(
            {
                "row": res.initial,
                "id": data.ids[res.initial].astype(str),
                "object_id": data.groups[res.initial].astype(str),
                "positive": data.y[res.initial],
            }
        ).to_csv(tmp / "initial.csv", index=False)
        train_rows = res.training_indices()
        (tmp / "ids.json").write_text(
            json.dumps(
                {
                    "strategy": strategy,
                    "realisation": r,
                    "seed": seed,
                    "initial_ids": [str(i) for i in data.ids[res.initial]],
                    "queried_ids": [str(i) for i in data.ids[train_rows[len(res.initial) :]]],
                },
                indent=1,
            )
        )
        if cfg["save_models"]:
            _save_model(res, data, cfg, strategy, r, seed, train_rows, tmp / "model.eia")
        (tmp / "done.json").write_text(
            json.dumps(
                {
                    "config_hash": cfg["config_hash"],
                    "strategy": strategy,
                    "realisation": r,
                    "seed": seed,
                    "final": _clean(res.final()),
                },
                indent=1,
            )
        )
        try:
            os.rename(tmp, final)
        except OSError:  # another run completed it meanwhile: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return strategy, r


def _clean(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, (np.floating, float)):
            out[k] = None if not np.isfinite(v) else float(v)
        elif isinstance(v, (np.integer, int)):
            out[k] = int(v)
        else:
            out[k] = v
    return out


def _save_model(
    res,
    data: ExperimentData,
    cfg: dict,
    strategy: str,
    r: int,
    seed: int,
    train_rows: np.ndarray,
    path: Path,
) -> None:
    """The realisation's final forest as a safe model file (zip of JSON + numpy arrays, no
    pickle)."""
    card = {
        "created": cfg["created"],
        "extractor": data.extractor,
        "features": data.feature_names,
        "positive_class": sorted(TypeMap.from_config(cfg["type_map"]).positive_set()),
        "type_map": cfg["type_map"],
        "classifier": {
            "kind": "FastForest",
            "params": {**cfg["classifier"], "random_state": seed % (2**31 - 1)},
            "bootstrap": True,
        },
        "training": {
            "n_samples": len(train_rows),
            "n_positive": int(data.y[train_rows].sum()),
            "n_negative": int((~data.y[train_rows]).sum()),
            "n_objects": len(set(data.groups[train_rows].tolist())),
            "label_column": "label",
            "object_ids": [str(i) for i in data.groups[train_rows]],
            "alert_ids": [str(i) for i in data.ids[train_rows]],
            "labels": data.y[train_rows].astype(int).tolist(),
        },
        "metrics": {"active_learning_final": _clean(res.final())},
        "calibration": None,
        "versions": versions(),
        "parent": None,
        "lineage": {
            "experiment_config_hash": cfg["config_hash"],
            "strategy": strategy,
            "realisation": r,
            "seed": seed,
            "protocol": cfg["protocol"],
        },
    }
    Model(res.classifier.to_ensemble(), card).save(path)


def _realisation_dir(out_dir: Path, strategy: str, r: int) -> Path:
    return out_dir / "realisations" / _strategy_tag(strategy) / f"r{r:03d}"


def _is_done(out_dir: Path, strategy: str, r: int, config_hash: str) -> bool:
    marker = _realisation_dir(out_dir, strategy, r) / "done.json"
    if not marker.exists():
        return False
    try:
        return json.loads(marker.read_text()).get("config_hash") == config_hash
    except ValueError:
        return False


# ------------------------------------------------------------------------------------ main
def _versions() -> dict[str, str]:
    import numba
    import scipy
    import sklearn

    return {
        "earlyia": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
        "numba": numba.__version__,
    }


def run_experiment(
    features,
    strategies=("uncertainty", "random"),
    *,
    n_loops: int = 300,
    n_realisations: int = 20,
    protocol: str = "honest",
    n_initial: int = 10,
    n_initial_positive: int | None = None,
    batch_size: int = 1,
    test_fraction: float = 0.5,
    classifier: dict | None = None,
    positive=("SN Ia",),
    include_subtypes: bool = False,
    seed: int = 42,
    out_dir: str | Path = "earlyia-experiment",
    n_jobs: int = 2,
    save_models: bool = True,
    progress: bool | None = None,
    plots: bool = True,
    overwrite: bool = False,
    gate: str = "none",
) -> ExperimentResult:
    """Run ``n_realisations`` active-learning realisations per strategy and write the results to
    ``out_dir``.

    Args:
        features: path of a feature table (``earlyia features``) or a DataFrame with ``label``,
            ``object_id`` (``alert_id``, ``n_detections``, ``valid``) and feature columns.
        strategies: names of :data:`earlyia.learn.strategies.STRATEGIES`. protocol: ``"honest"``
        (split by object, fixed held-out test) or ``"fink"`` (Leoni et al. 2022). n_initial,
        n_initial_positive: initial labelled rows (default half positive), batch_size: queries per
        loop. classifier: parameters of :class:`~earlyia.learn.forest.FastForest` (default 1000
        trees). positive, include_subtypes: the positive class (see
        :class:`earlyia.labels.TypeMap`). seed: the experiment's seed; realisation ``r`` uses
        ``realisation_seed(seed, r)``. n_jobs: worker processes (1 = run in this process).
        save_models: write each realisation's final model (needed for ``best_model.eia``). progress:
        ``None``: a bar on a terminal, plain lines when stderr is piped
        (:class:`earlyia.progress.Progress`);
            True: a bar; False: nothing.
        overwrite: when ``out_dir`` holds an experiment with another configuration, delete its
        results
            instead of refusing (``earlyia demo`` does, its folder is its own).
        gate: ``"rise"`` learns and evaluates only on the rows the rise gate accepts (see
        :func:`load_data`):
            the pool and the metrics are then those of the alerts a gated model scores.
    """
    strategies = list(dict.fromkeys([strategies] if isinstance(strategies, str) else strategies))
    if not strategies:
        raise ConfigError("give at least one strategy")
    for s in strategies:
        get_strategy(s)  # unknown names fail now, not in a worker
    if protocol not in ("honest", "fink"):
        raise ConfigError(f"protocol must be 'honest' or 'fink', got {protocol!r}")
    if n_realisations < 1 or n_loops < 0 or batch_size < 1 or n_initial < 2 or n_jobs < 1:
        raise ConfigError(
            "need n_realisations >= 1, n_loops >= 0, batch_size >= 1, n_initial >= 2 and "
            "n_jobs >= 1"
        )
    type_map = TypeMap(positive=tuple(positive), include_subtypes=include_subtypes)
    data = load_data(features, type_map, gate=gate)
    clf_cfg = {"n_estimators": 1000, "max_features": "sqrt", **(classifier or {})}
    clf_cfg.pop("random_state", None)
    try:
        FastForest(**clf_cfg)
    except TypeError as exc:
        raise ConfigError(f"bad classifier parameters {clf_cfg}: {exc}") from exc
    if int(clf_cfg["n_estimators"]) < 1:
        raise ConfigError(
            f"the forest needs at least one tree, got n_estimators={clf_cfg['n_estimators']}"
        )
    cfg = {
        "strategies": strategies,
        "n_loops": int(n_loops),
        "n_realisations": int(n_realisations),
        "protocol": protocol,
        "n_initial": int(n_initial),
        "n_initial_positive": int(
            n_initial // 2 if n_initial_positive is None else n_initial_positive
        ),
        "batch_size": int(batch_size),
        "test_fraction": float(test_fraction),
        "classifier": clf_cfg,
        "type_map": type_map.config(),
        "seed": int(seed),
        "save_models": bool(save_models),
        "data_sha256": data.sha256,
        "features": data.feature_names,
    }
    if (
        gate != "none"
    ):  # only then, so that the runs of earlier releases keep their configuration hash and resume
        cfg["gate"] = gate
    # what one realisation's result depends on: everything but the list of strategies and how many
    # realisations, so a finished experiment can be extended with more of either in the same folder
    # and the data's content, not where the file lies (a moved feature table resumes)
    per_run = {k: v for k, v in cfg.items() if k not in ("strategies", "n_realisations")}
    per_run["data_sha256"] = sorted(data.sha256.values())
    cfg["config_hash"] = hashlib.sha256(
        json.dumps(per_run, sort_keys=True, default=str).encode()
    ).hexdigest()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        _check_same_experiment(out, cfg)
    except ConfigError:
        if not overwrite:
            raise
        _remove_results(out)
    cfg["created"] = datetime.now(UTC).isoformat(timespec="seconds")

    tasks = [(s, r) for r in range(n_realisations) for s in strategies]
    todo = [(s, r) for s, r in tasks if not _is_done(out, s, r, cfg["config_hash"])]
    _clean_stale(out)
    _write_manifest(out, cfg, data, strategies, n_realisations, status="running")
    mode = "auto" if progress is None else ("bar" if progress else "off")
    with Progress(
        len(tasks), "active learning", unit="runs", mode=mode, initial=len(tasks) - len(todo)
    ) as bar:
        if n_jobs == 1 or len(todo) <= 1:
            _init_worker(data, cfg)
            for s, r in todo:
                _run_one(s, r, str(out))
                bar.update(1)
        else:
            _warm_up()
            with ProcessPoolExecutor(
                max_workers=min(n_jobs, len(todo)), initializer=_init_worker, initargs=(data, cfg)
            ) as pool:
                futures = [pool.submit(_run_one, s, r, str(out)) for s, r in todo]
                try:
                    for fut in as_completed(futures):
                        fut.result()
                        bar.update(1)
                except BaseException:  # an error or Ctrl-C: do not start the queued realisations
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    return _aggregate(out, cfg, data, strategies, n_realisations, n_computed=len(todo), plots=plots)


def _warm_up() -> None:
    """Compile the forest's kernels once in this process before forking workers (else each worker
    compiles them)."""
    import multiprocessing

    if multiprocessing.get_start_method(allow_none=False) != "fork":
        return
    X = np.random.default_rng(0).standard_normal((40, 3))
    run_active_learning(
        X,
        np.arange(40) % 2 == 0,
        strategy="uncertainty",
        protocol="fink",
        n_loops=2,
        random_state=0,
        classifier=FastForest(n_estimators=2, random_state=0),
    )


def _check_same_experiment(out: Path, cfg: dict) -> None:
    path = out / MANIFEST
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text())
    except ValueError:
        return
    old_hash = old.get("config", {}).get("config_hash")
    if old_hash and old_hash != cfg["config_hash"]:
        raise ConfigError(
            f"{out} holds another experiment (config hash {old_hash[:12]} != "
            f"{cfg['config_hash'][:12]}); "
            "use another output folder or remove this one"
        )


#: Files an experiment writes at the top of its folder (deleted by ``overwrite=True``, nothing else
#: is).
RESULT_FILES = (
    "metrics.parquet",
    "metrics.csv",
    "early_metrics.parquet",
    "early_metrics.csv",
    "queried.parquet",
    "queried.csv",
    "initial.csv",
    "best_model.eia",
    "best.json",
    "learning_curves.png",
    "early_metrics.png",
    "summary.md",
    MANIFEST,
)


def _remove_results(out: Path) -> None:
    shutil.rmtree(out / "realisations", ignore_errors=True)
    for name in RESULT_FILES:
        (out / name).unlink(missing_ok=True)


def _clean_stale(out: Path) -> None:
    """Remove half-written realisation folders left by a killed run."""
    root = out / "realisations"
    if root.exists():
        for tmp in root.glob("*/.r*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)


def _write_manifest(
    out: Path,
    cfg: dict,
    data: ExperimentData,
    strategies,
    n_real: int,
    status: str,
    extra: dict | None = None,
) -> dict:
    proto = Protocol(
        name=cfg["protocol"],
        n_initial=cfg["n_initial"],
        n_initial_positive=cfg["n_initial_positive"],
        n_loops=cfg["n_loops"],
        batch_size=cfg["batch_size"],
        **({"test_fraction": cfg["test_fraction"]} if cfg["protocol"] == "honest" else {}),
    )
    manifest = {
        "format": "earlyia.experiment/1",
        "status": status,
        "config": cfg,
        "protocol": proto.config(),
        "protocol_description": proto.describe(),
        "seeds": {f"r{r:03d}": realisation_seed(cfg["seed"], r) for r in range(n_real)},
        "seed_rule": "realisation r of every strategy uses realisation_seed(seed, r) = "
        "SeedSequence([seed, r]) (paired comparison)",
        "data": {
            "sha256": data.sha256,
            "n_rows": len(data.y),
            "n_positive": int(data.y.sum()),
            "n_objects": len(set(data.groups.tolist())),
            "dropped": data.dropped,
            "extractor": data.extractor,
        },
        "versions": _versions(),
        "platform": platform.platform(),
        "command": " ".join(sys.argv),
        **(extra or {}),
    }
    text = json.dumps(manifest, indent=1, default=str) + "\n"
    atomic_write(out / MANIFEST, lambda tmp: Path(tmp).write_text(text))
    return manifest


def _write_table(df: pd.DataFrame, base: Path) -> None:
    atomic_write(base.with_suffix(".parquet"), lambda tmp: df.to_parquet(tmp, index=False))
    atomic_write(base.with_suffix(".csv"), lambda tmp: df.to_csv(tmp, index=False))


def _aggregate(
    out: Path,
    cfg: dict,
    data: ExperimentData,
    strategies,
    n_real: int,
    n_computed: int,
    plots: bool,
) -> ExperimentResult:
    metrics, early, queried, initial = [], [], [], []
    for r in range(n_real):
        for s in strategies:
            d = _realisation_dir(out, s, r)
            metrics.append(pd.read_parquet(d / "metrics.parquet"))
            if (d / "early_metrics.parquet").exists():
                early.append(pd.read_parquet(d / "early_metrics.parquet"))
            q = pd.read_csv(d / "queried.csv", dtype={"id": str, "object_id": str})
            q.insert(0, "realisation", r)
            q.insert(0, "strategy", s)
            queried.append(q)
            i = pd.read_csv(d / "initial.csv", dtype={"id": str, "object_id": str})
            i.insert(0, "realisation", r)
            i.insert(0, "strategy", s)
            initial.append(i)
    m = pd.concat(metrics, ignore_index=True)
    e = pd.concat(early, ignore_index=True) if early else None
    _write_table(m, out / "metrics")
    if e is not None:
        _write_table(e, out / "early_metrics")
    _write_table(pd.concat(queried, ignore_index=True), out / "queried")
    ini = pd.concat(initial, ignore_index=True)
    atomic_write(out / "initial.csv", lambda tmp: ini.to_csv(tmp, index=False))

    final = m[m["loop"] == m.groupby(["strategy", "realisation"])["loop"].transform("max")]
    ranked = final.assign(_auc=final["roc_auc"].fillna(-1.0)).sort_values(
        ["fom", "_auc", "realisation", "strategy"],
        ascending=[False, False, True, True],
        kind="mergesort",
    )
    top = ranked.iloc[0]
    best = {
        "strategy": str(top["strategy"]),
        "realisation": int(top["realisation"]),
        "seed": realisation_seed(cfg["seed"], int(top["realisation"])),
        "final": _clean({k: top[k] for k in (*CURVE_METRICS, "n_labels")}),
        "rule": "highest final-loop FoM (ties: higher AUC, then lower realisation)",
    }
    src = _realisation_dir(out, best["strategy"], best["realisation"]) / "model.eia"
    if src.exists():
        atomic_write(out / "best_model.eia", lambda tmp: shutil.copyfile(src, tmp))
        best["model"] = "best_model.eia"
    atomic_write(
        out / "best.json", lambda tmp: Path(tmp).write_text(json.dumps(best, indent=1) + "\n")
    )

    summary = summarise(m)
    figures = []
    if plots:
        plot_learning_curves(
            m,
            out / "learning_curves.png",
            title=f"{cfg['protocol']} protocol, {n_real} realisations",
        )
        figures.append("learning_curves.png")
        if e is not None and len(e):
            plot_early_metrics(
                e, out / "early_metrics.png", title=f"final loop, {cfg['protocol']} protocol"
            )
            figures.append("early_metrics.png")
    manifest = _write_manifest(
        out,
        cfg,
        data,
        strategies,
        n_real,
        status="complete",
        extra={"best": best, "figures": figures, "n_computed_this_run": n_computed},
    )
    paired = paired_differences(m)
    write_summary(out / "summary.md", summary, manifest, early=e, paired=paired)
    return ExperimentResult(
        out,
        m,
        e,
        summary,
        best,
        manifest,
        n_computed,
        len(strategies) * n_real - n_computed,
        paired,
    )
