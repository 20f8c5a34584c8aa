"""The 5K demo generator: Zalo's columns, missing-label rates, hidden truth, visible labels."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from keras_fgvc.data import synthetic
from keras_fgvc.data.sources import fivek as fivek_source
from keras_fgvc.data.synthetic import fivek as generator


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("fivek")
    synthetic.make("fivek", str(root), seed=3, num_images=600, image_size=48, test_images=20)
    return root


def test_columns_and_files_follow_the_zalo_layout(demo):
    meta = pd.read_csv(demo / "train_meta.csv")
    assert list(meta.columns) == ["image_id", "fname", "mask", "distancing", "5k"]
    assert len(meta) == 600 and meta["image_id"].is_unique
    test = pd.read_csv(demo / "public_test_meta.csv")
    assert list(test.columns) == ["image_id", "fname"] and len(test) == 20
    image = Image.open(demo / "images" / meta["fname"].iloc[0])
    assert image.format == "JPEG" and image.size == (48, 48) and image.mode == "RGB"


def test_missing_rates_match_zalo_and_never_both(demo):
    meta = pd.read_csv(demo / "train_meta.csv")
    miss_mask, miss_dist = meta["mask"].isna(), meta["distancing"].isna()
    # Zalo: 734 / 4175 = 0.176 and 1273 / 4175 = 0.305; binomial sd at n=600 is ~0.016 / 0.019.
    assert abs(miss_mask.mean() - 734 / 4175) < 0.05
    assert abs(miss_dist.mean() - 1273 / 4175) < 0.06
    assert not (miss_mask & miss_dist).any()
    assert (meta["5k"].isna() == (miss_mask | miss_dist)).all()


def test_truth_holds_every_hidden_label_and_agrees_with_the_visible_ones(demo):
    meta = pd.read_csv(demo / "train_meta.csv")
    truth = pd.read_csv(demo / "truth.csv")
    assert truth[["mask", "distancing", "5k"]].notna().all().all()
    assert (truth["5k"] == (truth["mask"] * truth["distancing"])).all()
    for label in ("mask", "distancing", "5k"):
        shown = meta[label].notna()
        assert (meta.loc[shown, label] == truth.loc[shown, label]).all()
    assert 0.35 < truth["mask"].mean() < 0.65 and 0.35 < truth["distancing"].mean() < 0.65


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        synthetic.make("fivek", str(tmp_path / name), seed=seed, num_images=4, image_size=32)
    read = lambda name: (tmp_path / name / "images" / "1.jpg").read_bytes()  # noqa: E731
    assert read("a") == read("b") and read("a") != read("c")


def _face_pixels(mask, seed, size=160):
    """(lower-face pixel, skin-or-mask) of each person, drawn with distancing=1 so no body covers a face."""
    image = np.asarray(generator.draw_scene(np.random.default_rng(seed), size, mask=mask, distancing=1))
    # draw_scene consumes the background draws first, so replay them to find the layout it used.
    rng = np.random.default_rng(seed)
    generator._background(generator.Image.new("RGB", (size, size)), rng)
    people = generator.layout(rng, size, distancing=1)
    pixels = []
    for person in people:
        cx, cy, head = generator.face(*person)
        pixels.append(tuple(int(v) for v in image[int(round(cy + 0.35 * head)), int(round(cx))]))
    return pixels


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_every_face_wears_a_mask_exactly_when_mask_is_1(seed):
    assert all(p in generator.MASK_COLOURS for p in _face_pixels(1, seed))
    assert all(p in generator.SKIN_TONES for p in _face_pixels(0, seed))


@pytest.mark.parametrize("distancing", [0, 1])
def test_gaps_between_neighbours_follow_the_distancing_label(distancing):
    for seed in range(20):
        people = generator.layout(np.random.default_rng(seed), 96, distancing)
        assert 2 <= len(people) <= 3
        for (x0, _, width, _), (x1, _, _, _) in zip(people, people[1:]):
            gap = (x1 - x0) / width - 1  # in body widths
            if distancing:
                assert 0.6 - 1e-9 <= gap <= 1.2 + 1e-9
            else:
                assert -0.3 - 1e-9 <= gap <= 0.05 + 1e-9
        assert people[0][0] >= 0 and people[-1][0] + people[-1][2] <= 96


def test_unknown_generator_is_a_clear_error(tmp_path):
    with pytest.raises(KeyError, match="fivek"):
        synthetic.make("nope", str(tmp_path))


def test_source_reads_the_demo_with_absolute_paths(demo):
    table = fivek_source.load(str(demo))
    assert table["path"].map(lambda p: p.startswith("/")).all()
    assert set(table["mask"].dropna().unique()) <= {0.0, 1.0}
