"""Scoring: model artifacts (:mod:`earlyia.score.model`), flat tree ensembles (:mod:`earlyia.score.trees`)
and the scoring core shared by the local command and Spark (:mod:`earlyia.score.pipeline`).

>>> from earlyia.score import Model, score_files
>>> model = Model.load("model.eia")
>>> score_files(["alerts/"], model, "scores.parquet", chunk_size=20_000)
"""

from earlyia.score.model import Model, train_model
from earlyia.score.pipeline import SCORE_COLUMNS, score_files, score_lightcurves
from earlyia.score.trees import TreeEnsemble

__all__ = ["SCORE_COLUMNS", "Model", "TreeEnsemble", "score_files", "score_lightcurves", "train_model"]
