"""Light curves that must never look like a young SN Ia: flat, declining and noisy-constant.

Why: a broker's early-Ia module is only useful if persistent sources and fading transients do not
fill its candidate list (an open complaint about Fink's module). These generated cases are the
adversarial test set of the default pipeline: realistic ZTF-like cadence (g and r, one point every
1-4 days per band), magnitudes 16.5-20.5 with ZTF-like errors, 3 to 20 detections.

* ``flat``: a constant source, errors correct;
* ``noisy_constant``: a constant source whose quoted errors are 3-8x too small, so the scatter
  looks significant point to point but follows no trend;
* ``declining``: a transient seen only after its peak, fading 0.02-0.15 mag/day in both bands from
  its first detection (g fading faster than r), with no upper limit before it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from earlyia.errors import ConfigError
from earlyia.features import get_extractor
from earlyia.io.table import LightCurves

KINDS = ("flat", "noisy_constant", "declining")


def _mag_err(mag: np.ndarray) -> np.ndarray:
    """ZTF-like magnitude errors: ~0.02 at 17 mag, ~0.15 at 20.5 mag."""
    return 0.015 + 0.12 * 10.0 ** (0.4 * (np.asarray(mag) - 20.5))


def generate(
    n_per_kind: int = 50,
    *,
    kinds: tuple[str, ...] = KINDS,
    min_detections: int = 3,
    max_detections: int = 20,
    random_state: int | np.random.Generator | None = None,
) -> LightCurves:
    """``n_per_kind`` light curves of each kind, labelled with the kind (``label`` column).

    Every light curve has between ``min_detections`` and ``max_detections`` detections in g and r,
    all of them detections (no upper limits), SIMBAD cross-match ``Unknown``.
    """
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ConfigError(f"unknown impostor kind(s) {bad}; choose from {list(KINDS)}")
    if not 1 <= min_detections <= max_detections:
        raise ConfigError(
            f"need 1 <= min_detections <= max_detections, got {min_detections}, {max_detections}"
        )
    rng = np.random.default_rng(random_state)
    rows, objects = [], []
    for kind in kinds:
        for i in range(int(n_per_kind)):
            oid = f"{kind}_{i:04d}"
            n = int(rng.integers(min_detections, max_detections + 1))
            t0 = 59000.0 + rng.uniform(0, 300)
            # alternate bands, 1-4 days apart, first band random
            gaps = rng.uniform(1.0, 4.0, n)
            gaps[0] = 0.0
            t = t0 + np.cumsum(gaps)
            bands = np.where((np.arange(n) + rng.integers(2)) % 2 == 0, "g", "r")
            m0 = rng.uniform(16.5, 20.0)
            colour = rng.uniform(-0.3, 1.0)  # g - r
            base = np.where(bands == "g", m0 + colour, m0)
            if kind == "declining":
                rate_r = rng.uniform(0.02, 0.12)
                rate = np.where(bands == "g", 1.3 * rate_r, rate_r)
                true_mag = base + rate * (t - t0)
            else:
                true_mag = base
            err_mag = _mag_err(true_mag)
            quoted = err_mag / (rng.uniform(3.0, 8.0) if kind == "noisy_constant" else 1.0)
            mag = true_mag + err_mag * rng.standard_normal(n)
            flux = 10.0 ** (-0.4 * mag + 11.0)
            ferr = flux * quoted / 1.0857362
            rows += [
                (oid, ti, b, f, e, True) for ti, b, f, e in zip(t, bands, flux, ferr, strict=True)
            ]
            objects.append((oid, "Unknown", n, kind))
    phot = pd.DataFrame(rows, columns=["object_id", "mjd", "band", "flux", "flux_err", "detected"])
    obj = pd.DataFrame(objects, columns=["object_id", "cdsxmatch", "ndethist", "label"])
    return LightCurves.from_frames(phot, obj, survey="ZTF", source="earlyia.sim.impostors")


def impostor_features(
    extractor_config,
    n_per_kind: int = 100,
    *,
    min_detections: int = 3,
    max_detections: int = 20,
    random_state: int | np.random.Generator | None = 0,
    replay_from: int | None = None,
) -> pd.DataFrame:
    """Feature rows (one per replayed detection) of generated impostors, labelled ``"impostor
    (<kind>)"``.

    Each light curve has ``min_detections`` to ``max_detections`` detections; alerts are replayed
    from detection ``replay_from`` (default ``min_detections``).

    Why: real labelled sets hold few flat or purely fading sources, so a forest trained on them
    alone can score such light curves high; adding them as negatives teaches it not to. The label
    strings are ordinary non-Ia types for :class:`earlyia.labels.TypeMap`.
    """
    ext = get_extractor(extractor_config)
    lc = generate(
        n_per_kind,
        min_detections=min_detections,
        max_detections=max_detections,
        random_state=random_state,
    )
    first = min_detections if replay_from is None else int(replay_from)
    df = ext.transform(lc.replay(min_detections=first, max_detections=max_detections), per="alert")
    df["label"] = "impostor (" + df["object_id"].str.rsplit("_", n=1).str[0] + ")"
    return df
