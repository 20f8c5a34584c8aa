"""Bad files are found once, up front, and reported by path; good ones decode upright and exactly;
box modes and resize policies against NumPy; decoded pixels are cached once and shared."""

import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from keras_fgvc.data import checks, pixel_cache
from keras_fgvc.data.decode import apply_box, decode_image, resize
from keras_fgvc.data.pipeline import PipelineSpec, build
from keras_fgvc.errors import DataError
from tests.fixtures import bad_images


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    files = bad_images.write(str(root))
    table = pd.DataFrame({"path": [p for p, _ in files.values()], "label": np.arange(len(files)) % 3})
    return root, files, table


def is_bad(expected):
    return isinstance(expected, str)


def test_check_skips_exactly_the_bad_files_and_names_each_reason(folder, tmp_path):
    _, files, table = folder
    good, bad = checks.check_images(table, cache_dir=str(tmp_path))
    want_bad = {p: e for p, e in files.values() if is_bad(e)}
    assert [b.path for b in bad] == [p for p in table["path"] if p in want_bad]  # table order
    for item in bad:
        assert want_bad[item.path] in item.reason
    assert good["path"].tolist() == [p for p in table["path"] if p not in want_bad]
    assert good["label"].tolist() == [lab for p, lab in zip(table["path"], table["label"]) if p not in want_bad]
    orientation = dict(zip(good["path"], good["orientation"]))
    assert orientation[files["rotated.png"][0]] == 6 and orientation[files["good.png"][0]] == 1
    written = checks.write_bad_files(bad, str(tmp_path))
    lines = open(written).read().splitlines()
    assert [line.split("\t")[0] for line in lines] == [b.path for b in bad]
    assert checks.summary(bad, len(table)).startswith(f"images: {len(bad)} of {len(table)} unreadable")


def test_strict_raises_on_the_first_bad_file_with_its_path(folder, tmp_path):
    _, files, table = folder
    with pytest.raises(DataError, match=rf"^{files['truncated.jpg'][0]}: unreadable image .*data.strict=true"):
        checks.check_images(table, cache_dir=str(tmp_path), strict=True)


def test_check_results_are_cached_by_path_size_and_mtime(folder, tmp_path, monkeypatch):
    _, files, table = folder
    checks.check_images(table, cache_dir=str(tmp_path))
    calls = []
    real_inspect = checks.inspect
    monkeypatch.setattr(checks, "inspect", lambda p: calls.append(p) or real_inspect(p))
    _, bad = checks.check_images(table, cache_dir=str(tmp_path))
    missing = files["missing.jpg"][0]
    assert calls == [missing]  # only the file that has no (size, mtime) to key on is looked at again
    fixed = tmp_path / "now_good.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(fixed)
    zero = tmp_path / "zero.jpg"
    zero.write_bytes(b"")
    small = pd.DataFrame({"path": [str(zero)], "label": [0]})
    assert len(checks.check_images(small, cache_dir=str(tmp_path))[1]) == 1
    zero.write_bytes(fixed.read_bytes())  # the file changes: size and mtime differ, so it is checked again
    good, bad = checks.check_images(small, cache_dir=str(tmp_path))
    assert bad == [] and len(good) == 1


def test_good_files_decode_to_the_expected_upright_pixels(folder, tmp_path):
    _, files, table = folder
    good, _ = checks.check_images(table, cache_dir=str(tmp_path))
    for path, orientation in zip(good["path"], good["orientation"]):
        name = os.path.basename(path)
        expected = files[name][1]
        image = decode_image(tf.io.read_file(path), 3, orientation).numpy()
        if expected is None:  # the 10,000 x 10,000 JPEG: decoded whole, a flat colour
            assert image.shape == (10_000, 10_000, 3)
            assert np.abs(image[::500, ::500].astype(int) - [10, 200, 30]).max() <= 3
            continue
        if name == "cmyk.jpg":  # lossy even at quality 100: within a few levels of the RGB drawn
            assert np.abs(image.astype(int) - expected).max() <= 6
        else:
            np.testing.assert_array_equal(image, expected, err_msg=name)


