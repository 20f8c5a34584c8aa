"""Hotel-ID 2022 source on fixture trees in Kaggle's layout, and the mask bank reader (data/masks.py)."""

import os

import numpy as np
import pytest
from PIL import Image

from keras_fgvc.data.masks import load_mask_bank
from keras_fgvc.data.sources import hotel_id, load
from keras_fgvc.errors import DataError


def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"\xff\xd8")  # the source never decodes: a JPEG signature is enough


def tree(root, files):
    for relative in files:
        touch(os.path.join(root, relative))
    return str(root)


KAGGLE = ["train_images/200/b.jpg", "train_images/200/a.jpg", "train_images/9/x.jpg", "train_images/10/c.JPG",
          "train_images/10/notes.txt", "train_images/10/.hidden.jpg", "train_masks/2.png", "train_masks/1.png",
          "train_masks/readme.txt", "test_images/t2.jpg", "test_images/t1.jpg"]


def test_train_labels_follow_numerically_sorted_hotel_ids(tmp_path):
    root = tree(tmp_path, KAGGLE)
    table = load("hotel_id", root)
    # "9" < "10" < "200" as numbers (as strings "10" < "200" < "9").
    assert table.attrs["classes"] == [9, 10, 200]
    assert table["label"].tolist() == [0, 1, 2, 2] and table["label"].dtype == np.int64
    assert table["hotel_id"].tolist() == [9, 10, 200, 200]
    assert table["image_id"].tolist() == ["x.jpg", "c.JPG", "a.jpg", "b.jpg"]
    assert table["path"].tolist() == [str(tmp_path / "train_images" / p) for p in ("9/x.jpg", "10/c.JPG", "200/a.jpg",
                                                                                    "200/b.jpg")]
    assert list(table.columns) == ["path", "label", "hotel_id", "image_id"]


def test_test_split_is_unlabelled_and_shares_the_classes(tmp_path):
    root = tree(tmp_path, KAGGLE)
    table = load("hotel_id", root, "test")
    assert table["image_id"].tolist() == ["t1.jpg", "t2.jpg"]
    assert table["path"].tolist() == [str(tmp_path / "test_images" / n) for n in ("t1.jpg", "t2.jpg")]
    assert table["label"].dtype == np.float64 and table["label"].isna().all()
    assert table.attrs["classes"] == [9, 10, 200]
    assert hotel_id.load_truth(root) is None  # real data has no truth file


def test_names_that_are_not_plain_numbers_stay_strings(tmp_path):
    padded = tree(tmp_path / "padded", ["train_images/010/a.jpg", "train_images/9/a.jpg", "train_images/0100/a.jpg"])
    # All digits: numeric order, but "010" would lose its zero as an int, so the names are kept.
    assert load("hotel_id", padded).attrs["classes"] == ["9", "010", "0100"]
    named = tree(tmp_path / "named", ["train_images/b2/a.jpg", "train_images/a10/a.jpg", "train_images/7/a.jpg"])
    table = load("hotel_id", named)
    assert table.attrs["classes"] == ["7", "a10", "b2"] and table["hotel_id"].tolist() == ["7", "a10", "b2"]


@pytest.mark.parametrize("files, split, message", [
    ([], "train", r"nowhere: folder not found \(expected the Kaggle Hotel-ID layout"),
    (["test_images/a.jpg"], "train", r"train_images: folder not found \(expected the Kaggle Hotel-ID layout"),
    (["train_images/readme.txt"], "train", r"train_images: no hotel folders"),
    (["train_images/1/a.jpg", "train_images/2/notes.txt"], "train", r"train_images/2: hotel folder holds no images"),
    (["train_images/1/a.jpg", "train_images/stray.jpg"], "train",
     r"train_images/stray.jpg: image outside a hotel folder \(1 such files"),
    (["train_images/1/a.jpg"], "test", r"test_images: folder not found"),
    (["train_images/1/a.jpg", "test_images/notes.txt"], "test", r"test_images: no images"),
    (["train_images/1/a.jpg"], "val", r"hotel_id has splits train, test; got 'val'"),
])
def test_layout_errors_name_the_folder(tmp_path, files, split, message):
    root = tree(tmp_path / "data", files) if files else str(tmp_path / "nowhere")
    with pytest.raises(DataError, match=message):
        load("hotel_id", root, split)


def test_links_out_of_the_root_are_refused(tmp_path):
    root = tree(tmp_path / "data", ["train_images/1/a.jpg", "test_images/t.jpg"])
    touch(str(tmp_path / "outside" / "secret.jpg"))
    os.symlink(tmp_path / "outside" / "secret.jpg", tmp_path / "data" / "test_images" / "link.jpg")
    with pytest.raises(DataError, match=r"'.*test_images/link.jpg' leads outside the data root"):
        load("hotel_id", root, "test")
    os.symlink(tmp_path / "outside", tmp_path / "data" / "train_images" / "2")  # a whole hotel folder
    with pytest.raises(DataError, match=r"'.*train_images/2/secret.jpg' leads outside the data root"):
        load("hotel_id", root)


