"""Flat tree ensembles give scikit-learn's probabilities exactly."""

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

from earlyia.errors import FeatureMismatchError, ModelError
from earlyia.model.trees import TreeEnsemble


@pytest.mark.parametrize("cls", [RandomForestClassifier, ExtraTreesClassifier])
def test_matches_sklearn(cls):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = (X[:, 0] + 0.5 * rng.normal(size=300)) > 0
    rf = cls(n_estimators=25, random_state=1).fit(X, y)
    ens = TreeEnsemble.from_sklearn(rf, positive_class=True)
    Xt = rng.normal(size=(500, 5))
    np.testing.assert_allclose(ens.predict_proba(Xt), rf.predict_proba(Xt), atol=1e-12)
    with pytest.raises(FeatureMismatchError, match="5 features"):
        ens.predict_proba(Xt[:, :4])
    bad = ens.arrays()
    bad["left"] = bad["left"].copy()
    bad["left"][0] = 10**7
    with pytest.raises(ModelError, match="outside"):
        TreeEnsemble.from_arrays(bad, 5)
