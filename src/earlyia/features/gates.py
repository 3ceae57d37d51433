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


def rise_gate(X: np.ndarray, names, min_slope_sig: float = 3.0, min_points: int = 3, prefix: str = "") -> np.ndarray:
    """Rows a classifier may score: a significant rise, or too few points to judge.

    ``X``/``names``: a feature matrix holding Rainbow's ``rise_sig`` and ``n_points`` (points
    after its cuts, whether or not the fit ran), named with ``prefix`` (``"rainbow_"`` in
    ``lsst_early``). A row passes when ``rise_sig >= min_slope_sig`` or when it has fewer than
    ``min_points`` points. A light curve with ``min_points`` or more points that is flat,
    noisy-constant or fading from its first point (``rise_sig`` small or undefined) is rejected:
    score it 0.
    """
    names = list(names)
    rise_name, n_name = f"{prefix}rise_sig", f"{prefix}n_points"
    missing = [c for c in (rise_name, n_name) if c not in names]
    if missing:
        raise InputError(f"rise_gate needs the Rainbow features {missing} (have {names[:8]}...)")
    X = np.asarray(X, np.float64)
    rise = X[:, names.index(rise_name)]
    n = X[:, names.index(n_name)]
    return (np.isfinite(rise) & (rise >= min_slope_sig)) | (np.isfinite(n) & (n < min_points))


#: Gates a model card can name (``card["gate"]["kind"]``).
GATE_KINDS = ("rise",)


def gate_spec(kind: str, names, min_slope_sig: float = 3.0, min_points: int = 3) -> dict | None:
    """The card entry of gate ``kind`` (``"none"`` -> None) for a model on features ``names``.

    Finds Rainbow's ``rise_sig`` / ``n_points`` under any prefix (``rise_sig``, ``rainbow_rise_sig``...),
    so a model whose features cannot feed the gate is refused at training, not at scoring.
    """
    if kind == "none":
        return None
    if kind not in GATE_KINDS:
        raise InputError(f"unknown gate {kind!r}; choose from {['none', *GATE_KINDS]}")
    names = list(names)
    stems = [n.removesuffix("rise_sig") for n in names if n.endswith("rise_sig")]
    prefixes = [p for p in stems if f"{p}n_points" in names]
    if not prefixes:
        raise InputError("gate 'rise' needs Rainbow's rise_sig and n_points among the model's features "
                         "(extractors rainbow or lsst_early)")  # fmt: skip
    return {"kind": kind, "prefix": prefixes[0], "min_slope_sig": float(min_slope_sig), "min_points": int(min_points)}


def apply_gate(spec: dict | None, X: np.ndarray, names) -> np.ndarray:
    """Rows a model with gate ``spec`` (its card entry) may score; every row without a gate."""
    X = np.asarray(X, np.float64)
    if not spec:
        return np.ones(len(X), bool)
    if spec.get("kind") != "rise":
        raise InputError(f"unknown gate {spec!r} in the model card; this version knows {list(GATE_KINDS)}")
    return rise_gate(X, names, spec["min_slope_sig"], spec["min_points"], prefix=spec.get("prefix", ""))


GATE_REASON = "gate: no significant rise (flat, noisy-constant or fading light curve)"
