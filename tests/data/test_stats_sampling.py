"""Dataset statistics and P x K sampling: mean/std equal NumPy on the same model pixels (closed form
for solid colours, PIL at native size), greyscale, the fingerprint-keyed cache (hit, invalidation
by size and by mtime, atomic write); P x K batches hold P distinct classes x K rows, never an
unknown label, are reproducible per seed, differ per epoch, and balance classes and images to the
bounds derived in ``keras_fgvc.data.sampling``."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from keras_fgvc.data import stats
from keras_fgvc.data.decode import model_pixels
from keras_fgvc.data.sampling import pk_batches, pk_dataset
from keras_fgvc.data.stats import fingerprint, mean_std
from keras_fgvc.errors import DataError


def save_png(path, pixels):
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture
def random_table(tmp_path):
    """Random RGB PNGs already at 16 x 16, so model_pixels at 16 is the decoded image itself."""
    rng = np.random.default_rng(1)
    paths = [save_png(tmp_path / f"{i}.png", rng.integers(0, 256, (16, 16, 3))) for i in range(7)]
    return pd.DataFrame({"path": paths, "label": np.arange(7) % 3})


def numpy_mean_std(paths, mode):
    pixels = np.stack([np.asarray(Image.open(p).convert(mode), dtype=np.float64) for p in paths]) / 255.0
    pixels = pixels.reshape(-1, 1 if mode == "L" else 3)
    return pixels.mean(axis=0), pixels.std(axis=0)  # population std (ddof=0)


# ---------------------------------------------------------------- mean / std


def test_solid_colours_give_the_closed_form_mean_and_std_after_resize(tmp_path):
    # A constant image resizes to the same constant, whatever the source size; two colours with
    # equal pixel counts at the model size have mean (a+b)/2 and population std |a-b|/2.
    a, b = np.array([10, 200, 255]), np.array([250, 40, 0])
    paths = [save_png(tmp_path / "a.png", np.broadcast_to(a, (37, 23, 3))),
             save_png(tmp_path / "b.png", np.broadcast_to(b, (9, 61, 3)))]
    mean, std = mean_std(pd.DataFrame({"path": paths}), image_size=12)
    np.testing.assert_allclose(mean, (a + b) / 2 / 255, atol=1e-6)
    np.testing.assert_allclose(std, np.abs(a - b) / 2 / 255, atol=1e-6)
    assert mean.dtype == np.float64 and mean.shape == (3,) and std.shape == (3,)


def test_random_images_at_native_size_match_numpy_on_pil_pixels(random_table):
    mean, std = mean_std(random_table, image_size=16)
    expected_mean, expected_std = numpy_mean_std(random_table["path"], "RGB")
    np.testing.assert_allclose(mean, expected_mean, atol=1e-6)
    np.testing.assert_allclose(std, expected_std, atol=1e-6)


def test_resized_images_match_numpy_on_model_pixels(random_table, tmp_path):
    # Off the native size the reference is decode.model_pixels itself: the pixels the model sees.
    rng = np.random.default_rng(2)
    paths = [save_png(tmp_path / f"r{i}.png", rng.integers(0, 256, (20 + 3 * i, 31 - i, 3))) for i in range(5)]
    table = pd.DataFrame({"path": paths})
    pixels = np.stack([model_pixels(tf.io.read_file(p), 11).numpy() for p in paths]).astype(np.float64) / 255
    mean, std = mean_std(table, image_size=11)
    np.testing.assert_allclose(mean, pixels.reshape(-1, 3).mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(std, pixels.reshape(-1, 3).std(axis=0), atol=1e-6)


def test_greyscale_channels_one(tmp_path):
    rng = np.random.default_rng(3)
    grey = [save_png(tmp_path / f"g{i}.png", rng.integers(0, 256, (16, 16))) for i in range(4)]
    mean, std = mean_std(pd.DataFrame({"path": grey}), image_size=16, channels=1)
    expected_mean, expected_std = numpy_mean_std(grey, "L")
    assert mean.shape == (1,) and std.shape == (1,)
    np.testing.assert_allclose(mean, expected_mean, atol=1e-6)
    np.testing.assert_allclose(std, expected_std, atol=1e-6)
    # An RGB file measured with channels=1 goes through decode's own grey conversion.
    colour = save_png(tmp_path / "c.png", rng.integers(0, 256, (16, 16, 3)))
    pixels = model_pixels(tf.io.read_file(colour), 16, channels=1).numpy().astype(np.float64) / 255
    mean, std = mean_std(pd.DataFrame({"path": [colour]}), image_size=16, channels=1)
    np.testing.assert_allclose([mean[0], std[0]], [pixels.mean(), pixels.std()], atol=1e-6)


def test_bad_inputs_raise_clear_errors(random_table, tmp_path):
    with pytest.raises(DataError, match="no rows"):
        mean_std(random_table.iloc[:0], 16)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        mean_std(random_table, 16, channels=2)
    missing = random_table.assign(path=[*random_table["path"][:-1], str(tmp_path / "gone.png")])
    with pytest.raises(DataError, match=r"gone\.png: image file not found \(table row 6"):
        mean_std(missing, 16, cache_dir=str(tmp_path / "cache"))


def test_thesis_stanford_cars_numbers_are_recorded():
    # docs/SYSTEMS.md section 2 (thesis): train-set normalisation of the best GhostNet recipe.
    assert stats.STANFORD_CARS_MEAN == (0.4707, 0.4602, 0.4550)
    assert stats.STANFORD_CARS_STD == (0.2594, 0.2585, 0.2635)


# ---------------------------------------------------------------- cache and fingerprint


def test_cache_hit_does_not_decode_and_returns_identical_values(random_table, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = mean_std(random_table, 16, cache_dir=str(cache))
    files = os.listdir(cache)
    assert len(files) == 1 and files[0].startswith("mean_std-")  # one entry, no temp file left behind
    entry = json.loads((cache / files[0]).read_text())
    assert entry["num_images"] == 7 and entry["image_size"] == 16 and entry["channels"] == 3
    assert entry["mean"] == first[0].tolist()

    def no_decoding(*args, **kwargs):
        raise AssertionError("cache hit expected, but the images were decoded again")

    monkeypatch.setattr(stats, "_compute_mean_std", no_decoding)
    shuffled = random_table.sample(frac=1.0, random_state=0)  # row order is not part of the key
    second = mean_std(shuffled, 16, cache_dir=str(cache))
    np.testing.assert_array_equal(second[0], first[0])  # bit-identical through JSON
    np.testing.assert_array_equal(second[1], first[1])
    # Any setting that changes the pixels is another key, so it must compute.
    boxes = {"bbox_x1": 0.0, "bbox_y1": 0.0, "bbox_x2": 8.0, "bbox_y2": 8.0}
    for table, kwargs in [(random_table, {"image_size": 8}), (random_table, {"channels": 1}),
                          (random_table, {"resize": "pad"}), (random_table.assign(orientation=6), {}),
                          (random_table.assign(**boxes), {"box_mode": "crop"})]:
        with pytest.raises(AssertionError, match="cache hit expected"):
            mean_std(table, **{"image_size": 16, **kwargs}, cache_dir=str(cache))
    # Boxes only matter when a box mode uses them.
    mean_std(random_table.assign(**boxes), 16, cache_dir=str(cache))


def test_per_row_orientation_box_and_resize_policy_are_applied(tmp_path):
    # Orientation, box crop and the pad policy: mean_std sees what the pipeline feeds the model,
    # i.e. decode.model_pixels with each row's orientation and box.
    rng = np.random.default_rng(4)
    paths = [save_png(tmp_path / f"o{i}.png", rng.integers(0, 256, (18 + i, 25, 3))) for i in range(4)]
    table = pd.DataFrame({"path": paths, "orientation": [1, 6, 3, 8], "bbox_x1": [0.0, 2.0, np.nan, 5.0],
                          "bbox_y1": [0.0, 1.0, np.nan, 3.0], "bbox_x2": [10.0, 20.0, np.nan, 25.0],
                          "bbox_y2": [9.0, 15.0, np.nan, 18.0]})
    boxes = table[["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"]].to_numpy("float32")
    pixels = [model_pixels(tf.io.read_file(p), 13, 3, "pad", o, box, "crop").numpy()
              for p, o, box in zip(paths, table["orientation"], boxes)]
    values = np.asarray(pixels, np.float64).reshape(-1, 3) / 255
    mean, std = mean_std(table, 13, resize="pad", box_mode="crop")
    np.testing.assert_allclose(mean, values.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(std, values.std(axis=0), atol=1e-6)
    plain = mean_std(table, 13)[0]
    assert np.abs(plain - mean).max() > 1e-3  # the settings do change the statistics


def test_changed_file_invalidates_the_cache(random_table, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    mean_std(random_table, 16, cache_dir=cache)
    changed = random_table["path"][2]
    # New content with a new file size: recomputed, and the new value is right.
    size_before = os.path.getsize(changed)
    save_png(changed, np.full((16, 16, 3), 7))
    assert os.path.getsize(changed) != size_before
    mean, std = mean_std(random_table, 16, cache_dir=cache)
    expected_mean, expected_std = numpy_mean_std(random_table["path"], "RGB")
    np.testing.assert_allclose(mean, expected_mean, atol=1e-6)
    np.testing.assert_allclose(std, expected_std, atol=1e-6)
    assert len(os.listdir(cache)) == 2

    calls = []
    monkeypatch.setattr(stats, "_compute_mean_std", lambda *a: calls.append(a) or (np.zeros(3), np.ones(3)))
    mean_std(random_table, 16, cache_dir=cache)
    assert calls == []  # unchanged again: hit
    info = os.stat(changed)
    os.utime(changed, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))  # same bytes, touched
    mean, _ = mean_std(random_table, 16, cache_dir=cache)
    assert len(calls) == 1 and mean.tolist() == [0.0, 0.0, 0.0]


def test_corrupt_cache_entry_is_recomputed(random_table, tmp_path):
    cache = tmp_path / "cache"
    mean_std(random_table, 16, cache_dir=str(cache))
    (entry,) = cache.iterdir()
    entry.write_text("{not json")
    mean, _ = mean_std(random_table, 16, cache_dir=str(cache))
    np.testing.assert_allclose(mean, numpy_mean_std(random_table["path"], "RGB")[0], atol=1e-6)
    assert json.loads(entry.read_text())["mean"] == mean.tolist()


def test_fingerprint_depends_on_files_and_extras_not_on_row_order(random_table):
    key = fingerprint(random_table, 16, 3)
    assert len(key) == 32 and int(key, 16) >= 0
    assert fingerprint(random_table.iloc[::-1], 16, 3) == key
    assert fingerprint(random_table, np.int64(16), 3) == key  # NumPy scalars key like Python ones
    assert len({key, fingerprint(random_table, 17, 3), fingerprint(random_table, 16, 1),
                fingerprint(random_table), fingerprint(random_table.iloc[1:], 16, 3)}) == 5


def test_fingerprint_of_a_tfrecord_table_follows_records_and_shards(tmp_path):
    shards = [tmp_path / "train-0.tfrecord", tmp_path / "train-1.tfrecord"]
    for shard in shards:
        shard.write_bytes(b"records")
    table = pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg"], "record_file": [str(shards[0])] * 2 + [str(shards[1])],
                          "record_index": [0, 1, 0]})
    key = fingerprint(table)
    assert fingerprint(table.iloc[::-1]) == key and fingerprint(table.iloc[:2]) != key
    shards[1].write_bytes(b"other records")
    assert fingerprint(table) != key
    with pytest.raises(DataError, match="TFRecord shard not found"):
        fingerprint(table.assign(record_file=str(tmp_path / "gone.tfrecord")))


# ---------------------------------------------------------------- P x K sampling


# 6 classes of sizes 1..6 plus a big one (class 6: 12 rows) and NaN rows interleaved.
SIZES = [1, 2, 3, 4, 5, 6, 12]


def make_labels(seed=0):
    labels = np.concatenate([np.full(n, c, dtype=np.float64) for c, n in enumerate(SIZES)] + [np.full(5, np.nan)])
    return np.random.default_rng(seed).permutation(labels)


def blocks(batches, labels, p, k):
    """[B, P, K] labels of each batch's class blocks."""
    return labels[batches].reshape(len(batches), p, k)


