"""The Hotel-ID demo generator: Kaggle's layout, determinism, occluded test images, learnable hotels."""

import os
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from keras_fgvc.data import synthetic
from keras_fgvc.data.masks import load_mask_bank
from keras_fgvc.data.sources import hotel_id as source

SMALL = {"num_hotels": 12, "images_per_hotel": 8, "image_size": 64, "num_masks": 16, "test_images": 48}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("hotel_id")
    train_dir = synthetic.make("hotel_id", str(root), seed=0, **SMALL)
    assert train_dir == str(root / "train_images")
    return root


def red(pixels):
    """Occlusion red after JPEG: strongly red pixels."""
    pixels = np.asarray(pixels, int)
    return (pixels[..., 0] > 160) & (pixels[..., 1] < 90) & (pixels[..., 2] < 90)


def test_layout_counts_and_non_contiguous_integer_hotel_ids(demo):
    hotels = sorted(os.listdir(demo / "train_images"), key=int)
    assert len(hotels) == 12 and all(h.isdigit() and str(int(h)) == h for h in hotels)
    ids = [int(h) for h in hotels]
    assert np.diff(ids).max() > 1 and min(ids) >= 1  # gaps, like Kaggle's ids
    for hotel in hotels:
        files = os.listdir(demo / "train_images" / hotel)
        assert len(files) == 8 and all(len(f) == 20 and f.endswith(".jpg") for f in files)
    assert sorted(os.listdir(demo / "train_masks")) == [f"{i:05d}.png" for i in range(16)]
    assert len(os.listdir(demo / "test_images")) == 48
    with Image.open(next((demo / "test_images").iterdir())) as image:
        assert image.format == "JPEG" and image.size == (64, 64) and image.mode == "RGB"
    truth = pd.read_csv(demo / "test_truth.csv")
    assert list(truth.columns) == ["image_id", "hotel_id"] and len(truth) == 48
    assert sorted(truth["image_id"]) == sorted(os.listdir(demo / "test_images"))
    assert set(truth["hotel_id"]) <= set(ids) and truth["hotel_id"].nunique() >= 8
    submission = pd.read_csv(demo / "sample_submission.csv")
    assert list(submission.columns) == ["image_id", "hotel_id"] and len(submission) == 48
    assert all(len(row.split()) == 5 and {int(h) for h in row.split()} <= set(ids) for row in submission["hotel_id"])


def test_source_reads_the_demo(demo):
    train = source.load(str(demo))
    assert train.attrs["classes"] == sorted(int(h) for h in os.listdir(demo / "train_images"))
    assert len(train) == 96 and np.bincount(train["label"]).tolist() == [8] * 12
    assert train["image_id"].is_unique
    truth = source.load_truth(str(demo))
    expected = pd.read_csv(demo / "test_truth.csv").set_index("image_id")["hotel_id"]
    assert truth["hotel_id"].tolist() == expected[truth["image_id"]].tolist()


def test_masks_are_red_rectangles_of_arbitrary_size_in_both_kaggle_styles(demo):
    paths = source.mask_paths(str(demo))
    modes, sizes = set(), set()
    for path in paths:
        with Image.open(path) as image:
            modes.add(image.mode)
            sizes.add(image.size)
    assert modes == {"RGBA", "RGB"} and len(sizes) == len(paths)
    bank = load_mask_bank(paths, mask_size=64)
    for mask in bank:
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        # One solid rectangle: its rows and columns are contiguous and every pixel between them is set.
        assert np.all(np.diff(rows) == 1) and np.all(np.diff(cols) == 1) and mask.sum() == len(rows) * len(cols)
        assert 0.05 <= mask.mean() <= 0.27  # sides 1/4..1/2 of the mask's sides


def test_test_images_carry_one_of_the_masks_and_train_images_none(demo):
    bank = load_mask_bank(source.mask_paths(str(demo)), mask_size=64)  # the generator scales masks the same way
    for path in source.load(str(demo), "test")["path"]:
        with Image.open(path) as image:
            occluded = red(image.convert("RGB"))
        best_iou = max((occluded & mask).sum() / (occluded | mask).sum() for mask in bank)
        assert best_iou > 0.85, path  # measured >= 0.93 (JPEG blurs the rectangle's edges)
    for path in source.load(str(demo))["path"]:
        with Image.open(path) as image:
            assert red(image.convert("RGB")).mean() < 0.02, path  # measured <= 0.004


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    def files(name, seed):
        root = tmp_path / name
        synthetic.make("hotel_id", str(root), seed=seed, num_hotels=3, images_per_hotel=2, image_size=32,
                       num_masks=2, test_images=2)
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    first, again, other = files("a", 5), files("b", 5), files("c", 6)
    assert first == again and len(first) == 3 * 2 + 2 + 2 + 2
    assert set(first) != set(other)  # other hotel ids and image names
    first_jpegs = sorted(v for k, v in first.items() if k.startswith("train_images"))
    other_jpegs = sorted(v for k, v in other.items() if k.startswith("train_images"))
    assert not set(first_jpegs) & set(other_jpegs)


def test_default_size_is_quick_and_counts_follow_the_arguments(tmp_path):
    start = time.perf_counter()
    synthetic.make("hotel_id", str(tmp_path), seed=1)
    elapsed = time.perf_counter() - start
    assert elapsed < 30, elapsed  # measured ~4 s on 2 shared cores
    hotels = os.listdir(tmp_path / "train_images")
    assert len(hotels) == 40 and all(len(os.listdir(tmp_path / "train_images" / h)) == 16 for h in hotels)
    assert len(os.listdir(tmp_path / "train_masks")) == 64 and len(os.listdir(tmp_path / "test_images")) == 80
    with Image.open(next((tmp_path / "test_images").iterdir())) as image:
        assert image.size == (128, 128)


def test_a_nearest_neighbour_on_tiny_pixels_finds_the_hotel_well_above_chance(demo):
    """1-NN (cosine) on 16x16 pixels: held-out photos against the other half of each hotel, and the
    occluded test photos against all training photos. Chance is 1/12 = 0.083; measured on this demo
    (seed 0): 0.58 held-out, 0.48 occluded; over seeds 0-7: 0.46-0.79 and 0.42-0.65."""
    from sklearn.neighbors import KNeighborsClassifier

    def tiny(path):
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB").resize((16, 16), Image.BILINEAR), np.float64).ravel() / 255

    train, test = source.load(str(demo)), source.load_truth(str(demo))
    x, y = np.stack([tiny(p) for p in train["path"]]), train["label"].to_numpy()
    gallery = (train.groupby("label").cumcount() % 2 == 0).to_numpy()
    knn = KNeighborsClassifier(1, metric="cosine")
    held_out = (knn.fit(x[gallery], y[gallery]).predict(x[~gallery]) == y[~gallery]).mean()
    x_test = np.stack([tiny(p) for p in test["path"]])
    occluded = (knn.fit(x, y).predict(x_test) == test["label"].to_numpy()).mean()
    chance = 1 / 12
    assert held_out > 3.5 * chance, held_out
    assert occluded > 3 * chance, occluded
