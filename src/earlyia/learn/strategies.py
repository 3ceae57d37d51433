"""Query strategies: one contract, plain functions, a registry by name.

Contract (modAL-like)::

    strategy(classifier, X_pool, n_instances=1, random_state=None, **kwargs) -> (indices, scores)

- ``classifier``: anything with ``predict_proba(X)`` (binary, positive class = ``classes_[-1]``,
  i.e. ``True``/1). Committee strategies also need :func:`committee_summary` to work on it: a
  scikit-learn ensemble (``estimators_``), a :class:`BootstrapCommittee`, a
  :class:`~earlyia.learn.forest.FastForest`, or a :class:`PoolPredictions` cache.
- ``X_pool``: float array (n_pool, k) of the candidates (never labelled rows: the loop removes
  them).
- ``n_instances``: between 1 and ``len(X_pool)`` (:func:`check_request`; anything else is a
  :class:`~earlyia.errors.ConfigError`).
- returns ``indices``: int64 positions into ``X_pool``, unique, at most ``n_instances`` (fewer when
  ``exclude`` or the budget leaves fewer), best first; ``scores``: float64 (n_pool,), higher = more
  wanted.
- keyword arguments every strategy accepts: ``cost`` (n_pool,) positive cost of labelling each
  candidate (e.g. cheaper for brighter objects), ``budget`` (max total cost of this query; a
  candidate that does not fit is skipped), ``exclude`` (bool (n_pool,), never return these),
  ``X_labelled`` (used by the diverse batch strategy), and ignores the ones it does not use.

Speed: the loop wraps cached pool predictions in :class:`PoolPredictions` (``predict_proba`` and
``committee_summary`` return arrays computed once per loop, e.g. maintained incrementally by the
fast forest), so a strategy never re-runs a 1000-tree forest. Ties are broken at random with the
seed, so the same seed gives the same indices.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from earlyia.errors import ConfigError, InputError
from earlyia.registry import Registry

Strategy = Callable[..., tuple[np.ndarray, np.ndarray]]

_EPS = 1e-12


# --------------------------------------------------------------------------------------------
# predictions


def positive_proba(classifier, X: np.ndarray) -> np.ndarray:
    """P(positive) as a 1-d array from any binary ``predict_proba`` (handles a one-class fit)."""
    p = np.asarray(classifier.predict_proba(X), dtype=np.float64)
    if p.ndim == 1:
        return p
    classes = getattr(classifier, "classes_", None)
    if p.shape[1] == 1:
        only = bool(classes[0]) if classes is not None else False
        return np.full(p.shape[0], 1.0 if only else 0.0)
    if p.shape[1] != 2:
        raise InputError(
            f"classifier returned {p.shape[1]} classes; active learning here is binary"
        )
    return p[:, 1]


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in nats of Bernoulli(p), 0 at p = 0 or 1."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    q = 1.0 - p
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(np.where(p > 0, p * np.log(p), 0.0) + np.where(q > 0, q * np.log(q), 0.0))
    return h


def committee_summary(classifier, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean_p, vote_fraction, mean_member_entropy)`` of a committee over the rows of X.

    ``mean_p`` = mean member P(positive); ``vote_fraction`` = fraction of members with p > 0.5;
    ``mean_member_entropy`` = mean binary entropy of the members (for BALD).
    """
    if hasattr(classifier, "committee_summary"):
        return classifier.committee_summary(X)
    members = getattr(classifier, "estimators_", None)
    if members is None:
        raise InputError(
            f"{type(classifier).__name__} is not a committee: use a forest, FastForest, or "
            "wrap it in BootstrapCommittee"
        )
    classes = getattr(classifier, "classes_", np.array([False, True]))
    P = np.stack([_member_positive(m, X, classes) for m in members])
    return P.mean(axis=0), (P > 0.5).mean(axis=0), binary_entropy(P).mean(axis=0)


def _member_positive(member, X: np.ndarray, classes: np.ndarray) -> np.ndarray:
    p = np.asarray(member.predict_proba(X), dtype=np.float64)
    if p.shape[1] == 2:
        return p[:, 1]
    # a member that saw one class: its classes_ are encoded indices or labels
    mc = getattr(member, "classes_", classes[:1])
    label = (
        classes[int(mc[0])]
        if len(classes) > 1 and np.issubdtype(np.asarray(mc).dtype, np.floating)
        else mc[0]
    )
    return np.full(p.shape[0], 1.0 if bool(label) else 0.0)


