"""Which spectroscopic types count as the positive class: one documented, configurable mapping.

TNS types come as strings such as ``'SN Ia'``, ``'SN Ia-91T-like'``, ``'(TNS) SN II'``. Leoni et
al. 2022 count only ``'SN Ia'`` as positive; the Ia sub-types are a choice the caller makes
explicitly (``include_subtypes=True`` or a custom ``positive`` set). Vague types (``'SN'``,
``'Other'``, empty) are *unlabelled*: they must not be used as negatives.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

#: Sub-types of SN Ia as spelled on the TNS.
IA_SUBTYPES = (
    "SN Ia-91T-like",
    "SN Ia-91bg-like",
    "SN Ia-pec",
    "SN Ia-CSM",
    "SN Iax[02cx-like]",
    "SN Iax",
    "SN Ia-SC",
    "SN Ia-Ca-rich",
)
#: Types too vague to be a label either way.
UNLABELLED_TYPES = ("", "SN", "Other", "Unknown", "unknown", "nan", "None", "TDE?", "SN?", "Ia?")

POSITIVE = 1
NEGATIVE = 0
UNLABELLED = -1


def normalise_type(value: object) -> str:
    """Strip the ``'(TNS) '`` prefix and surrounding blanks; missing values become ``''``."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    text = str(value).strip()
    if text.startswith("(TNS)"):
        text = text[len("(TNS)") :].strip()
    return text


@dataclass(frozen=True)
class TypeMap:
    """Map type strings to 1 (positive), 0 (negative) or -1 (unlabelled).

    Args:
        positive: the type strings of the positive class.
        include_subtypes: also count :data:`IA_SUBTYPES` as positive (only meaningful when
            ``positive`` contains ``'SN Ia'``).
        unlabelled: type strings that are neither (default :data:`UNLABELLED_TYPES`).
    """

    positive: tuple[str, ...] = ("SN Ia",)
    include_subtypes: bool = False
    unlabelled: tuple[str, ...] = field(default=UNLABELLED_TYPES)

    def positive_set(self) -> frozenset[str]:
        pos = set(self.positive)
        if self.include_subtypes and "SN Ia" in pos:
            pos |= set(IA_SUBTYPES)
        return frozenset(pos)

    def encode(self, types: Iterable[object]) -> np.ndarray:
        """int8 array: 1 positive, 0 negative, -1 unlabelled."""
        pos = self.positive_set()
        unl = set(self.unlabelled)
        out = []
        for t in types:
            name = normalise_type(t)
            out.append(UNLABELLED if name in unl else POSITIVE if name in pos else NEGATIVE)
        return np.asarray(out, dtype=np.int8)

    def describe(self) -> str:
        return f"positive = {sorted(self.positive_set())}; unlabelled = {sorted(set(self.unlabelled))}; every other type negative"

    def config(self) -> dict:
        return {"positive": list(self.positive), "include_subtypes": self.include_subtypes, "unlabelled": list(self.unlabelled)}

    @classmethod
    def from_config(cls, cfg: dict) -> TypeMap:
        return cls(
            positive=tuple(cfg.get("positive", ("SN Ia",))),
            include_subtypes=bool(cfg.get("include_subtypes", False)),
            unlabelled=tuple(cfg.get("unlabelled", UNLABELLED_TYPES)),
        )


def is_positive(types: Iterable[object], positive: Iterable[str] = ("SN Ia",), include_subtypes: bool = False) -> np.ndarray:
    """Boolean positive-class mask (unlabelled types count as not positive)."""
    return TypeMap(tuple(positive), include_subtypes).encode(types) == POSITIVE