def test_every_batch_holds_p_distinct_classes_k_times_and_no_unknown_rows():
    labels = make_labels()
    p, k = 4, 3
    batches = pk_batches(labels, p, k, seed=0, num_batches=200)
    assert batches.shape == (200, 12) and batches.dtype == np.int64
    per_block = blocks(batches, labels, p, k)
    assert not np.isnan(per_block).any()  # NaN-labelled rows are never drawn
    assert np.all(per_block == per_block[:, :, :1])  # each block is one class
    assert all(len(set(batch[:, 0])) == p for batch in per_block)  # P distinct classes
    # Default length: one epoch = labelled rows // (P*K) = 33 // 12.
    assert pk_batches(labels, p, k, seed=0).shape == (2, 12)


def test_same_seed_same_batches_other_seed_other_batches():
    labels = make_labels()
    a = pk_batches(labels, 3, 2, seed=5, num_batches=20)
    np.testing.assert_array_equal(a, pk_batches(labels, 3, 2, seed=5, num_batches=20))
    assert not np.array_equal(a, pk_batches(labels, 3, 2, seed=6, num_batches=20))
    # Works on a pandas column and on string labels with None as unknown.
    np.testing.assert_array_equal(pk_batches(pd.Series(labels), 3, 2, seed=5, num_batches=20), a)
    names = np.where(np.isnan(labels), None, np.char.add("c", np.nan_to_num(labels).astype(int).astype(str)))
    named = pk_batches(names.tolist(), 3, 2, seed=5, num_batches=20)
    assert all(n is not None for n in np.asarray(names, dtype=object)[named].ravel())


