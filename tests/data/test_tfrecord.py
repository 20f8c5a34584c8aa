"""TFRecord shards: the original bytes and every column survive a write -> load -> read round trip,
a table subset reads only its rows, nothing is overwritten or half-written, and broken shards are
DataErrors naming the file."""

import io
import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from keras_fgvc.data import tfrecord
from keras_fgvc.data.sources import load
from keras_fgvc.errors import DataError, UserError
from run import main

LABELS = [0, 1, np.nan, 1, 0, np.nan, 1]


def image_bytes(seed: int, fmt: str) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (6 + seed, 5, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def table(tmp_path):
    """Seven JPEG/PNG files in two class folders with every kind of column a source gives."""
    root = tmp_path / "data"
    rows = []
    for i, label in enumerate(LABELS):
        fmt = "JPEG" if i % 2 else "PNG"
        path = root / ("cat" if i < 4 else "dog") / f"img{i}.{'jpg' if fmt == 'JPEG' else 'png'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes(i, fmt))
        box = [np.nan] * 4 if i == 3 else [i, i + 0.5, 10.0 * i + 1, 20.25]
        rows.append((str(path), label, i % 3, f"id-{i}", *box, "x" if i != 2 else None))
    frame = pd.DataFrame(
        rows, columns=["path", "label", "group", "image_id", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "note"]
    )
    frame.attrs["classes"] = ["cat", "dog"]
    frame.attrs["root"] = str(root)
    return frame


def read_all(table) -> dict[int, bytes]:
    found = {}
    for row, encoded in tfrecord.encoded_images(table).as_numpy_iterator():
        assert int(row) not in found
        found[int(row)] = encoded
    return found


def file_bytes(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def assert_same_rows(loaded, original):
    columns = [c for c in original.columns if c != "path"]
    pd.testing.assert_frame_equal(loaded[columns], original[columns], check_dtype=True)
    assert loaded.attrs["classes"] == ["cat", "dog"]
    relative = [os.path.relpath(p, original.attrs["root"]) for p in original["path"]]
    assert loaded["path"].tolist() == relative
    assert list(loaded.columns) == [*original.columns, "record_file", "record_index"]


def test_round_trip_keeps_bytes_labels_ids_boxes_and_classes(table, tmp_path):
    out = str(tmp_path / "shards")
    shards = tfrecord.write(table, out, shards=3, root=table.attrs["root"])
    assert [os.path.basename(s) for s in shards] == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    index = json.loads((tmp_path / "shards" / "train.json").read_text())
    assert index["rows"] == 7 and [s["rows"] for s in index["shards"]] == [3, 2, 2]  # round-robin
    assert index["classes"] == ["cat", "dog"] and index["version"] == tfrecord.VERSION
    assert {c["name"]: c["kind"] for c in index["columns"]} == {
        "label": "float", "group": "int", "image_id": "text", "bbox_x1": "float", "bbox_y1": "float",
        "bbox_x2": "float", "bbox_y2": "float", "note": "text"}

    loaded = load("tfrecord", out)
    assert_same_rows(loaded, table)
    assert np.isnan(loaded["label"].to_numpy()[[2, 5]]).all() and pd.isna(loaded["note"][2])
    assert loaded["bbox_x1"].tolist()[:3] == [0.0, 1.0, 2.0] and np.isnan(loaded["bbox_y2"][3])
    # Row 4 went to shard 4 % 3 = 1 as that shard's second record (after row 1).
    assert loaded["record_file"][4] == shards[1] and loaded["record_index"].tolist() == [0, 0, 0, 1, 1, 1, 2]
    images = read_all(loaded)
    assert sorted(images) == list(range(7))
    for row, path in enumerate(table["path"]):
        assert images[row] == file_bytes(path)  # the files' own bytes, never re-encoded
    assert images[0][:8] == b"\x89PNG\r\n\x1a\n" and images[1][:2] == b"\xff\xd8"


def test_subset_table_reads_exactly_its_rows(table, tmp_path):
    out = str(tmp_path / "shards")
    tfrecord.write(table, out, shards=3, root=table.attrs["root"])
    subset = load("tfrecord", out).iloc[::2]
    images = read_all(subset)
    assert sorted(images) == [0, 1, 2, 3]
    for row in range(4):
        assert images[row] == file_bytes(table["path"].iloc[2 * row])
    # A file table yields the same (row, bytes) pairs, in table order.
    rows = [(int(r), b) for r, b in tfrecord.encoded_images(table.iloc[::2]).as_numpy_iterator()]
    assert rows == sorted(images.items())


def test_file_url_root_goes_through_gfile(table, tmp_path):
    # gs:// is not reachable from the tests; file:// takes the same tf.io.gfile URL code paths
    # (scheme-aware joins, glob, rename, TFRecordDataset on a URL) that gs:// does.
    url = "file://" + str(tmp_path / "remote")
    shards = tfrecord.write(table, url, shards=2, root=table.attrs["root"])
    assert shards[0] == url + "/train-00000-of-00002.tfrecord" and os.path.isfile(tmp_path / "remote" / "train.json")
    loaded = load("tfrecord", url + "/")
    assert_same_rows(loaded, table)
    assert loaded["record_file"].str.startswith(url + "/train-").all()
    images = read_all(loaded.iloc[1::3])
    assert images == {0: file_bytes(table["path"][1]), 1: file_bytes(table["path"][4])}
    with pytest.raises(UserError, match="train-00000-of-00002.tfrecord already exists"):
        tfrecord.write(table, url, shards=2)


def test_existing_shards_are_refused_unless_overwrite_and_stale_ones_removed(table, tmp_path):
    out = tmp_path / "shards"
    tfrecord.write(table, str(out), shards=3)
    before = (out / "train-00001-of-00003.tfrecord").read_bytes()
    with pytest.raises(UserError, match=r"shards/train-00000-of-00003\.tfrecord already exists \(4 file\(s\) of split 'train'"):
        tfrecord.write(table, str(out), shards=3)
    assert (out / "train-00001-of-00003.tfrecord").read_bytes() == before
    tfrecord.write(table.iloc[:4], str(out), shards=2, overwrite=True)
    assert sorted(os.listdir(out)) == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord", "train.json"]
    assert len(load("tfrecord", str(out))) == 4
    tfrecord.write(table, str(out), shards=1, split="test")  # another split is not in the way
    assert load("tfrecord", str(out), "test")["image_id"].tolist() == [f"id-{i}" for i in range(7)]


def test_a_failed_write_leaves_no_shard_under_a_final_name(table, tmp_path, monkeypatch):
    calls = []

    def failing_example(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt  # the run is stopped mid-write
        return original(*args)

    original = tfrecord._example
    monkeypatch.setattr(tfrecord, "_example", failing_example)
    with pytest.raises(KeyboardInterrupt):
        tfrecord.write(table, str(tmp_path / "shards"), shards=2)
    assert os.listdir(tmp_path / "shards") == []


def test_missing_and_corrupt_files_are_data_errors_naming_them(table, tmp_path):
    out = tmp_path / "shards"
    with pytest.raises(DataError, match=r"shards/train\.json: TFRecord index not found"):
        load("tfrecord", str(out))
    tfrecord.write(table, str(out), shards=2)
    with pytest.raises(DataError, match=r"val\.json: TFRecord index not found.*splits here: train"):
        load("tfrecord", str(out), "val")
    shard = out / "train-00001-of-00002.tfrecord"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside an image: the record's CRC no longer matches
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"train-00001-of-00002\.tfrecord: corrupt TFRecord shard"):
        load("tfrecord", str(out))
    shard.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(DataError, match=r"train-00001-of-00002\.tfrecord: corrupt TFRecord shard"):
        load("tfrecord", str(out))
    shard.unlink()
    with pytest.raises(DataError, match=r"train-00001-of-00002\.tfrecord: TFRecord shard not found \(listed in .*train\.json\)"):
        load("tfrecord", str(out))
    (out / "train.json").write_text("{not json")
    with pytest.raises(DataError, match=r"train\.json: not a TFRecord index"):
        load("tfrecord", str(out))


def test_more_shards_than_rows_gives_one_row_per_shard(table, tmp_path):
    shards = tfrecord.write(table.iloc[:3], str(tmp_path / "shards"), shards=8)
    assert [os.path.basename(s) for s in shards] == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    loaded = load("tfrecord", str(tmp_path / "shards"))
    assert loaded["record_index"].tolist() == [0, 0, 0]
    assert read_all(loaded) == {i: file_bytes(table["path"][i]) for i in range(3)}


def test_task_to_tfrecord_writes_every_split_and_refuses_to_overwrite(tmp_path, capsys):
    for split, names in (("train", ["a/1.png", "a/2.png", "b/3.png"]), ("test", ["b/4.png"])):
        for i, name in enumerate(names):
            path = tmp_path / "flowers" / split / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(image_bytes(i, "PNG"))
    args = [f"runs_root={tmp_path}/runs", "task=to_tfrecord", "data.format=imagefolder",
            f"data.root={tmp_path}/flowers", "data.tfrecord_shards=2"]
    assert main(args) == 0
    out = tmp_path / "runs" / "fivek" / "default" / "tfrecords"
    printed = capsys.readouterr().out
    assert "wrote train: 3 rows in 2 shard(s)" in printed and "wrote test: 1 rows in 1 shard(s)" in printed
    train, test = load("tfrecord", str(out)), load("tfrecord", str(out), "test")
    assert train["path"].tolist() == ["train/a/1.png", "train/a/2.png", "train/b/3.png"]
    assert train["label"].tolist() == [0, 0, 1] and train.attrs["classes"] == ["a", "b"]
    assert test["class_name"].tolist() == ["b"] and read_all(test) == {0: image_bytes(0, "PNG")}
    assert main(args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "train-00000-of-00002.tfrecord already exists" in line
    assert "export.overwrite=true" in line
    assert main([*args, "export.overwrite=true", "data.tfrecord_shards=1"]) == 0
    assert sorted(os.listdir(out)) == ["test-00000-of-00001.tfrecord", "test.json", "train-00000-of-00001.tfrecord", "train.json"]


def test_encoded_images_refuses_a_record_listed_twice(table, tmp_path):
    tfrecord.write(table, str(tmp_path / "shards"), shards=2)
    loaded = load("tfrecord", str(tmp_path / "shards"))
    with pytest.raises(DataError, match="lists a record twice"):
        tfrecord.encoded_images(loaded.iloc[[0, 1, 0]])
    assert tf.io.gfile.exists(str(tmp_path / "shards" / "train.json"))  # nothing was touched


def test_a_tfrecord_table_trains_on_the_same_pixels_as_its_files(table, tmp_path):
    from keras_fgvc.data.pipeline import PipelineSpec, build

    tfrecord.write(table, str(tmp_path / "records"), shards=3, root=table.attrs["root"])
    records = load("tfrecord", str(tmp_path / "records"))
    labelled = [i for i, v in enumerate(LABELS) if not np.isnan(v)]

    def images_and_labels(rows, cache, training):
        spec = PipelineSpec(8, 3, targets={"logits": "label"}, cache=cache, cache_dir=str(tmp_path / "cache"))
        batches = list(build(rows, spec, training=training))
        return (np.concatenate([i["image"].numpy() for i, _ in batches]),
                np.concatenate([t["logits"].numpy() for _, t in batches]))

    expected, expected_labels = images_and_labels(table.iloc[labelled], cache=False, training=False)
    for cache in (True, False):
        images, labels = images_and_labels(records.iloc[labelled], cache=cache, training=False)
        if not cache:  # a stream arrives in shard order: compare as sets of (label, image)
            order, expected_order = np.lexsort(images.reshape(len(images), -1).T), np.lexsort(
                expected.reshape(len(expected), -1).T)
            images, labels = images[order], labels[order]
            expected_sorted, expected_labels_sorted = expected[expected_order], expected_labels[expected_order]
        else:
            expected_sorted, expected_labels_sorted = expected, expected_labels
        np.testing.assert_array_equal(images, expected_sorted)
        np.testing.assert_array_equal(labels, expected_labels_sorted)