def test_box_crop_and_background_erase_against_numpy():
    image = np.arange(6 * 8 * 1, dtype=np.uint8).reshape(6, 8, 1)
    box = tf.constant([2.0, 1.0, 5.0, 4.0])  # x1, y1, x2 (exclusive), y2 (exclusive)
    np.testing.assert_array_equal(apply_box(tf.constant(image), box, "crop").numpy(), image[1:4, 2:5])
    erased = np.full_like(image, 255)
    erased[1:4, 2:5] = image[1:4, 2:5]
    np.testing.assert_array_equal(apply_box(tf.constant(image), box, "erase_background").numpy(), erased)
    no_box = tf.constant([np.nan] * 4)
    np.testing.assert_array_equal(apply_box(tf.constant(image), no_box, "crop").numpy(), image)


def test_resize_policies_keep_or_fill_the_aspect_ratio():
    wide = np.zeros((10, 20, 3), np.uint8)
    wide[:, 5:15] = 200  # a bright centre half
    squash = resize(tf.constant(wide), 10, "squash").numpy()
    crop = resize(tf.constant(wide), 10, "crop").numpy()
    pad = resize(tf.constant(wide), 10, "pad").numpy()
    assert squash.shape == crop.shape == pad.shape == (10, 10, 3)
    np.testing.assert_allclose(crop, 200.0, atol=1e-3)  # shorter side to 10, central 10 x 10 = the bright half
    np.testing.assert_allclose(pad[:2], 0.0) and np.testing.assert_allclose(pad[-2:], 0.0)  # letterbox rows
    assert pad[4:6, 3:7].min() > 150 and squash[:, 0].max() == 0 and squash[:, 4:6].min() > 150


def test_pipeline_yields_exactly_the_good_images_decoded_once(folder, tmp_path, monkeypatch):
    _, files, table = folder
    good, _ = checks.check_images(table, cache_dir=str(tmp_path))
    spec = PipelineSpec(8, 4, targets={"logits": "label"}, cache=True, cache_dir=str(tmp_path))
    batches = list(build(good, spec, training=False))
    labels = np.concatenate([t["logits"].numpy() for _, t in batches])
    images = np.concatenate([i["image"].numpy() for i, _ in batches])
    np.testing.assert_array_equal(labels, good["label"].to_numpy())
    streamed = np.concatenate([i["image"].numpy() for i, _ in build(good, spec.__class__(**{**spec.__dict__, "cache": False}), training=False)])
    np.testing.assert_array_equal(images, streamed)  # cached pixels == decoding on the fly
    # Later stages build from subsets of the table: they read the open store, decode nothing, and a
    # new process (empty registry) maps the same file.
    monkeypatch.setattr(pixel_cache, "_fill", lambda *a: pytest.fail("decoded twice"))
    subset = good.iloc[[4, 1, 2]]
    again = np.concatenate([i["image"].numpy() for i, _ in build(subset, spec, training=False)])
    np.testing.assert_array_equal(again, images[[4, 1, 2]])
    pixel_cache._OPEN.clear()
    store = pixel_cache.prepare(good, 8, cache_dir=str(tmp_path), verbose=False)
    np.testing.assert_array_equal(store.array, images.astype(np.uint8))