@pytest.mark.parametrize("num_batches", [1, 7, 50, 123])
def test_class_coverage_is_balanced_to_floor_or_ceil(num_batches):
    # Derived in sampling's docstring: each pass over the C classes is used up before the next
    # starts, so after M = B*P class slots every class has floor(M/C) or ceil(M/C) blocks.
    labels = make_labels()
    p, k, c = 3, 2, len(SIZES)
    per_block = blocks(pk_batches(labels, p, k, seed=1, num_batches=num_batches), labels, p, k)
    counts = np.bincount(per_block[:, :, 0].ravel().astype(int), minlength=c)
    m = num_batches * p
    assert counts.sum() == m
    assert counts.min() >= m // c and counts.max() <= -(-m // c)


def test_images_within_a_class_are_used_in_turn():
    labels = make_labels()
    batches = pk_batches(labels, 2, 3, seed=2, num_batches=300)
    uses = np.bincount(batches.ravel(), minlength=len(labels))
    for c in range(len(SIZES)):
        rows = np.flatnonzero(labels == c)
        assert uses[rows].max() - uses[rows].min() <= 1, (c, uses[rows])
    assert uses[np.isnan(labels)].sum() == 0


def test_small_classes_are_sampled_with_replacement():
    labels = make_labels()
    k = 5
    batches = pk_batches(labels, 7, k, seed=3, num_batches=4)  # every class in every batch
    for batch in batches:
        for block in batch.reshape(7, k):
            n = SIZES[int(labels[block[0]])]
            counts = np.unique(block, return_counts=True)[1]
            # Each of the class's rows k // n or k // n + 1 times; distinct rows when the class has k.
            assert len(counts) == min(n, k) and counts.min() >= k // n and counts.max() <= -(-k // n)
    single = np.flatnonzero(labels == 0)[0]  # class 0 has one image: the block repeats it
    assert all(block.tolist() == [single] * k for block in batches.reshape(-1, k) if labels[block[0]] == 0)


