"""Which spectroscopic types count as the positive class: one documented, configurable mapping.

TNS types come as strings such as ``'SN Ia'``, ``'SN Ia-91T-like'``, ``'(TNS) SN II'``. Leoni et
al. 2022 count only ``'SN Ia'`` as positive; the Ia sub-types are a choice the caller makes
explicitly (``include_subtypes=True`` or a custom ``positive`` set). Vague types (``'SN'``,
``'Other'``, empty) are *unlabelled*: they must not be used as negatives.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from earlyia.errors import InputError

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
        return (
            f"positive = {sorted(self.positive_set())}; unlabelled = "
            f"{sorted(set(self.unlabelled))}; every other type negative"
        )

    def config(self) -> dict:
        return {
            "positive": list(self.positive),
            "include_subtypes": self.include_subtypes,
            "unlabelled": list(self.unlabelled),
        }

    @classmethod
    def from_config(cls, cfg: dict) -> TypeMap:
        return cls(
            positive=tuple(cfg.get("positive", ("SN Ia",))),
            include_subtypes=bool(cfg.get("include_subtypes", False)),
            unlabelled=tuple(cfg.get("unlabelled", UNLABELLED_TYPES)),
        )


def is_positive(
    types: Iterable[object], positive: Iterable[str] = ("SN Ia",), include_subtypes: bool = False
) -> np.ndarray:
    """Boolean positive-class mask (unlabelled types count as not positive)."""
    return TypeMap(tuple(positive), include_subtypes).encode(types) == POSITIVE


#: Column names recognised in a labels CSV, in order of preference.
LABEL_ID_COLUMNS = ("objectId", "object_id", "id", "name")
LABEL_TYPE_COLUMNS = ("tns_type", "type", "label", "TNS", "classification")


def read_labels(path: str | Path) -> pd.Series:
    """Object id -> type string from a labels CSV (id column
    ``objectId``/``object_id``/``id``/``name``, type column
    ``tns_type``/``type``/``label``/``TNS``/``classification``; the last row of a repeated id
    wins)."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read labels CSV: {exc}", source=str(path)) from exc
    id_col = next((c for c in LABEL_ID_COLUMNS if c in df.columns), None)
    type_col = next((c for c in LABEL_TYPE_COLUMNS if c in df.columns), None)
    if id_col is None or type_col is None:
        raise InputError(
            f"labels need an object id column (one of {list(LABEL_ID_COLUMNS)}) and a type "
            "column (one of "
            f"{list(LABEL_TYPE_COLUMNS)}); found {list(df.columns)[:10]}",
            source=str(path),
        )
    if df.empty:
        raise InputError("the labels CSV has no rows", source=str(path))
    return df.drop_duplicates(id_col, keep="last").set_index(id_col)[type_col].astype(str)