def test_cache_key_changes_with_every_setting_and_file_change(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    table = pd.DataFrame({"path": [str(path)]})

    def key(*settings, table=table):
        return pixel_cache.cache_key(pixel_cache.row_identities(table), *settings)

    first = key(8, 3, "squash", "none")
    others = {key(9, 3, "squash", "none"), key(8, 1, "squash", "none"), key(8, 3, "pad", "none"),
              key(8, 3, "squash", "none", table=table.assign(orientation=[6]))}
    assert first not in others and len(others) == 4
    os.utime(path, ns=(1, 1))
    assert key(8, 3, "squash", "none") != first


def test_an_image_tensorflow_cannot_decode_is_named(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(good)
    tiff = tmp_path / "scan.tif"  # passes no check (the check refuses TIFF), so force it past the check
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tiff)
    table = pd.DataFrame({"path": [str(good), str(tiff)], "orientation": [1, 1]})
    with pytest.raises(DataError, match=rf"^{tiff}: TensorFlow cannot decode it"):
        pixel_cache.prepare(table, 4, cache_dir=str(tmp_path), verbose=False)
    assert not [n for n in os.listdir(tmp_path / "pixels")]  # no half-written cache left


def test_decode_time_crop_decodes_a_window_of_the_right_area_and_aspect(tmp_path):
    from keras_fgvc.data.decode import random_crop_pixels

    # Columns coloured by x: the crop's mean colour tells where the window was; a full-image crop
    # of a whole-area range returns the squashed image itself.
    width, height = 200, 100
    ramp = np.tile(np.linspace(0, 255, width, dtype=np.float32)[None, :, None], (height, 1, 3)).astype(np.uint8)
    path = tmp_path / "ramp.jpg"
    Image.fromarray(ramp).save(path, quality=95)
    encoded = tf.io.read_file(str(path))
    whole = random_crop_pixels(encoded, 16, scale=(1.0, 1.0), ratio=(2.0, 2.0), seed=1).numpy()
    np.testing.assert_allclose(whole, resize(decode_image(encoded), 16).numpy().round(), atol=1.0)
    means = [random_crop_pixels(encoded, 16, scale=(0.1, 0.2), ratio=(1.0, 1.0), seed=s).numpy()[..., 0].mean()
             for s in range(6)]
    assert np.ptp(means) > 20  # windows land in different places
    png = tmp_path / "ramp.png"
    Image.fromarray(ramp).save(png)
    crop = random_crop_pixels(tf.io.read_file(str(png)), 16, scale=(0.1, 0.2), ratio=(1.0, 1.0), seed=3).numpy()
    # A square window of 10-20% of 200 x 100 spans 45-63 columns: its colour range is that of ~45-63 columns.
    span = np.ptp(crop[..., 0]) / 255 * (width - 1)
    assert 30 < span < 70 and crop.shape == (16, 16, 3)


def test_a_split_with_no_readable_image_is_one_error_naming_it(folder, tmp_path):
    # Before: the split went on empty and training died in Keras with StopIteration.
    from keras_fgvc.config.compose import compose
    from keras_fgvc.data.prepare import check_tables

    _, files, table = folder
    cfg = compose([f"runs_root={tmp_path}/runs", f"data.cache_dir={tmp_path}/cache"])
    only_bad = table[[is_bad(files[os.path.basename(p)][1]) for p in table["path"]]].reset_index(drop=True)
    good = table[[not is_bad(files[os.path.basename(p)][1]) for p in table["path"]]].reset_index(drop=True)
    with pytest.raises(DataError, match=rf"^val: none of its {len(only_bad)} images is readable \(first: "
                                        rf"{only_bad['path'][0]}: .*; all in .*bad_files.txt\)$"):
        check_tables(cfg, {"train": good, "val": only_bad})
    checked, info = check_tables(cfg, {"train": good, "val": None})
    assert len(checked["train"]) == len(good) and info["bad_files"] == 0


def test_the_test_rows_check_tables_drops_stay_available_for_a_prior(folder, tmp_path):
    """A submission needs every test row: ``submission_rows`` keeps the ones check_tables dropped,
    and ``answers`` puts the model's rows and a prior's back in table order."""
    from keras_fgvc.config.compose import compose
    from keras_fgvc.data.prepare import check_tables, class_prior, submission_rows

    _, files, table = folder
    cfg = compose([f"runs_root={tmp_path}/runs", f"data.cache_dir={tmp_path}/cache"])
    bad = np.array([is_bad(files[os.path.basename(p)][1]) for p in table["path"]])
    good = table[~bad].reset_index(drop=True)
    tables = {"train": good, "test": table}
    checked, info = check_tables(cfg, tables)
    assert info["test_unreadable"] == bad.sum() > 0
    rows = submission_rows(tables, checked)
    assert rows.table["path"].tolist() == table["path"].tolist()
    np.testing.assert_array_equal(rows.readable, ~bad)
    assert rows.unreadable["path"].tolist() == table.loc[bad, "path"].tolist()
    assert rows.kept["path"].tolist() == good["path"].tolist() and "orientation" in rows.kept.columns
    predicted = np.arange(2 * len(good), dtype=np.float32).reshape(-1, 2)
    answered = rows.answers(predicted, prior=[0.25, 0.75])
    assert answered.dtype == np.float32 and answered.shape == (len(table), 2)
    np.testing.assert_array_equal(answered[~bad], predicted)
    np.testing.assert_array_equal(answered[bad], np.tile([0.25, 0.75], (bad.sum(), 1)))
    with pytest.raises(ValueError, match="predicted rows for"):
        rows.answers(predicted[1:], prior=[0.5, 0.5])
    assert submission_rows({"train": good, "test": None}, {"train": good, "test": None}) is None
    assert "test_unreadable" not in check_tables(cfg, {"train": good})[1]
    # the classifier's prior: each class's share of the labels (NaN rows left out)
    np.testing.assert_allclose(class_prior([2, 0, 2, np.nan, 2], num_classes=4), [0.25, 0, 0.75, 0])
