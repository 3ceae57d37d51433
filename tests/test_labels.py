import numpy as np

from earlyia.labels import TypeMap, is_positive


def test_default_is_leoni_positive_only_sn_ia():
    types = ["SN Ia", "(TNS) SN Ia-91T-like", "SN II", "SN", None, "(TNS) CV"]
    np.testing.assert_array_equal(TypeMap().encode(types), [1, 0, 0, -1, -1, 0])
    np.testing.assert_array_equal(
        TypeMap(include_subtypes=True).encode(types), [1, 1, 0, -1, -1, 0]
    )
    np.testing.assert_array_equal(
        is_positive(types, positive=["SN II"]), [False, False, True, False, False, False]
    )
    assert TypeMap.from_config(TypeMap(include_subtypes=True).config()) == TypeMap(
        include_subtypes=True
    )
