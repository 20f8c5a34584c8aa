"""The pipeline-independent tasks: preview_augment writes a reproducible grid; model_card prints a card."""

import numpy as np
import pytest
from PIL import Image

from keras_fgvc.config.compose import compose
from run import main


def overrides(root, *extra):
    return ["smoke=true", f"runs_root={root}/runs", f"data.demo_root={root}/demo", *extra]


def test_preview_augment_grid_is_seeded_and_shows_sixteen_images(tmp_path, capsys):
    paths = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        assert main(overrides(tmp_path, "task=preview_augment", f"name={name}", f"seed={seed}")) == 0
        paths.append(f"{compose(overrides(tmp_path, f'name={name}')).run_dir}/plots/augment.png")
    assert "16 images, preset 'fivek'" in capsys.readouterr().out
    a, b, c = (np.asarray(Image.open(p).convert("RGB")) for p in paths)
    assert a.shape == (2 * 160, 8 * 160, 3)  # 2 rows x 8 columns of 2-inch cells at 80 dpi
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c).mean() > 1.0


def test_preview_without_augmentation_shows_the_images_themselves(tmp_path):
    assert main(overrides(tmp_path, "task=preview_augment", "augment.preset=none", "name=plain")) == 0
    assert main(overrides(tmp_path, "task=preview_augment", "name=augmented")) == 0
    plain = np.asarray(Image.open(f"{compose(overrides(tmp_path, 'name=plain')).run_dir}/plots/augment.png").convert("RGB"))
    augmented = np.asarray(Image.open(f"{compose(overrides(tmp_path, 'name=augmented')).run_dir}/plots/augment.png").convert("RGB"))
    assert plain.shape == augmented.shape and np.abs(plain.astype(int) - augmented).mean() > 1.0


@pytest.mark.parametrize("pipeline", ["cars", "hotel_id", "vipriors", "squeeze"])
def test_preview_augment_works_for_every_pipeline(tmp_path, capsys, pipeline):
    args = overrides(tmp_path, f"pipeline={pipeline}", "task=preview_augment")
    assert main(args) == 0
    cfg = compose(args)
    assert f"(16 images, preset '{cfg.augment.preset}'" in capsys.readouterr().out
    grid = np.asarray(Image.open(f"{cfg.run_dir}/plots/augment.png").convert("RGB"))
    assert grid.shape == (2 * 160, 8 * 160, 3)


def test_model_card_task_prints_the_parameter_count(tmp_path, capsys):
    from keras_fgvc.models import build_model

    args = overrides(tmp_path, "task=model_card", "model.backbone=ghostnet_050")
    assert main(args) == 0
    printed = capsys.readouterr().out
    params = build_model(compose(args), 2).count_params()
    assert f"{params:,}" in printed and "MACs" in printed
