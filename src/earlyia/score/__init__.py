"""Scoring: the scoring core shared by the local command and Spark (:mod:`earlyia.score.pipeline`)
and the SCORES files it writes (:mod:`earlyia.score.scores_file`). Models are :mod:`earlyia.model`.

>>> from earlyia.model.artifact import Model
>>> from earlyia.score import score_files
>>> model = Model.load("model.eia")
>>> score_files(["alerts/"], model, "scores.parquet", chunk_size=20_000)
"""

from earlyia.score.pipeline import score_files, score_lightcurves
from earlyia.score.scores_file import SCORE_COLUMNS

__all__ = ["SCORE_COLUMNS", "score_files", "score_lightcurves"]
