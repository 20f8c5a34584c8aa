"""RandAugment/AutoAugment ops against PIL (an independent implementation), policy table, dispatch."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from keras_fgvc.augment import AutoAugment, RandAugment
from keras_fgvc.augment.base import apply_by_group
from keras_fgvc.augment.policies import AUTOAUGMENT_POLICIES, OP_NAMES, apply_op_sequence


def photo(batch=3, size=24, seed=0):
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(30, 220, (batch, 4, 4, 3))
    smooth = tf.image.resize(coarse, (size, size), method="bilinear").numpy()
    return np.clip(np.round(smooth + rng.normal(0, 10, smooth.shape)), 0, 255).astype("float32")


def run_op(name, x, t, interpolation="nearest"):
    n = len(x)
    op_ids = tf.fill([n, 1], OP_NAMES.index(name))
    return np.asarray(apply_op_sequence(tf.constant(x), op_ids, tf.fill([n, 1], float(t)), tf.ones([n, 1]),
                                        interpolation))


def pil_each(x, function):
    return np.stack([np.asarray(function(Image.fromarray(image.astype(np.uint8)))) for image in x]).astype("float32")


@pytest.mark.parametrize("name, t, reference, atol", [
    ("Equalize", 0.0, ImageOps.equalize, 0.0),
    ("Invert", 0.0, ImageOps.invert, 0.0),
    ("AutoContrast", 0.0, ImageOps.autocontrast, 1.0),
    ("Solarize", 0.5, lambda im: ImageOps.solarize(im, 128), 0.0),
    ("Posterize", 0.5, lambda im: ImageOps.posterize(im, 6), 0.0),  # 4 + 4 * 0.5 bits
    ("Brightness", 0.25, lambda im: ImageEnhance.Brightness(im).enhance(0.55), 1.0),  # 0.1 + 1.8 * t
    ("Color", 0.0, lambda im: ImageEnhance.Color(im).enhance(0.1), 1.5),
    ("Contrast", 1.0, lambda im: ImageEnhance.Contrast(im).enhance(1.9), 2.5),
    ("Sharpness", 1.0, lambda im: ImageEnhance.Sharpness(im).enhance(1.9), 1.5),
])
def test_op_matches_pil(name, t, reference, atol):
    x = photo()
    np.testing.assert_allclose(run_op(name, x, t), pil_each(x, reference), atol=atol)


def test_equalize_and_autocontrast_leave_flat_channels_like_pil():
    x = photo()
    x[0, ..., 1] = 90.0  # a flat channel: no histogram to spread, no range to stretch
    x[1, ..., 2] = 255.0
    np.testing.assert_array_equal(run_op("Equalize", x, 0.0), pil_each(x, ImageOps.equalize))
    np.testing.assert_allclose(run_op("AutoContrast", x, 0.0), pil_each(x, ImageOps.autocontrast), atol=1.0)


@pytest.mark.parametrize("interpolation, resample", [("nearest", Image.NEAREST), ("bilinear", Image.BILINEAR)])
def test_rotate_by_thirty_degrees_matches_pil(interpolation, resample):
    """Rotate at full magnitude turns by 30 degrees counter-clockwise (PIL's convention), grey fill."""
    x = photo(1, 33)
    ours = run_op("Rotate", x, 1.0, interpolation)[0]
    ref = np.asarray(Image.fromarray(x[0].astype(np.uint8)).rotate(30, resample=resample, fillcolor=(128,) * 3))
    inner = (slice(8, 25), slice(8, 25))  # away from the border, where fill and interpolation rules differ
    assert np.abs(ours[inner] - ref[inner]).mean() < 3.0
    if interpolation == "nearest":  # nearest copies input pixels: every output value occurs in the input
        assert np.isin(ours[inner], x[0]).all()


def test_interpolation_option_is_validated_and_serialised():
    layer = RandAugment(interpolation="bilinear")
    assert RandAugment.from_config(layer.get_config()).interpolation == "bilinear"
    assert AutoAugment().get_config()["interpolation"] == "nearest"
    with pytest.raises(ValueError, match="interpolation"):
        AutoAugment(interpolation="bicubic")


def test_geometric_ops_fill_with_grey_and_translate_exactly():
    x = np.full((1, 10, 10, 3), 200.0, "float32")
    shifted = run_op("TranslateX", x, 331.0 / 150.0 * 0.3)[0]  # 0.3 of the width = 3 px to the right
    np.testing.assert_allclose(shifted[:, :3], 128.0)
    np.testing.assert_allclose(shifted[:, 3:], 200.0)


def test_apply_by_group_runs_each_function_on_its_subset_only():
    x = tf.reshape(tf.range(6, dtype=tf.float32), [6, 1, 1, 1])
    groups = tf.constant([2, 0, 1, 0, 2, 2])
    seen = []

    def scale(k):
        def function(part, where):
            seen.append(k)
            return part * (10.0 ** k) + tf.cast(tf.reshape(where, [-1, 1, 1, 1]), tf.float32) * 0.0
        return function

    y = apply_by_group(x, groups, 4, [scale(0), scale(1), scale(2), scale(3)])
    np.testing.assert_allclose(np.asarray(y).ravel(), [0 * 100, 1, 2 * 10, 3, 4 * 100, 5 * 100])
    # None leaves its group untouched; an empty group (3) is skipped; positions index the batch.
    positions = lambda part, where: tf.cast(tf.reshape(where, [-1, 1, 1, 1]), tf.float32) + 0.5  # noqa: E731
    y = apply_by_group(x, groups, 4, [None, positions, None, positions])
    np.testing.assert_allclose(np.asarray(y).ravel(), [0, 1, 2.5, 3, 4, 5])
    with pytest.raises(ValueError, match="4 functions"):
        apply_by_group(x, groups, 4, [None, None])


def test_autoaugment_imagenet_table_is_the_paper_policy():
    """24 sub-policies of two steps (Cubuk et al. 2019, Appendix); spot-check rows against the paper."""
    table = AUTOAUGMENT_POLICIES["imagenet"]
    assert len(table) == 24 and all(len(sub) == 2 for sub in table)
    assert table[0] == (("Posterize", 0.4, 8), ("Rotate", 0.6, 9))
    assert table[13] == (("Invert", 0.6, 4), ("Equalize", 1.0, 8))
    assert table[18] == (("ShearX", 0.6, 5), ("Equalize", 1.0, 9))
    assert all(op in OP_NAMES and 0 <= p <= 1 and 0 <= m <= 9 for sub in table for op, p, m in sub)


def test_autoaugment_samples_sub_policies_and_probabilities():
    layer = AutoAugment(seed=1)
    parameters = layer.sample_parameters(tf.constant([4000, 8, 8, 3]))
    chosen = np.asarray(parameters["sub_policy"])
    assert set(chosen) == set(range(24))
    ops = np.asarray(parameters["op_ids"])
    # Sub-policy 2 is (Equalize 0.8, Equalize 0.6): its first op fires about 80% of the time.
    fired = ops[chosen == 2, 0] == OP_NAMES.index("Equalize")
    assert 0.65 < fired.mean() < 0.95
    # Sub-policy 12's first step has probability 0: never fires.
    assert np.all(ops[chosen == 12, 0] == OP_NAMES.index("Identity"))


def test_randaugment_draws_ops_per_image_and_position():
    layer = RandAugment(num_ops=2, magnitude=5, seed=3)
    parameters = layer.sample_parameters(tf.constant([2000, 8, 8, 3]))
    op_ids = np.asarray(parameters["op_ids"])
    assert op_ids.shape == (2000, 2)
    counts = np.bincount(op_ids.ravel(), minlength=len(OP_NAMES))
    assert counts[OP_NAMES.index("Invert")] == 0  # not in RandAugment's 14-op pool
    assert (counts[counts > 0] > 4000 / 14 * 0.7).all() and (counts > 0).sum() == 14
    np.testing.assert_allclose(np.asarray(parameters["magnitudes"]), 0.5)


def test_randaugment_injected_parameters_match_pil_composition():
    x = photo(2)
    layer = RandAugment()
    ids = [[OP_NAMES.index("Invert"), OP_NAMES.index("Equalize")], [OP_NAMES.index("Identity")] * 2]
    y = np.asarray(layer.apply_parameters(tf.constant(x), {
        "op_ids": tf.constant(ids), "magnitudes": tf.zeros([2, 2]), "signs": tf.ones([2, 2])}))
    np.testing.assert_allclose(y[0], pil_each(x[:1], lambda im: ImageOps.equalize(ImageOps.invert(im)))[0])
    np.testing.assert_allclose(y[1], x[1])
