"""The promotion rule of the follow-up loop (kept free of heavy imports: the command line reads its
defaults).

See :mod:`earlyia.followup.retrain` for how it is applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from earlyia.errors import ConfigError

#: Metrics a promotion can be decided on (per object, each model at its own card threshold).
METRICS = ("fom", "efficiency", "purity", "roc_auc")


@dataclass(frozen=True)
class PromotionRule:
    """When a retrained candidate may replace production.

    The validation set must hold at least ``min_objects`` objects and ``min_positive`` positives,
    and a paired bootstrap over its objects (``n_bootstrap`` resamples, seeded) must show
    ``metric(candidate) - metric(production)`` at least ``-margin`` at its ``1 - confidence``
    quantile.
    """

    metric: str = "fom"
    margin: float = 0.02
    confidence: float = 0.9
    min_objects: int = 50
    min_positive: int = 10
    n_bootstrap: int = 2000
    random_state: int = 0

    def check(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"--metric must be one of {METRICS}, got {self.metric!r}")
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ConfigError(f"--margin must be >= 0, got {self.margin}")
        if not 0.5 <= self.confidence < 1:
            raise ConfigError(f"--confidence must be in [0.5, 1), got {self.confidence}")
        if self.min_objects < 2 or self.min_positive < 1:
            raise ConfigError(
                "--min-validation-objects must be >= 2 and --min-validation-positives >= 1"
            )
        if self.n_bootstrap < 100:
            raise ConfigError(f"--bootstrap must be >= 100 resamples, got {self.n_bootstrap}")
