"""Perturbations of light curves (augmentation and stress cases) and the alert views they are
replayed into."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from earlyia import augment
from earlyia.errors import ConfigError
from earlyia.io.table import LightCurves


def _lcs(n=30, seed=0, limits=True):
    """ZTF-like light curves: g and r on alternating nights over 40 days, limits before the rise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        t0 = 59000 + rng.uniform(0, 50)
        for j in range(30):
            t = t0 + j * 1.3 + rng.uniform(0, 0.1)
            band = "g" if j % 2 else "r"
            mag = 20.5 - 2.0 * min(j, 15) / 15 + rng.normal(0, 0.05)
            if limits and j < 4:
                rows.append((f"o{i}", t, band, np.nan, 10 ** (-0.4 * 20.8 + 11) / 5, False))
            else:
                f = 10 ** (-0.4 * mag + 11)
                rows.append((f"o{i}", t, band, f, f * 0.05 + 20, True))
    phot = pd.DataFrame(rows, columns=["object_id", "mjd", "band", "flux", "flux_err", "detected"])
    return LightCurves.from_frames(phot, survey="ZTF")


def _per_object(lc):
    for i in range(lc.n_objects):
        s, e = lc.offsets[i], lc.offsets[i + 1]
        yield i, slice(s, e)


def test_drop_limits_keeps_every_detection_and_nothing_else():
    lc = _lcs()
    out = augment.drop_limits(lc, np.random.default_rng(0))
    assert out.detected.all() and out.n_points == int(lc.detected.sum())
    np.testing.assert_array_equal(out.flux, lc.flux[lc.detected])


def test_single_band_leaves_one_band_per_object():
    lc = _lcs()
    out = augment.single_band(lc, np.random.default_rng(1))
    chosen = [set(out.band[sl]) for _, sl in _per_object(out)]
    assert (
        all(len(c) == 1 for c in chosen) and len(set.union(*chosen)) == 2
    )  # both bands are drawn somewhere
    g = augment.single_band(lc, np.random.default_rng(1), band="g")
    assert set(g.band) == {lc.band_code("g")} and g.n_points == int(
        (lc.band == lc.band_code("g")).sum()
    )
    with pytest.raises(ConfigError, match="band"):
        augment.single_band(lc, np.random.default_rng(1), band="y")


