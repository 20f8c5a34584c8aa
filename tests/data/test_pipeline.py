"""Table -> tf.data: shapes and values eagerly and inside tf.data, decode equals PIL, splits."""

import io

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from keras_fgvc.data.decode import decode_image, model_pixels
from keras_fgvc.data.pipeline import PipelineSpec, build, split_rows


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


def test_batches_have_the_declared_shapes_and_dtypes(table):
    ds = build(table, PipelineSpec(16, 2, label="label", cache=False), training=True)
    batches = list(ds)
    assert [tuple(x.shape) for x, _ in batches] == [(2, 16, 16, 3), (2, 16, 16, 3), (1, 16, 16, 3)]
    assert batches[0][0].dtype == tf.float32 and batches[0][1].dtype == tf.int32
    assert sorted(np.concatenate([y.numpy() for _, y in batches]).tolist()) == [0, 0, 0, 1, 1]
    assert ds.element_spec[0].shape.as_list() == [None, 16, 16, 3]


def test_eval_order_and_pixels_match_model_pixels_eagerly(table):
    images = np.concatenate(list(build(table, PipelineSpec(16, 4, cache=True), training=False)))
    for row, image in zip(table["path"], images):
        expected = model_pixels(tf.io.read_file(row), 16).numpy()
        np.testing.assert_array_equal(image, expected)
    assert images.min() >= 0 and images.max() <= 255 and np.all(images == np.round(images))


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


def test_missing_labels_are_refused(table):
    table = table.assign(label=[0, 1, np.nan, 0, 1])
    with pytest.raises(ValueError, match="label column 'label' has missing values"):
        build(table, PipelineSpec(16, 2, label="label"), training=True)


def test_split_rows_is_a_seeded_partition():
    a, b, rest = split_rows(100, [0.15, 0.25], seed=4)
    assert (len(a), len(b), len(rest)) == (15, 25, 60)
    assert sorted(np.concatenate([a, b, rest]).tolist()) == list(range(100))
    again = split_rows(100, [0.15, 0.25], seed=4)
    assert all(np.array_equal(x, y) for x, y in zip((a, b, rest), again))
