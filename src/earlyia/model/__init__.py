"""Models: the trained artifact, the recipe that makes one, and everything a model file carries.

* :mod:`earlyia.model.artifact`: :class:`~earlyia.model.artifact.Model`, the model file (a zip of a
  JSON card and numpy arrays, content hash, no pickle), its features and its predictions;
* :mod:`earlyia.model.modelfile`: reading a model file without trusting it (bounded members, checked
  card);
* :mod:`earlyia.model.trees`: the forest as flat arrays, :class:`~earlyia.model.trees.TreeEnsemble`;
* :mod:`earlyia.model.recipe`: :class:`~earlyia.model.recipe.Recipe`, every training setting, and
  the named recipes;
* :mod:`earlyia.model.training`: :func:`~earlyia.model.training.train_model` and
  :func:`~earlyia.model.training.train_recipe`;
* :mod:`earlyia.model.heldout`: held-out predictions by folds split by object, and the calibration
  by evidence fitted on them;
* :mod:`earlyia.model.calibration`: calibration maps (isotonic, sigmoid, by evidence): fitted,
  checked, applied;
* :mod:`earlyia.model.operating`: operating points and curves, thresholds at a purity, prevalence;
* :mod:`earlyia.model.survey`: which survey a model was trained on; :mod:`earlyia.model.shipped`:
  the shipped model.

Nothing is imported here, so that reading one submodule costs only what it needs.

>>> from earlyia.model.recipe import Recipe
>>> from earlyia.model.training import train_model
>>> model = train_model(features, extractor_config, Recipe.named("early").replace(n_estimators=100))
"""
