"""Evaluation protocols of the active-learning loop; every result records which one it used.

- ``"fink"`` (Leoni et al. 2022): start from 10 labelled rows (5 positive, 5 negative) drawn at
  random, 300 loops of 1 query; the candidates are every unlabelled row and the *test set is every
  row not in training at that loop*. When rows are alerts, alerts of one object can sit on both
  sides (training and test): the scores are optimistic (leakage). Kept to compare with Fink.
- ``"honest"``: rows are split *by object* (``groups``) into a query pool and a held-out test set
  that is never queried and never changes; no object is on both sides. The initial labelled rows
  are drawn from the pool. Without ``groups`` every row is its own object.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from earlyia.errors import ConfigError, InputError

PROTOCOL_NAMES = ("fink", "honest")


@dataclass(frozen=True)
class Split:
    """Row indices of one realisation. ``test is None`` means "every row not in training" (fink)."""

    initial: np.ndarray
    pool: np.ndarray
    test: np.ndarray | None


@dataclass(frozen=True)
class Protocol:
    """How a realisation is set up: initial sample, loops, batch size, test set.

    Args:
        name: ``"fink"`` or ``"honest"`` (see the module docstring).
        n_initial: labelled rows at the start, ``n_initial_positive`` of them positive.
        n_loops: number of queries rounds after the initial fit.
        batch_size: rows queried per loop.
        test_fraction: share of the objects held out as the test set (``"honest"`` only).
    """

    name: str = "fink"
    n_initial: int = 10
    n_initial_positive: int = 5
    n_loops: int = 300
    batch_size: int = 1
    test_fraction: float = 0.5

    def __post_init__(self):
        if self.name not in PROTOCOL_NAMES:
            raise ConfigError(f"unknown protocol {self.name!r}; choose one of {PROTOCOL_NAMES}")
        if not 0 <= self.n_initial_positive <= self.n_initial or self.n_initial < 1:
            raise ConfigError(
                "need 1 <= n_initial and 0 <= n_initial_positive <= n_initial (got "
                f"{self.n_initial}, "
                f"{self.n_initial_positive})"
            )
        if self.n_loops < 0 or self.batch_size < 1:
            raise ConfigError(
                f"need n_loops >= 0 and batch_size >= 1 (got {self.n_loops}, {self.batch_size})"
            )
        if self.name == "honest" and not 0 < self.test_fraction < 1:
            raise ConfigError(f"test_fraction must be in (0, 1), got {self.test_fraction}")

    @property
    def test_is_complement(self) -> bool:
        return self.name == "fink"

    def describe(self) -> str:
        if self.name == "fink":
            return (
                f"fink (Leoni et al. 2022): {self.n_initial} initial rows "
                f"({self.n_initial_positive} positive), "
                f"{self.n_loops} loops x {self.batch_size}; test = every row not in training "
                "(alerts of one object may be on both sides)"
            )
        return (
            f"honest: split by object, {self.test_fraction:.0%} of objects held out and "
            "never queried; "
            f"{self.n_initial} initial rows ({self.n_initial_positive} positive) from the pool, "
            f"{self.n_loops} loops x {self.batch_size}"
        )

    def config(self) -> dict:
        return asdict(self)

    def split(self, y: np.ndarray, groups: np.ndarray | None = None, random_state=None) -> Split:
        """Draw the initial labelled rows, the query pool and (honest) the fixed test set."""
        rng = np.random.default_rng(random_state)
        y = np.asarray(y).astype(bool)
        n = len(y)
        if self.name == "fink":
            init = _initial(np.arange(n), y, self.n_initial, self.n_initial_positive, rng)
            pool = np.setdiff1d(np.arange(n), init)
            return Split(initial=init, pool=pool, test=None)
        g = np.arange(n) if groups is None else np.asarray(groups)
        if len(g) != n:
            raise InputError(
                f"groups has {len(g)} entries for {n} rows (give one object id per row)"
            )
        codes = np.unique(g, return_inverse=True)[1].ravel()
        n_groups = codes.max() + 1 if n else 0
        if n_groups < 2:
            raise InputError("the honest protocol needs at least two objects (groups)")
        order = rng.permutation(n_groups)
        sizes = np.bincount(codes, minlength=n_groups)
        cum = np.cumsum(sizes[order])
        n_test_groups = int(np.searchsorted(cum, self.test_fraction * n)) + 1
        n_test_groups = min(max(n_test_groups, 1), n_groups - 1)
        is_test_group = np.zeros(n_groups, dtype=bool)
        is_test_group[order[:n_test_groups]] = True
        test = np.flatnonzero(is_test_group[codes])
        candidates = np.flatnonzero(~is_test_group[codes])
        init = _initial(candidates, y, self.n_initial, self.n_initial_positive, rng)
        pool = np.setdiff1d(candidates, init)
        return Split(initial=init, pool=pool, test=test)


def _initial(
    rows: np.ndarray, y: np.ndarray, n_initial: int, n_pos: int, rng: np.random.Generator
) -> np.ndarray:
    pos = rows[y[rows]]
    neg = rows[~y[rows]]
    n_neg = n_initial - n_pos
    if len(pos) < n_pos or len(neg) < n_neg:
        raise InputError(
            f"cannot draw {n_pos} positive and {n_neg} negative initial rows from {len(pos)} "
            "positive and "
            f"{len(neg)} negative candidates"
        )
    return np.sort(
        np.concatenate(
            [rng.choice(pos, n_pos, replace=False), rng.choice(neg, n_neg, replace=False)]
        )
    )


def get_protocol(protocol: str | Protocol, **overrides) -> Protocol:
    """A :class:`Protocol` from its name (with optional field overrides) or the object itself."""
    if isinstance(protocol, Protocol):
        if overrides:
            return Protocol(**{**protocol.config(), **overrides})
        return protocol
    return Protocol(name=protocol, **overrides)


def fink(**overrides) -> Protocol:
    """Leoni et al. 2022: 10 initial (5 positive), 300 loops of 1; test = not in training."""
    return Protocol(name="fink", **overrides)


def honest(**overrides) -> Protocol:
    """Split by object into pool and a fixed held-out test set (no object on both sides)."""
    return Protocol(name="honest", **overrides)
