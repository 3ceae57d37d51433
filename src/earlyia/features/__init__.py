"""Feature extractors: configured objects with one batch array core (see
:mod:`earlyia.features.base`)."""

from earlyia.features.base import (
    CARRY_COLUMNS,
    EXTRACTORS,
    META_COLUMNS,
    FeatureExtractor,
    available_extractors,
    feature_columns,
    get_extractor,
    register_extractor,
)
from earlyia.features.io import read_features, write_features

__all__ = [
    "CARRY_COLUMNS",
    "EXTRACTORS",
    "META_COLUMNS",
    "FeatureExtractor",
    "available_extractors",
    "feature_columns",
    "get_extractor",
    "read_features",
    "register_extractor",
    "write_features",
]
