"""Pool-based active-learning loop over any probabilistic classifier, and its result object.

:func:`run_active_learning` runs one realisation: split the rows with a protocol, fit on the
initial rows, then ``n_loops`` times: query ``batch_size`` rows with a strategy, add them, refit,
score the test rows. Row ``loop = 0`` of the metrics is the initial fit, row ``loop = L`` is after
``L`` queries (``n_labels = n_initial + L * batch_size``).

Two paths, same results up to the forest's randomness:

- generic: the classifier (any scikit-learn-style ``fit``/``predict_proba``) is cloned and refit
  from scratch every loop and predicts the pool and test rows once per loop;
- incremental: a classifier with ``register_scored``/``add_samples`` (the
  :class:`~earlyia.learn.forest.FastForest`, the default) is fit once and updated with the queried
  rows; its predictions on every row are maintained incrementally and handed to the strategy
  through :class:`~earlyia.learn.strategies.PoolPredictions`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import clone

from earlyia.errors import ConfigError, InputError
from earlyia.learn.forest import FastForest
from earlyia.learn.protocols import Protocol, get_protocol
from earlyia.learn.strategies import (
    PoolPredictions,
    binary_entropy,
    committee_summary,
    get_strategy,
    positive_proba,
    strategy_name,
)
from earlyia.metrics import binary_metrics, metrics_by_detections


@dataclass
class ALResult:
    """One realisation of the loop.

    Attributes:
        metrics: one row per loop: ``loop, n_labels, n_labels_positive, cost_spent`` then the
            metrics of :mod:`earlyia.metrics` on the test rows, and ``seconds`` (wall time
            of that loop).
        queried: row indices queried at each loop (``queried[L-1]`` = the batch of loop L).
        queried_ids: the same as object ids (``ids[row]``; the row index when no ids were given).
        initial: the initial labelled rows; ``initial_ids`` their ids. test: the fixed test rows
        (honest), or ``None`` = every row not in training (fink). classifier: the final fitted
        classifier (a FastForest's registered rows are released). config: strategy, protocol (name
        and fields), seed, n_loops, batch size, classifier class and
            parameters, fast path used or not.
        early_metrics: metrics per number of detections (``loop, n_detections, ...``) when
            ``n_detections`` was given, else ``None``.
        final_test: row indices scored at the final loop, ``final_proba`` their P(positive).
    """

    metrics: pd.DataFrame
    queried: list[np.ndarray]
    queried_ids: list[np.ndarray]
    initial: np.ndarray
    initial_ids: np.ndarray
    test: np.ndarray | None
    classifier: object
    config: dict
    early_metrics: pd.DataFrame | None = None
    final_test: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    final_proba: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def protocol(self) -> str:
        return self.config["protocol"]["name"]

    def training_indices(self) -> np.ndarray:
        """All labelled rows at the end (initial + every query), in labelling order."""
        return (
            np.concatenate([self.initial, *self.queried]) if self.queried else self.initial.copy()
        )

    def final(self) -> dict:
        """The metrics of the last loop as a dict."""
        return self.metrics.iloc[-1].to_dict()


def run_active_learning(
    X: np.ndarray,
    y: np.ndarray,
    *,
    strategy="uncertainty",
    protocol: str | Protocol = "fink",
    classifier=None,
    n_loops: int | None = None,
    batch_size: int | None = None,
    random_state=None,
    ids: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    n_detections: np.ndarray | None = None,
    cost: np.ndarray | None = None,
    budget: float | None = None,
    strategy_kwargs: dict | None = None,
    early_every: int = 1,
    threshold: float = 0.5,
    progress: bool = False,
) -> ALResult:
    """Run one active-learning realisation and return an :class:`ALResult`.

    Args:
        X: float features (n, k), one row per alert (or object).
        y: bool (True = positive class, e.g. from ``earlyia.labels.TypeMap``) or 0/1.
        strategy: a name of :data:`~earlyia.learn.strategies.STRATEGIES` or a callable following
            the strategy contract.
        protocol: ``"fink"``, ``"honest"`` or a :class:`Protocol`; ``n_loops``/``batch_size``
            override its fields.
        classifier: scikit-learn-style probabilistic classifier (cloned); default
            ``FastForest(n_estimators=1000, random_state=42)`` (Fink's forest, incremental path).
        random_state: seed of the split, of the strategies' random choices and tie-breaks.
        ids: object id per row (reported with the queries); groups: object per row (honest split).
        n_detections: detections each row (alert) had when scored -> ``early_metrics``.
        cost, budget: per-row labelling cost and the maximal cost of one loop's batch.
        early_every: compute the early metrics every this many loops (0 = final loop only).
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2:
        raise InputError(f"X must be 2-d (rows, features), got shape {X.shape}")
    n = len(X)
    if y.shape != (n,):
        raise InputError(f"y has shape {y.shape}; expected ({n},) (one label per row of X)")
    if y.dtype != bool:
        if not np.isin(y, (0, 1)).all():
            raise InputError(
                "y must be boolean (True = positive) or 0/1; map types with earlyia.labels.TypeMap"
            )
        y = y.astype(bool)
    if not np.isfinite(X).all():
        bad = np.flatnonzero(~np.isfinite(X).all(axis=1))[:5]
        raise InputError(
            f"X has non-finite values (rows {bad.tolist()}...); impute or drop them first"
        )
    for name, arr in (
        ("ids", ids),
        ("groups", groups),
        ("n_detections", n_detections),
        ("cost", cost),
    ):
        if arr is not None and len(arr) != n:
            raise InputError(f"{name} has {len(arr)} entries for {n} rows")
    ids_arr = np.arange(n) if ids is None else np.asarray(ids)
    cost_arr = None if cost is None else np.asarray(cost, dtype=np.float64)
    if cost_arr is not None and ((cost_arr <= 0) | ~np.isfinite(cost_arr)).any():
        raise InputError("cost must be positive and finite for every row")
    overrides = {
        k: v for k, v in (("n_loops", n_loops), ("batch_size", batch_size)) if v is not None
    }
    proto = get_protocol(protocol, **overrides)
    strat = get_strategy(strategy)
    skw = dict(strategy_kwargs or {})
    needs_committee = getattr(strat, "needs_committee", False)
    base = FastForest(n_estimators=1000, random_state=42) if classifier is None else classifier
    incremental = hasattr(base, "register_scored") and hasattr(base, "add_samples")
    if budget is not None and budget <= 0:
        raise ConfigError(f"budget must be positive, got {budget}")

    rng = np.random.default_rng(random_state)
    split = proto.split(y, groups, random_state=rng)
    in_train = np.zeros(n, dtype=bool)
    in_train[split.initial] = True
    in_pool = np.zeros(n, dtype=bool)
    in_pool[split.pool] = True
    test_fixed = split.test

    clf = clone(base)
    if incremental:
        clf.fit(X[split.initial], y[split.initial], sample_keys=split.initial)
        clf.register_scored(X)

    rows, early_rows, queried = [], [], []
    cost_spent = 0.0
    p_all = np.full(n, np.nan)
    vote_all = ent_all = None
    test = None
    iterator = range(proto.n_loops + 1)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc=f"AL {strategy_name(strategy)}")
    for loop in iterator:
        t0 = time.perf_counter()
        # --- fit and predict
        test = np.flatnonzero(~in_train) if test_fixed is None else test_fixed
        pool = np.flatnonzero(in_pool)
        if incremental:
            p_all = clf.scored_proba()
            if needs_committee:
                vote_all, ent_all = clf.scored_votes(), clf.scored_member_entropy()
        else:
            train = np.flatnonzero(in_train)
            clf = clone(base).fit(X[train], y[train])
            need = test if test_fixed is None else np.union1d(test, pool)
            if needs_committee and loop < proto.n_loops:
                p_need, v_need, e_need = committee_summary(clf, X[need])
                vote_all = np.full(n, np.nan)
                ent_all = np.full(n, np.nan)
                vote_all[need], ent_all[need] = v_need, e_need
            else:
                p_need = positive_proba(clf, X[need])
            p_all = np.full(n, np.nan)
            p_all[need] = p_need
        # --- evaluate
        m = binary_metrics(y[test], p_all[test], threshold=threshold)
        n_lab = int(in_train.sum())
        rec = {
            "loop": loop,
            "n_labels": n_lab,
            "n_labels_positive": int(y[in_train].sum()),
            "cost_spent": cost_spent,
        }
        rec.update(m)
        if n_detections is not None and (
            loop == proto.n_loops or (early_every and loop % early_every == 0)
        ):
            em = metrics_by_detections(
                y[test], p_all[test], np.asarray(n_detections)[test], threshold=threshold
            )
            em.insert(0, "loop", loop)
            early_rows.append(em)
        # --- query
        if loop < proto.n_loops:
            if len(pool) == 0:
                rec["seconds"] = time.perf_counter() - t0
                rows.append(rec)
                break
            X_pool = X[pool]
            cached = PoolPredictions(
                X_pool,
                p_all[pool],
                None if vote_all is None else vote_all[pool],
                None if ent_all is None else ent_all[pool],
            )
            kw = dict(skw)
            if cost_arr is not None:
                kw["cost"] = cost_arr[pool]
            if budget is not None:
                kw["budget"] = budget
            kw.setdefault("X_labelled", X[in_train])
            seed = int(rng.integers(0, 2**63 - 1))
            idx, _ = strat(
                cached,
                X_pool,
                n_instances=min(proto.batch_size, len(pool)),
                random_state=seed,
                **kw,
            )
            idx = np.asarray(idx, dtype=np.int64)
            if len(np.unique(idx)) != len(idx) or (
                len(idx) and (idx.min() < 0 or idx.max() >= len(pool))
            ):
                raise ConfigError(
                    f"strategy {strategy_name(strategy)!r} returned invalid pool positions "
                    f"{idx[:10]}"
                )
            new = pool[idx]
            queried.append(new)
            in_train[new] = True
            in_pool[new] = False
            if cost_arr is not None:
                cost_spent += float(cost_arr[new].sum())
            if incremental and len(new):
                clf.add_samples(new, X[new], y[new])
        rec["seconds"] = time.perf_counter() - t0
        rows.append(rec)

    if incremental:
        clf.release_scored()  # the final forest stays usable; its pool bookkeeping is large
    config = {
        "strategy": strategy_name(strategy),
        "strategy_kwargs": {k: v for k, v in skw.items() if np.isscalar(v)},
        "protocol": proto.config(),
        "protocol_description": proto.describe(),
        "seed": random_state
        if random_state is None or np.isscalar(random_state)
        else repr(random_state),
        "n_loops": proto.n_loops,
        "batch_size": proto.batch_size,
        "budget": budget,
        "classifier": type(base).__name__,
        "classifier_params": {
            k: v for k, v in base.get_params(deep=False).items() if v is None or np.isscalar(v)
        },
        "incremental": incremental,
        "threshold": threshold,
        "n_rows": n,
    }
    return ALResult(
        metrics=pd.DataFrame(rows),
        queried=queried,
        queried_ids=[ids_arr[q] for q in queried],
        initial=split.initial,
        initial_ids=ids_arr[split.initial],
        test=test_fixed,
        classifier=clf,
        config=config,
        early_metrics=pd.concat(early_rows, ignore_index=True) if early_rows else None,
        final_test=test,
        final_proba=p_all[test],
    )


__all__ = ["ALResult", "binary_entropy", "run_active_learning"]
