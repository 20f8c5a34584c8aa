"""``task=preview_augment``: a PNG grid of a pipeline's augmented training images.

The grid shows what the model sees during training: the pipeline's image steps (the preset or
``augment.steps``) applied with ``training=True`` to a seeded sample of training images. Label
mixing (CutMix/MixUp) needs labels and is left out of the preview.
"""

import importlib
import os

import numpy as np

from keras_fgvc.augment import presets
from keras_fgvc.data.pipeline import PipelineSpec, build
from keras_fgvc.data.prepare import source_table
from keras_fgvc.errors import UserError

NUM_IMAGES = 16


def run(cfg) -> str:
    """Write ``<run_dir>/plots/augment.png`` and return its path."""
    import keras

    from keras_fgvc.pipelines import DRIVERS
    from keras_fgvc.tracking.plots_augment import augmentation_grid

    if cfg.pipeline not in DRIVERS:
        raise UserError(f"pipeline '{cfg.pipeline}' has no driver yet; available: {', '.join(sorted(DRIVERS))}")
    driver = importlib.import_module(DRIVERS[cfg.pipeline])
    table = source_table(cfg, driver.data_root(cfg))  # the training split's rows, as the driver finds them
    rows = np.random.default_rng(cfg.seed).permutation(len(table))[:NUM_IMAGES]
    images = next(iter(build(table.iloc[np.sort(rows)], PipelineSpec(cfg.data.image_size, NUM_IMAGES, cache=False), training=False)))["image"]
    keras.utils.set_random_seed(cfg.seed)
    steps = presets.without(presets.of_config(cfg.augment), cfg.augment.skip)  # what training applies
    image_steps, _ = presets.split_label_mixing(steps)
    # A driver whose augmentation occludes with real masks (Hotel-ID) hands over its mask bank.
    bank = driver.mask_bank(cfg) if hasattr(driver, "mask_bank") else None
    augmented = presets.build(image_steps, mask_bank=bank)(images, training=True)
    grid = np.clip(np.round(np.asarray(augmented)), 0, 255).astype(np.uint8)
    path = augmentation_grid(grid, os.path.join(cfg.run_dir, "plots", "augment.png"))
    print(f"wrote {path} ({len(grid)} images, preset '{cfg.augment.preset}', {len(image_steps)} image steps)")
    return path