class PoolPredictions:
    """Predictions on the pool computed once per loop, exposed with the classifier interface.

    ``predict_proba(X)`` / ``committee_summary(X)`` accept only the very ``X_pool`` object they
    were built for (an identity check, so a stale cache can never be used for other rows).
    """

    classes_ = np.array([False, True])

    def __init__(
        self,
        X_pool: np.ndarray,
        proba: np.ndarray,
        vote_fraction: np.ndarray | None = None,
        member_entropy: np.ndarray | None = None,
    ):
        self.X_pool = X_pool
        self.proba = np.asarray(proba, dtype=np.float64)
        self.vote_fraction = vote_fraction
        self.member_entropy = member_entropy
        if len(self.proba) != len(X_pool):
            raise InputError(f"cached proba has {len(self.proba)} rows for a pool of {len(X_pool)}")

    def _check(self, X) -> None:
        if X is not self.X_pool:
            raise InputError("PoolPredictions only answers for the pool array it was built with")

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self._check(X)
        return np.column_stack([1.0 - self.proba, self.proba])

    def committee_summary(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._check(X)
        if self.vote_fraction is None or self.member_entropy is None:
            raise InputError(
                "these cached predictions hold no committee (vote fractions / member entropies)"
            )
        return self.proba, self.vote_fraction, self.member_entropy


class BootstrapCommittee(ClassifierMixin, BaseEstimator):
    """A committee of ``n_members`` clones of ``estimator``, each fit on a bootstrap resample.

    Gives any classifier the members that vote entropy and BALD need (a forest already has them).
    """

    def __init__(self, estimator=None, n_members: int = 10, random_state=None):
        self.estimator = estimator
        self.n_members = n_members
        self.random_state = random_state

    def fit(self, X, y):
        from sklearn.linear_model import LogisticRegression

        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y).astype(bool)
        rng = np.random.default_rng(self.random_state)
        base = self.estimator if self.estimator is not None else LogisticRegression()
        self.classes_ = np.array([False, True])
        self.estimators_ = []
        for _ in range(self.n_members):
            idx = rng.integers(0, len(y), len(y))
            if y[idx].all() or not y[idx].any():  # keep both classes in every member when possible
                idx[:2] = (
                    [np.flatnonzero(y)[0], np.flatnonzero(~y)[0]]
                    if y.any() and (~y).any()
                    else idx[:2]
                )
            self.estimators_.append(clone(base).fit(X[idx], y[idx]))
        return self

    def predict_proba(self, X):
        p = np.mean([_member_positive(m, X, self.classes_) for m in self.estimators_], axis=0)
        return np.column_stack([1.0 - p, p])

    def predict(self, X):
        return self.predict_proba(X)[:, 1] > 0.5


# --------------------------------------------------------------------------------------------
# selection


def select_top(
    scores: np.ndarray, n_instances: int, random_state=None, cost=None, budget=None, exclude=None
) -> np.ndarray:
    """Indices of the highest scores (random tie-break), at most ``n_instances``, within ``budget``.

    With a budget, candidates are taken greedily in score order and one whose cost does not fit
    in what is left is skipped (cheaper ones further down may still fit).
    """
    rng = np.random.default_rng(random_state)
    s = np.asarray(scores, dtype=np.float64).copy()
    n = len(s)
    check_request(n, n_instances)
    s[np.isnan(s)] = -np.inf
    allowed = np.ones(n, dtype=bool)
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=bool)
        if exclude.shape != (n,):
            raise InputError(f"exclude has shape {exclude.shape}; expected ({n},)")
        allowed &= ~exclude
    c = None
    if cost is not None:
        c = np.asarray(cost, dtype=np.float64)
        if c.shape != (n,) or (c <= 0).any() or not np.isfinite(c).all():
            raise InputError(f"cost must be {n} positive finite numbers (one per pool row)")
    if budget is not None and c is not None:
        allowed &= c <= budget
    cand = np.flatnonzero(allowed)
    key = rng.random(n)  # drawn for the whole pool so the tie-break does not depend on filtering
    if len(cand) == 0:
        return np.empty(0, dtype=np.int64)
    if budget is None and n_instances < len(cand):
        # only rows scoring at least the n-th best can be chosen: sort just those
        kth = np.partition(-s[cand], n_instances - 1)[n_instances - 1]
        cand = cand[-s[cand] <= kth]
    order = cand[np.lexsort((key[cand], -s[cand]))]
    if budget is None:
        return order[:n_instances].astype(np.int64)
    if c is None:
        c = np.ones(n)
    chosen, spent = [], 0.0
    for i in order:
        if spent + c[i] <= budget + 1e-12:
            chosen.append(i)
            spent += c[i]
            if len(chosen) == n_instances:
                break
    return np.asarray(chosen, dtype=np.int64)


