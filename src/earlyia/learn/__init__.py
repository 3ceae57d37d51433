"""Active learning: strategies, protocols, metrics, the loop and the fast incremental forest.

Public API (stable; see each module's docstring)::

    from earlyia.learn import run_active_learning, ALResult, FastForest res = run_active_learning(X,
    y, strategy="uncertainty", protocol="fink", random_state=0) res.metrics            # per-loop
    DataFrame: loop, n_labels, accuracy, efficiency, purity, fom, f1, roc_auc... res.queried_ids
    # object ids queried at each loop

Strategies follow one contract ``strategy(classifier, X_pool, n_instances=1, random_state=None,
**kwargs) -> (indices, scores)`` and are registered by name in :data:`STRATEGIES`.
"""

from earlyia.learn.forest import FastForest
from earlyia.learn.loop import ALResult, run_active_learning
from earlyia.learn.protocols import PROTOCOL_NAMES, Protocol, Split, fink, get_protocol, honest
from earlyia.learn.strategies import (
    STRATEGIES,
    BootstrapCommittee,
    PoolPredictions,
    committee_summary,
    get_strategy,
    positive_proba,
    register_strategy,
    select_top,
)
from earlyia.metrics import (
    METRIC_NAMES,
    binary_metrics,
    counts_to_metrics,
    metrics_by_detections,
    roc_auc,
)

__all__ = [
    "METRIC_NAMES",
    "PROTOCOL_NAMES",
    "STRATEGIES",
    "ALResult",
    "BootstrapCommittee",
    "FastForest",
    "PoolPredictions",
    "Protocol",
    "Split",
    "binary_metrics",
    "committee_summary",
    "counts_to_metrics",
    "fink",
    "get_protocol",
    "get_strategy",
    "honest",
    "metrics_by_detections",
    "positive_proba",
    "register_strategy",
    "roc_auc",
    "run_active_learning",
    "select_top",
]
