"""Effective wavelengths of survey passbands, for multi-band models such as Rainbow.

Rainbow treats each passband as monochromatic at its effective wavelength (as Russeil et al.
2024 and light-curve's ``RainbowFit`` do), so one table per survey is all a fit needs.

Sources (Angstrom):

* LSST ``u g r i z Y``: 3671, 4827, 6223, 7546, 8691, 9712 (the values Fink's ELAsTiCC Rainbow
  module uses).
* ZTF ``g r i``: 4770, 6231, 7625 (Fink's ZTF values).
* DES ``g r i z``: 4781, 6360, 7759, 9208 = mean wavelength ``∫λT dλ / ∫T dλ`` of the SNPCC
  filter curves ``SIMGEN_PUBLIC_DES/filters/DES_{g,r,i,z}.dat`` (computed once, rounded to 1 Å;
  the command is in docs/lsst.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from earlyia.errors import ConfigError

#: Effective wavelength in Angstrom, per survey and band name.
EFFECTIVE_WAVELENGTH_AA: dict[str, dict[str, float]] = {
    "LSST": {"u": 3671.0, "g": 4827.0, "r": 6223.0, "i": 7546.0, "z": 8691.0, "Y": 9712.0},
    "ZTF": {"g": 4770.0, "r": 6231.0, "i": 7625.0},
    "DES": {"g": 4781.0, "r": 6360.0, "i": 7759.0, "z": 9208.0},
}

SPEED_OF_LIGHT_CM_S = 2.99792458e10


def survey_bands(survey: str) -> tuple[str, ...]:
    """Band names of ``survey`` in wavelength order."""
    table = _survey_table(survey)
    return tuple(sorted(table, key=table.__getitem__))


def effective_wavelengths(survey: str, bands: Sequence[str] | None = None) -> np.ndarray:
    """Effective wavelengths (Angstrom) of ``bands`` (default: all of the survey's bands).

    LSST ``y`` is accepted for ``Y`` (PLAsTiCC spells it lower case).
    """
    table = _survey_table(survey)
    names = survey_bands(survey) if bands is None else tuple(bands)
    out = np.empty(len(names), dtype=np.float64)
    for k, name in enumerate(names):
        key = name if name in table else _alias(name, table)
        if key is None:
            raise ConfigError(
                f"band {name!r} has no effective wavelength for survey {survey!r}; known "
                f"bands: {sorted(table)}"
            )
        out[k] = table[key]
    return out


def _alias(name: str, table: dict[str, float]) -> str | None:
    for key in table:
        if key.lower() == str(name).lower():
            return key
    return None


def _survey_table(survey: str) -> dict[str, float]:
    key = str(survey).upper()
    if key not in EFFECTIVE_WAVELENGTH_AA:
        raise ConfigError(
            f"unknown survey {survey!r} for passband wavelengths; known: "
            f"{sorted(EFFECTIVE_WAVELENGTH_AA)}"
        )
    return EFFECTIVE_WAVELENGTH_AA[key]
