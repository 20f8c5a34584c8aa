"""Table -> tf.data: the (inputs, targets) dict contract, shapes and values eagerly and inside
tf.data, NaN labels kept for masked losses, label inputs for margin heads, mixing on the dicts,
decode equals PIL, splits."""

import io

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from keras_fgvc.data.decode import decode_image, model_pixels
from keras_fgvc.data.pipeline import PipelineSpec, build
from keras_fgvc.data.splits import split_rows, stratified_sample, stratified_split


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(5):
        pixels = rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)
        path = tmp_path / f"{i}.png"
        Image.fromarray(pixels).save(path)
        rows.append((str(path), i % 2))
    return pd.DataFrame(rows, columns=["path", "label"])


def test_batches_are_inputs_and_targets_dicts_with_the_declared_shapes(table):
    ds = build(table, PipelineSpec(16, 2, targets={"logits": "label", "embedding": "label"}, cache=False), training=True)
    batches = list(ds)
    assert [tuple(inputs["image"].shape) for inputs, _ in batches] == [(2, 16, 16, 3), (2, 16, 16, 3), (1, 16, 16, 3)]
    inputs, targets = batches[0]
    assert set(inputs) == {"image"} and set(targets) == {"logits", "embedding"}
    assert inputs["image"].dtype == tf.float32 and targets["logits"].dtype == tf.int32
    labels = np.concatenate([t["logits"].numpy() for _, t in batches])
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1]
    np.testing.assert_array_equal(labels, np.concatenate([t["embedding"].numpy() for _, t in batches]))
    assert ds.element_spec[0]["image"].shape.as_list() == [None, 16, 16, 3]


def test_uint8_images_for_the_step_are_the_float_pixels_rounded(table):
    spec = PipelineSpec(16, 4, targets={"logits": "label"}, cache=True)
    as_float = np.concatenate([i["image"] for i, _ in build(table, spec, training=False)])
    as_uint8 = np.concatenate([i["image"] for i, _ in build(table, PipelineSpec(**{**spec.__dict__, "image_dtype": "uint8"}),
                                                           training=False)])
    assert as_uint8.dtype == np.uint8
    np.testing.assert_array_equal(as_uint8, as_float)  # decoded pixels are whole numbers: nothing lost

    def brighten(images, training):  # an augmentation's float output, some of it past 255
        return images * 1.3 + 0.4

    augmented = np.concatenate([i["image"] for i, _ in build(
        table, PipelineSpec(**{**spec.__dict__, "image_dtype": "uint8"}), training=False, augment=brighten)])
    np.testing.assert_array_equal(augmented, np.clip(np.round(as_float * 1.3 + 0.4), 0, 255).astype(np.uint8))


def test_eval_order_and_pixels_match_model_pixels_eagerly(table):
    images = np.concatenate([b["image"] for b in build(table, PipelineSpec(16, 4, cache=True), training=False)])
    for row, image in zip(table["path"], images):
        expected = model_pixels(tf.io.read_file(row), 16).numpy()
        np.testing.assert_array_equal(image, expected)
    assert images.min() >= 0 and images.max() <= 255 and np.all(images == np.round(images))


def test_missing_labels_stay_nan_and_label_inputs_get_minus_one(table):
    table = table.assign(label=[0, 1, np.nan, 0, 1], other=[1, 1, 0, 0, 1])
    spec = PipelineSpec(16, 5, targets={"logits": "label", "multi": ["label", "other"]}, label_input="label", cache=False)
    inputs, targets = next(iter(build(table, spec, training=False)))
    assert targets["logits"].dtype == tf.float32  # NaN = "no label" for the masked losses
    np.testing.assert_array_equal(np.isnan(targets["logits"].numpy()), [False, False, True, False, False])
    np.testing.assert_array_equal(targets["multi"].numpy()[:, 1], [1, 1, 0, 0, 1])
    assert targets["multi"].shape == (5, 2)
    np.testing.assert_array_equal(inputs["label"].numpy(), [0, 1, -1, 0, 1])  # -1: no margin on that row


def test_label_mixing_runs_on_the_dicts_in_tf_data(table):
    from keras_fgvc.augment import BatchCutMix

    mixing = BatchCutMix(alpha=1.0, rate=1.0, label_mode="one_hot", seed=3)
    spec = PipelineSpec(16, 5, targets={"logits": "label"}, cache=False, num_classes=2)
    inputs, targets = next(iter(build(table, spec, training=True, mixing=mixing)))
    soft = targets["logits"].numpy()
    assert soft.shape == (5, 2)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-6)
    assert not np.isin(soft, [0.0, 1.0]).all()  # some rows carry a mix of two labels
    with pytest.raises(ValueError, match="exactly one target"):
        build(table, PipelineSpec(16, 2, targets={"a": "label", "b": "label"}, num_classes=2), training=True, mixing=mixing)


