"""Which alerts a classifier may score at all: protection against flat and fading light curves.

Fink's early-Ia scores are high on flat light curves (an open complaint). The Rainbow extractor
measures ``rise_sig``, the significance of the rise up to the brightest point (scatter-inflated,
see :func:`earlyia.features.rainbow.transient_gate`). Requiring it everywhere, as
``transient_gate`` does, also rejects every alert with one or two points, where no light curve
can be called flat or fading yet: on ELAsTiCC that is a fifth of the alerts, and most of the
first alerts of every supernova. :func:`rise_gate` judges only light curves that have enough
points to be judged.
"""

from __future__ import annotations

import numpy as np

from earlyia.errors import InputError


def rise_gate(X: np.ndarray, names, min_slope_sig: float = 3.0, min_points: int = 3) -> np.ndarray:
    """Rows a classifier may score: a significant rise, or too few points to judge.

    ``X``/``names``: a feature matrix holding Rainbow's ``rise_sig`` and ``n_points`` (points
    after its cuts, whether or not the fit ran). A row passes when ``rise_sig >= min_slope_sig``
    or when it has fewer than ``min_points`` points. A light curve with ``min_points`` or more
    points that is flat, noisy-constant or fading from its first point (``rise_sig`` small or
    undefined) is rejected: score it 0.
    """
    names = list(names)
    missing = [c for c in ("rise_sig", "n_points") if c not in names]
    if missing:
        raise InputError(f"rise_gate needs the Rainbow features {missing} (have {names[:8]}...)")
    X = np.asarray(X, np.float64)
    rise = X[:, names.index("rise_sig")]
    n = X[:, names.index("n_points")]
    return (np.isfinite(rise) & (rise >= min_slope_sig)) | (np.isfinite(n) & (n < min_points))
