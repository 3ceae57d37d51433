"""Which alerts a classifier may score at all: protection against flat and fading light curves.

Fink's early-Ia scores are high on flat light curves (an open complaint). The Rainbow extractor
measures two rise statistics up to the brightest point, both with their error inflated by the
scatter: ``rise_sig``, a straight line through all points, and ``rise_sig_band``, a common slope
with one offset per band (a rise seen in a bright and a faint band, which the pooled line loses in
the colour scatter: on ELAsTiCC it recovers 5 % of the SN Ia alerts, a third of them before peak,
and lets no more generated flat or fading curves through). Requiring a rise everywhere would also
reject every alert with one or two points, where no light curve can be called flat or fading yet:
on ELAsTiCC that is a fifth of the alerts, and most of the first alerts of every supernova.
:func:`rise_gate` judges only light curves that have enough points to be judged.
"""

from __future__ import annotations

import numpy as np

from earlyia.errors import InputError


def rise_gate(
    X: np.ndarray,
    names,
    min_slope_sig: float = 3.0,
    min_points: int = 3,
    prefix: str = "",
    band_offsets: bool = True,
) -> np.ndarray:
    """Rows a classifier may score: a significant rise, or too few points to judge.

    ``X``/``names``: a feature matrix holding Rainbow's ``rise_sig``, ``n_points`` (points after its
    cuts, whether or not the fit ran) and, with ``band_offsets``, ``rise_sig_band``, named with
    ``prefix`` (``"rainbow_"`` in ``lsst_early``). A row passes when either rise statistic is ``>=
    min_slope_sig`` or when it has fewer than ``min_points`` points (``min_points=0``: a rise is
    required everywhere). A light curve with ``min_points`` or more points that is flat,
    noisy-constant or fading from its first point (no significant rise) is rejected: score it 0.
    """
    names = list(names)
    rise_cols = [f"{prefix}rise_sig", *([f"{prefix}rise_sig_band"] if band_offsets else [])]
    n_col = f"{prefix}n_points"
    missing = [c for c in (*rise_cols, n_col) if c not in names]
    if missing:
        raise InputError(f"rise_gate needs the Rainbow features {missing} (have {names[:8]}...)")
    X = np.asarray(X, np.float64)
    with np.errstate(invalid="ignore"):  # NaN (undefined statistic): no rise
        rises = np.logical_or.reduce([X[:, names.index(c)] >= min_slope_sig for c in rise_cols])
    n = X[:, names.index(n_col)]
    return rises | (np.isfinite(n) & (n < min_points))


#: Gates a model card can name (``card["gate"]["kind"]``).
GATE_KINDS = ("rise",)


def rise_prefix(names) -> str | None:
    """The prefix under which ``names`` hold Rainbow's ``rise_sig`` and ``n_points`` (``""``,
    ``"rainbow_"``...), or None when these features cannot feed the rise gate."""
    names = list(names)
    stems = [n.removesuffix("rise_sig") for n in names if n.endswith("rise_sig")]
    return next((p for p in stems if f"{p}n_points" in names), None)


def gate_spec(kind: str, names, min_slope_sig: float = 3.0, min_points: int = 3) -> dict | None:
    """The card entry of gate ``kind`` (``"none"`` -> None) for a model on features ``names``.

    Finds Rainbow's ``rise_sig`` / ``n_points`` under any prefix (``rise_sig``,
    ``rainbow_rise_sig``...), so a model whose features cannot feed the gate is refused at training,
    not at scoring.
    """
    if kind == "none":
        return None
    if kind not in GATE_KINDS:
        raise InputError(f"unknown gate {kind!r}; choose from {['none', *GATE_KINDS]}")
    names = list(names)
    prefix = rise_prefix(names)
    if prefix is None:
        raise InputError(
            "gate 'rise' needs Rainbow's rise_sig and n_points among the model's features "
            "(extractors rainbow or lsst_early)"
        )
    # models trained before rise_sig_band existed keep the single-statistic gate (no key in their
    # card)
    offsets = {"band_offsets": True} if f"{prefix}rise_sig_band" in names else {}
    return {
        "kind": kind,
        "prefix": prefix,
        "min_slope_sig": float(min_slope_sig),
        "min_points": int(min_points),
        **offsets,
    }


def apply_gate(spec: dict | None, X: np.ndarray, names) -> np.ndarray:
    """Rows a model with gate ``spec`` (its card entry) may score; every row without a gate."""
    X = np.asarray(X, np.float64)
    if not spec:
        return np.ones(len(X), bool)
    if spec.get("kind") != "rise":
        raise InputError(
            f"unknown gate {spec!r} in the model card; this version knows {list(GATE_KINDS)}"
        )
    return rise_gate(
        X,
        names,
        spec["min_slope_sig"],
        spec["min_points"],
        prefix=spec.get("prefix", ""),
        band_offsets=bool(spec.get("band_offsets")),
    )


GATE_REASON = "gate: no significant rise (flat, noisy-constant or fading light curve)"