def test_thin_cadence_keeps_every_other_night():
    lc = _lcs()
    out = augment.thin_cadence(lc, np.random.default_rng(2), keep_every=2)
    for (_, a), (_, b) in zip(_per_object(lc), _per_object(out), strict=True):
        nights = np.unique(np.floor(lc.mjd[a] + augment.NIGHT_SHIFT))
        kept = np.unique(np.floor(out.mjd[b] + augment.NIGHT_SHIFT))
        assert set(kept) <= set(nights) and len(kept) in (len(nights) // 2, (len(nights) + 1) // 2)
        idx = np.searchsorted(nights, kept)
        assert np.all(np.diff(idx) == 2)  # alternate nights


def test_shift_magnitude_brighter_scales_flux_and_errors_exactly():
    lc = _lcs()
    out = augment.shift_magnitude(lc, np.random.default_rng(3), delta=-1.0)
    det = lc.detected
    np.testing.assert_allclose(out.flux[det], lc.flux[det] * 10**0.4)
    np.testing.assert_allclose(out.flux_err[det], lc.flux_err[det] * 10**0.4)
    np.testing.assert_array_equal(
        out.flux_err[~det], lc.flux_err[~det]
    )  # same sky: limits unchanged


def test_shift_magnitude_fainter_keeps_the_sky_noise_and_loses_faint_detections():
    lc = _lcs(n=200)
    out = augment.shift_magnitude(lc, np.random.default_rng(4), delta=1.0)
    assert out.n_points == lc.n_points  # points become limits, never vanish
    det = out.detected
    was_above = lc.detected & (np.abs(lc.flux) >= augment.DETECTION_SNR * lc.flux_err)
    assert (
        np.abs(out.flux[det & was_above]) >= augment.DETECTION_SNR * out.flux_err[det & was_above]
    ).all()
    assert det.sum() < lc.detected.sum() and np.isnan(out.flux[~det]).all()
    # the quoted (sky) error is kept and the scatter around the scaled flux matches it
    both = lc.detected & det
    np.testing.assert_array_equal(out.flux_err[both], lc.flux_err[both])
    pull = (out.flux[both] - lc.flux[both] * 10**-0.4) / (lc.flux_err[both] * np.sqrt(1 - 10**-0.8))
    assert abs(np.mean(pull)) < 0.15 and 0.8 < np.std(pull) < 1.2


def test_resample_noise_scales_errors_within_the_range():
    lc = _lcs()
    out = augment.resample_noise(lc, np.random.default_rng(5), extra=0.0, error_scale=(0.7, 1.5))
    ratio = out.flux_err / lc.flux_err
    for _, sl in _per_object(lc):
        assert np.ptp(ratio[sl]) < 1e-12 and 0.7 <= ratio[sl][0] <= 1.5  # one scale per object
    same = augment.resample_noise(lc, np.random.default_rng(5), extra=0.0, error_scale=1.0)
    np.testing.assert_array_equal(same.flux[lc.detected], lc.flux[lc.detected])


def test_negative_difference_adds_one_negative_detection_per_object():
    lc = augment.drop_limits(_lcs(), None)
    out = augment.negative_difference(lc, np.random.default_rng(6))
    for (_, a), (_, b) in zip(_per_object(lc), _per_object(out), strict=True):
        assert (b.stop - b.start) == (a.stop - a.start) + 1
        neg = out.flux[b] < 0
        assert neg.sum() == 1 and out.detected[b][neg].all()
        assert np.all(np.diff(out.mjd[b]) >= 0)
        assert abs(out.flux[b][neg][0]) in set(np.abs(lc.flux[a]))


def test_flip_sign_makes_every_detection_negative():
    lc = _lcs()
    out = augment.flip_sign(lc, None)
    assert (out.flux[out.detected] < 0).all() and np.isnan(out.flux[~out.detected]).all()


def test_mix_objects_takes_each_object_from_the_chosen_table():
    lc = _lcs(n=6)
    other = augment.drop_limits(lc, None)
    use = np.array([True, False, True, False, False, True])
    mixed = augment.mix_objects(lc, other, use)
    for i in range(lc.n_objects):
        src = other if use[i] else lc
        np.testing.assert_array_equal(
            mixed.mjd[mixed.offsets[i] : mixed.offsets[i + 1]],
            src.mjd[src.offsets[i] : src.offsets[i + 1]],
        )


def test_replay_segments_one_alert_per_detection_and_the_window():
    lc = _lcs(n=5)
    seg = augment.replay_segments(lc, 1, 20)
    for i in range(lc.n_objects):
        mine = seg.object_index == i
        assert mine.sum() == min(20, int(lc.detected[lc.offsets[i] : lc.offsets[i + 1]].sum()))
        np.testing.assert_array_equal(seg.ndethist[mine], np.arange(1, mine.sum() + 1))
        assert (seg.starts[mine] == lc.offsets[i]).all()
    # each alert ends at its k-th detection
    for s, e, k in zip(seg.starts, seg.ends, seg.ndethist, strict=True):
        assert lc.detected[s:e].sum() == k and lc.detected[e - 1]
    win = augment.replay_segments(lc, 1, 20, window_days=10.0)
    np.testing.assert_array_equal(win.ends, seg.ends)
    for s, e in zip(win.starts, win.ends, strict=True):
        assert lc.mjd[e - 1] - lc.mjd[s] <= 10.0
        assert (
            s == lc.offsets[np.searchsorted(lc.offsets, s, side="right") - 1]
            or lc.mjd[e - 1] - lc.mjd[s - 1] > 10.0
        )


def test_augmentation_views_are_seeded_and_round_trip_through_the_card():
    lc = _lcs(n=12)
    aug = augment.Augmentation(copies=2)
    a = [(v, s.starts.copy(), s.lc.flux.copy()) for v, s in aug.views(lc, 7)]
    b = [(v, s.starts.copy(), s.lc.flux.copy()) for v, s in aug.views(lc, 7)]
    assert [v for v, *_ in a] == [0, 1, 2]
    for (va, sa, fa), (vb, sb, fb) in zip(a, b, strict=True):
        assert va == vb
        np.testing.assert_array_equal(sa, sb)
        np.testing.assert_array_equal(fa, fb)
    c = [s.lc.flux.copy() for _, s in aug.views(lc, 8)]
    assert not all(
        np.array_equal(x, y, equal_nan=True) for x, (_, _, y) in zip(c[1:], a[1:], strict=True)
    )
    assert augment.Augmentation.from_card(aug.to_card()).to_card() == aug.to_card()
    with pytest.raises(ConfigError, match="unknown perturbation"):
        augment.Augmentation.from_card(
            {**aug.to_card(), "steps": [{"name": "teleport", "probability": 1.0}]}
        )
    with pytest.raises(ConfigError, match="probability"):
        augment.Augmentation(steps=(augment.Step("drop_limits", 1.5),)).check()


def test_perturb_names_unknown_steps():
    with pytest.raises(ConfigError, match="unknown perturbation 'blur'"):
        augment.perturb(_lcs(n=2), [("blur", {})], 0)