def test_decode_equals_pil_for_png_and_converts_channels(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 256, (9, 7, 4), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    rgb = decode_image(tf.constant(buffer.getvalue()), channels=3).numpy()
    np.testing.assert_array_equal(rgb, rgba[..., :3])
    grey = decode_image(tf.constant(buffer.getvalue()), channels=1).numpy()
    reference = tf.image.rgb_to_grayscale(rgba[..., :3]).numpy()
    np.testing.assert_array_equal(grey, reference)


def test_model_pixels_is_identity_at_native_size():
    pixels = np.random.default_rng(2).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    encoded = tf.io.encode_png(pixels)
    np.testing.assert_array_equal(model_pixels(encoded, 12).numpy(), pixels.astype(np.float32))


def test_split_rows_is_a_seeded_partition():
    a, b, rest = split_rows(100, [0.15, 0.25], seed=4)
    assert (len(a), len(b), len(rest)) == (15, 25, 60)
    assert sorted(np.concatenate([a, b, rest]).tolist()) == list(range(100))
    again = split_rows(100, [0.15, 0.25], seed=4)
    assert all(np.array_equal(x, y) for x, y in zip((a, b, rest), again))


def test_stratified_split_takes_the_fraction_of_every_class_and_keeps_one_in_train():
    labels = np.array([0] * 20 + [1] * 10 + [2] * 3 + [3] * 1 + [np.nan] * 4, dtype=object)
    train, val = stratified_split(labels, 0.1, seed=7)
    assert np.intersect1d(train, val).size == 0 and sorted(np.concatenate([train, val])) == list(range(len(labels)))
    counts = {c: int(np.sum(labels[val] == c)) for c in (0, 1, 2, 3)}
    assert counts == {0: 2, 1: 1, 2: 1, 3: 0}  # round(0.1 n), at least one for n >= 2, never the last one
    assert all(isinstance(v, int) for v in labels[val])  # NaN rows stay in train
    again, val_again = stratified_split(labels, 0.1, seed=7)
    np.testing.assert_array_equal(val, val_again)
    assert not np.array_equal(val, stratified_split(labels, 0.1, seed=8)[1])
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        stratified_split(labels, 1.0, seed=0)


def test_stratified_sample_keeps_each_class_share_and_at_least_one_row():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 9 + [3] * 1 + [np.nan] * 10, dtype=object)
    rows = stratified_sample(labels, 21, seed=3)
    assert len(rows) == 21 and len(set(rows)) == 21 and list(rows) == sorted(rows)
    counts = {c: int(np.sum(labels[rows] == c)) for c in (0, 1, 2, 3)}
    # one each (5 groups), then 16 shared by the other rows 59:29:8:0:9 (105): 8.99, 4.42, 1.22, 0, 1.37;
    # floors 8+4+1+0+1 = 14, the two largest remainders (.99, .42) add one each
    assert counts == {0: 10, 1: 6, 2: 2, 3: 1} and sum(isinstance(v, float) for v in labels[rows]) == 2
    np.testing.assert_array_equal(rows, stratified_sample(labels, 21, seed=3))
    assert not np.array_equal(rows, stratified_sample(labels, 21, seed=4))
    np.testing.assert_array_equal(stratified_sample(labels, 500, seed=0), np.arange(len(labels)))
    few = stratified_sample(labels, 3, seed=0)  # fewer rows than classes: three classes, one row each
    assert len(few) == 3 and len({str(v) for v in labels[few]}) == 3


def test_object_boxes_of_the_cars_layout_crop_the_pixels_the_model_sees(tmp_path):
    from keras_fgvc.data import synthetic
    from keras_fgvc.data.checks import check_images
    from keras_fgvc.data.decode import apply_box, decode_image, resize
    from keras_fgvc.data.sources import load

    synthetic.make("cars", str(tmp_path / "cars"), seed=1, num_classes=3, images_per_class=2, image_size=48)
    table, bad = check_images(load("stanford_cars", str(tmp_path / "cars"), "train"), cache_dir=str(tmp_path))
    assert bad == [] and table[["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"]].notna().all().all()
    for box_mode in ("crop", "erase_background"):
        spec = PipelineSpec(16, 8, box_mode=box_mode, cache_dir=str(tmp_path))
        images = np.concatenate([b["image"].numpy() for b in build(table, spec, training=False)])
        for row, image in zip(table.itertuples(), images):
            box = tf.constant([row.bbox_x1, row.bbox_y1, row.bbox_x2, row.bbox_y2], tf.float32)
            expected = tf.round(resize(apply_box(decode_image(tf.io.read_file(row.path)), box, box_mode), 16)).numpy()
            np.testing.assert_array_equal(image, expected)
