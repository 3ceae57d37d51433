"""ELAsTiCC host-galaxy fields (alert content): read into the objects, equal to the raw diaObject
values."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from conftest import shared
from earlyia.io.lsst import read_elasticc

FIELDS = [
    "hostgal_zphot",
    "hostgal_mag_g",
    "hostgal_mag_r",
    "hostgal_mag_Y",
    "hostgal_ellipticity",
    "hostgal_sqradius",
    "mwebv",
]


def test_host_fields_match_the_raw_diaobject():
    path = shared("fixtures/elasticc/test_elasticc_earlysnia_with_truth.parquet")
    lc = read_elasticc(path)
    raw = pq.read_table(
        path, columns=["diaSource.diaObjectId", *[f"diaObject.{f}" for f in FIELDS]]
    ).to_pandas()
    raw["diaObjectId"] = raw["diaObjectId"].astype(str)
    by_obj = raw.drop_duplicates("diaObjectId").set_index("diaObjectId")
    objects = lc.objects.set_index("object_id")
    assert len(objects) == len(by_obj)
    for f in FIELDS:
        np.testing.assert_array_equal(
            objects.loc[by_obj.index, f].to_numpy(float), by_obj[f].to_numpy(float), err_msg=f
        )
