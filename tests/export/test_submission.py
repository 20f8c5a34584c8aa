import os

import numpy as np
import pytest

from keras_fgvc.evaluation import rank_classes
from keras_fgvc.export.submission import (
    atomic_open,
    write_fivek_predictions,
    write_hotel_id_submission,
    write_predictions_csv,
)


def test_hotel_id_submission_bytes(tmp_path):
    path = tmp_path / "submission.csv"
    ranked = np.array([[3, 14, 15, 92, 65, 35], [2, 7, 1, 8, 28, 18]], dtype=np.int64)
    write_hotel_id_submission(path, np.array(["abc.jpg", "def.jpg"]), ranked)
    assert path.read_bytes() == b"image_id,hotel_id\nabc.jpg,3 14 15 92 65\ndef.jpg,2 7 1 8 28\n"


def test_hotel_id_submission_drops_rank_classes_padding(tmp_path):
    gallery = np.eye(3, dtype=np.float32)
    labels, _ = rank_classes(gallery[:1], gallery, np.array([101, 202, 303]), k=5)  # 3 hotels < k
    path = tmp_path / "submission.csv"
    write_hotel_id_submission(path, ["x.jpg"], labels)
    assert path.read_bytes() == b"image_id,hotel_id\nx.jpg,101 202 303\n"


def test_fivek_predictions_bytes(tmp_path):
    path = tmp_path / "predictions.csv"
    write_fivek_predictions(path, ["1.jpg", "2.jpg", "3.jpg"], np.array([1.0, 0.0, 1.0]))
    assert path.read_bytes() == b"fname,5k\n1.jpg,1\n2.jpg,0\n3.jpg,1\n"


def test_generic_predictions_bytes(tmp_path):
    path = tmp_path / "preds.csv"
    write_predictions_csv(path, ["a", "b"], [[0.9, 0.1], [0.25, 0.75]], class_names=["cat", "dog"], precision=3)
    assert path.read_bytes() == (
        b"id,label,score,p_cat,p_dog\n"
        b"a,cat,0.900,0.900,0.100\n"
        b"b,dog,0.750,0.250,0.750\n"
    )


def _ids_that_fail_after(n):
    for i in range(n):
        yield f"{i}.jpg"
    raise RuntimeError("disk full")


def test_failed_write_leaves_no_partial_file_and_keeps_old_one(tmp_path):
    path = tmp_path / "submission.csv"
    with pytest.raises(RuntimeError, match="disk full"):
        write_hotel_id_submission(path, _ids_that_fail_after(2), [[1, 2, 3, 4, 5]] * 5)
    assert os.listdir(tmp_path) == []  # neither the target nor a temporary file
    path.write_bytes(b"old")
    with pytest.raises(ValueError):  # lengths differ: detected only after the rows were written
        write_fivek_predictions(path, ["1.jpg", "2.jpg"], [1])
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["submission.csv"]


def test_atomic_open_replaces_on_success(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    with atomic_open(path) as handle:
        handle.write("new\n")
        assert not path.exists()  # not visible until the block completes
    assert path.read_bytes() == b"new\n"