def test_mask_paths_are_the_sorted_pngs(tmp_path):
    root = tree(tmp_path, KAGGLE)
    assert hotel_id.mask_paths(root) == [str(tmp_path / "train_masks" / n) for n in ("1.png", "2.png")]
    with pytest.raises(DataError, match=r"train_masks: folder not found"):
        hotel_id.mask_paths(tree(tmp_path / "no_masks", ["train_images/1/a.jpg"]))
    with pytest.raises(DataError, match=r"train_masks: no .png masks"):
        hotel_id.mask_paths(tree(tmp_path / "jpg_masks", ["train_masks/a.jpg"]))


def test_truth_labels_the_test_split_and_names_bad_rows(tmp_path):
    root = tree(tmp_path, KAGGLE)
    (tmp_path / "test_truth.csv").write_text("image_id,hotel_id\nt2.jpg,9\nt1.jpg,200\n")
    truth = hotel_id.load_truth(root)
    assert truth["image_id"].tolist() == ["t1.jpg", "t2.jpg"]
    assert truth["label"].tolist() == [2, 0] and truth["hotel_id"].tolist() == [200, 9]
    for text, message in (("image_id,hotel_id\nt2.jpg,9\nt3.jpg,9\n", r"row 3: image 't3.jpg' is not in test_images"),
                          ("image_id,hotel_id\nt2.jpg,9\nt1.jpg,11\n", r"row 3: hotel_id '11' has no folder"),
                          ("image_id,hotel_id\nt2.jpg,9\n", r"no row for test image 't1.jpg' \(1 of 2 missing\)")):
        (tmp_path / "test_truth.csv").write_text(text)
        with pytest.raises(DataError, match=message):
            hotel_id.load_truth(root)


def save_png(path, pixels, mode):
    Image.fromarray(np.asarray(pixels, np.uint8), mode).save(path)
    return str(path)


def test_mask_bank_reads_alpha_where_transparent_and_red_where_opaque(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[4:12, 2:10] = (255, 0, 0, 255)
    rgba[0:2, 14:16] = (0, 0, 255, 200)  # any colour counts where the PNG is opaque enough
    rgba[14:16, 0:2] = (255, 0, 0, 100)  # mostly transparent: not occluded
    opaque = np.zeros((16, 16, 3), np.uint8)
    opaque[:, 8:] = (250, 10, 10)  # red
    opaque[0:2, 8:10] = (120, 0, 0)  # too dark
    opaque[2:4, 0:2] = (255, 200, 0)  # orange
    opaque[4:6, 0:2] = (255, 0, 255)  # magenta
    opaque_rgba = np.concatenate([opaque, np.full((16, 16, 1), 255, np.uint8)], -1)  # RGBA without transparency
    paths = [save_png(tmp_path / "a.png", rgba, "RGBA"), save_png(tmp_path / "b.png", opaque, "RGB"),
             save_png(tmp_path / "c.png", opaque_rgba, "RGBA")]
    bank = load_mask_bank(paths, mask_size=16)
    expected_a = rgba[..., 3] > 127
    expected_b = (opaque[..., 0] > 127) & (opaque[..., 1] < 128) & (opaque[..., 2] < 128)
    assert bank.dtype == bool and bank.shape == (3, 16, 16)
    np.testing.assert_array_equal(bank[0], expected_a)
    np.testing.assert_array_equal(bank[1], expected_b)
    np.testing.assert_array_equal(bank[2], expected_b)
    assert expected_b.sum() == 16 * 8 - 4 and expected_a.sum() == 64 + 4
    # Halving keeps the even-aligned rectangle exactly (nearest sampling).
    expected_small = np.zeros((8, 8), bool)
    expected_small[2:6, 1:5] = True
    expected_small[0, 7] = True  # the 2x2 blue block
    small = load_mask_bank([paths[0]], mask_size=8)
    np.testing.assert_array_equal(small[0], expected_small)


def test_mask_bank_errors_name_the_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"bad.png: cannot read mask image"):
        load_mask_bank([tmp_path / "bad.png"])
    good = np.zeros((8, 8, 3), np.uint8)
    save_png(tmp_path / "good.png", good, "RGB")
    truncated = (tmp_path / "good.png").read_bytes()[:30]
    (tmp_path / "cut.png").write_bytes(truncated)
    with pytest.raises(DataError, match=r"cut.png: cannot read mask image"):
        load_mask_bank([tmp_path / "good.png", tmp_path / "cut.png"])
    with pytest.raises(DataError, match=r"missing.png: mask file not found"):
        load_mask_bank([tmp_path / "missing.png"])
    with pytest.raises(DataError, match="no mask files given"):
        load_mask_bank([])