def check_request(n_pool: int, n_instances: int) -> None:
    """:class:`ConfigError` unless ``1 <= n_instances <= n_pool`` (the caller asks for at most
    the pool)."""
    if not 1 <= n_instances <= n_pool:
        raise ConfigError(
            f"n_instances must be between 1 and the pool size ({n_pool} candidates), got "
            f"{n_instances}"
        )


def _pick(scores, n_instances, random_state, kwargs):
    idx = select_top(
        scores,
        n_instances,
        random_state,
        kwargs.get("cost"),
        kwargs.get("budget"),
        kwargs.get("exclude"),
    )
    return idx, np.asarray(scores, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# strategies


def random_sampling(classifier, X_pool, n_instances=1, random_state=None, **kwargs):
    """Uniformly random candidates (the baseline of Leoni et al. 2022)."""
    rng = np.random.default_rng(random_state)
    scores = rng.random(len(X_pool))
    return _pick(scores, n_instances, rng, kwargs)


def uncertainty_sampling(classifier, X_pool, n_instances=1, random_state=None, **kwargs):
    """Smallest |p - 0.5| first (Fink's strategy); score = 0.5 - |p - 0.5|."""
    p = positive_proba(classifier, X_pool)
    return _pick(0.5 - np.abs(p - 0.5), n_instances, random_state, kwargs)


def entropy_sampling(classifier, X_pool, n_instances=1, random_state=None, **kwargs):
    """Highest predictive entropy (for two classes: the same order as uncertainty)."""
    p = positive_proba(classifier, X_pool)
    return _pick(binary_entropy(p), n_instances, random_state, kwargs)


def margin_sampling(classifier, X_pool, n_instances=1, random_state=None, **kwargs):
    """Smallest margin between the two class probabilities; score = -|2p - 1|."""
    p = positive_proba(classifier, X_pool)
    return _pick(-np.abs(2.0 * p - 1.0), n_instances, random_state, kwargs)


def least_confident(classifier, X_pool, n_instances=1, random_state=None, **kwargs):
    """Lowest probability of the predicted class; score = 1 - max(p, 1 - p)."""
    p = positive_proba(classifier, X_pool)
    return _pick(1.0 - np.maximum(p, 1.0 - p), n_instances, random_state, kwargs)


def vote_entropy(classifier, X_pool, n_instances=1, random_state=None, **kwargs):
    """Committee disagreement: entropy of the members' hard votes (trees of a forest)."""
    _, votes, _ = committee_summary(classifier, X_pool)
    return _pick(binary_entropy(votes), n_instances, random_state, kwargs)


def bald(classifier, X_pool, n_instances=1, random_state=None, **kwargs):
    """Mutual information between label and member (BALD): H(mean p) - mean H(p_member)."""
    p, _, mean_h = committee_summary(classifier, X_pool)
    return _pick(np.maximum(binary_entropy(p) - mean_h, 0.0), n_instances, random_state, kwargs)


def uncertainty_per_cost(classifier, X_pool, n_instances=1, random_state=None, **kwargs):
    """Uncertainty divided by the labelling cost (bright, cheap-to-spectroscope objects first)."""
    p = positive_proba(classifier, X_pool)
    u = 0.5 - np.abs(p - 0.5)
    cost = kwargs.get("cost")
    if cost is not None:
        u = u / np.asarray(cost, dtype=np.float64)
    return _pick(u, n_instances, random_state, kwargs)


def diverse_uncertainty(
    classifier,
    X_pool,
    n_instances=1,
    random_state=None,
    n_candidates=None,
    X_labelled=None,
    **kwargs,
):
    """A batch both uncertain and diverse: greedy max-min distance weighted by uncertainty.

    Take the ``n_candidates`` (default ``max(10 n_instances, 50)``) most uncertain rows, then
    pick the most uncertain one, and repeatedly the candidate maximising
    ``uncertainty * distance to the nearest already chosen row`` (features standardised on the
    candidates), so a batch never holds k near-duplicates. Score = uncertainty in [0, 1].
    """
    check_request(len(X_pool), n_instances)
    rng = np.random.default_rng(random_state)
    X_pool = np.asarray(X_pool, dtype=np.float64)
    p = positive_proba(classifier, X_pool)
    u = 1.0 - 2.0 * np.abs(p - 0.5)
    m = n_candidates or max(10 * n_instances, 50)
    cand = select_top(u, min(m, len(u)), rng, kwargs.get("cost"), None, kwargs.get("exclude"))
    if n_instances == 1 or len(cand) <= 1:
        return select_top(
            u, n_instances, rng, kwargs.get("cost"), kwargs.get("budget"), kwargs.get("exclude")
        ), u
    Z = X_pool[cand]
    scale = Z.std(axis=0)
    scale[scale == 0] = 1.0
    Z = (Z - Z.mean(axis=0)) / scale
    dmin = np.full(len(cand), np.inf)
    if X_labelled is not None and len(X_labelled):
        L = (np.asarray(X_labelled, dtype=np.float64) - (X_pool[cand].mean(axis=0))) / scale
        dmin = np.sqrt(((Z[:, None, :] - L[None, :, :]) ** 2).sum(-1)).min(axis=1)
    cost = kwargs.get("cost")
    budget = kwargs.get("budget")
    c = np.ones(len(cand)) if cost is None else np.asarray(cost, dtype=np.float64)[cand]
    taken = np.zeros(len(cand), dtype=bool)
    chosen, spent = [], 0.0
    uc = u[cand] + _EPS
    tie = rng.random(len(cand)) * 1e-9
    while len(chosen) < n_instances:
        fits = ~taken & ((spent + c <= budget + 1e-12) if budget is not None else True)
        if not fits.any():
            break
        gain = np.where(np.isfinite(dmin), uc * dmin, uc * 1e6) + tie
        gain[~fits] = -np.inf
        j = int(np.argmax(gain))
        taken[j] = True
        chosen.append(cand[j])
        spent += c[j]
        dmin = np.minimum(dmin, np.sqrt(((Z - Z[j]) ** 2).sum(axis=1)))
    return np.asarray(chosen, dtype=np.int64), u


def _check_strategy(name: str, strategy: Strategy) -> None:
    if not callable(strategy):
        raise ConfigError(f"register_strategy({name!r}): {strategy!r} is not callable")


#: Query strategies by name. Add your own with :func:`register_strategy`.
STRATEGIES: Registry[Strategy] = Registry("strategy", check=_check_strategy)


def register_strategy(
    name: str, strategy: Strategy, needs_committee: bool = False, *, replace: bool = False
) -> Strategy:
    """Add a strategy under ``name`` (it must follow the contract of this module;
    ``replace=True`` to replace one)."""
    STRATEGIES.register(name, strategy, replace=replace)
    if needs_committee:
        strategy.needs_committee = True
    return strategy


register_strategy("random", random_sampling)
register_strategy("uncertainty", uncertainty_sampling)
register_strategy("entropy", entropy_sampling)
register_strategy("margin", margin_sampling)
register_strategy("least_confident", least_confident)
register_strategy("vote_entropy", vote_entropy, needs_committee=True)
register_strategy("bald", bald, needs_committee=True)
register_strategy("uncertainty_per_cost", uncertainty_per_cost)
register_strategy("diverse_uncertainty", diverse_uncertainty)


def get_strategy(strategy: str | Strategy) -> Strategy:
    """A strategy by name (see :data:`STRATEGIES`) or the callable itself."""
    if callable(strategy):
        return strategy
    return STRATEGIES.get(strategy)


def strategy_name(strategy: str | Strategy) -> str:
    if isinstance(strategy, str):
        return strategy
    return STRATEGIES.name_of(strategy) or getattr(strategy, "__name__", type(strategy).__name__)