def test_bad_arguments_raise_value_errors():
    labels = make_labels()
    with pytest.raises(ValueError, match=r"classes_per_batch=8 is more than the 7 classes"):
        pk_batches(labels, 8, 2, seed=0)
    with pytest.raises(ValueError, match=r"classes_per_batch=8 is more than the 7 classes"):
        pk_dataset(labels, 8, 2, seed=0)  # checked when the dataset is built, not on iteration
    with pytest.raises(ValueError, match="classes_per_batch must be a positive integer"):
        pk_batches(labels, 0, 2, seed=0)
    with pytest.raises(ValueError, match="images_per_class must be a positive integer"):
        pk_batches(labels, 2, 1.5, seed=0)
    with pytest.raises(ValueError, match="every label is NaN"):
        pk_batches([np.nan, np.nan], 1, 1, seed=0)
    with pytest.raises(ValueError, match="num_batches must be a positive integer"):
        pk_batches(labels, 2, 2, seed=0, num_batches=0)


def test_dataset_epoch_e_is_pk_batches_with_seed_plus_e():
    labels = make_labels()
    p, k = 3, 2
    ds = pk_dataset(labels, p, k, seed=10)
    assert ds.element_spec == tf.TensorSpec([], tf.int64)
    epoch = pk_batches(labels, p, k, seed=10)
    assert int(ds.cardinality()) == epoch.size == (33 // 6) * 6
    first, second = (np.fromiter(ds.as_numpy_iterator(), np.int64) for _ in range(2))
    np.testing.assert_array_equal(first, epoch.ravel())
    np.testing.assert_array_equal(second, pk_batches(labels, p, k, seed=11).ravel())
    assert not np.array_equal(first, second)  # reshuffled every epoch
    # A fresh dataset with the same seed replays the epochs; repeat() advances them too.
    replay = np.fromiter(pk_dataset(labels, p, k, seed=10).repeat(2).as_numpy_iterator(), np.int64)
    np.testing.assert_array_equal(replay, np.concatenate([first, second]))
    # Batching P*K consecutive rows gives P x K batches.
    batch = next(iter(pk_dataset(labels, p, k, seed=10).batch(p * k))).numpy()
    assert len(set(labels[batch])) == p and not np.isnan(labels[batch]).any()
