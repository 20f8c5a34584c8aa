"""Each pipeline's full training input vs decode + resize alone, on the same 480x640 JPEG files.

Rows, side by side in one run (ratios are what we track; absolute images/s drift on shared machines):

1. decode + resize through ``data.pipeline.build`` without the cache: the reference (1.0x);
2. each preset's full training input (``hotel_id_train``, ``cars``, ``vipriors`` with CutMix) on
   the same files, decoding every epoch (goal: >= 0.5x of the reference);
3. the same inputs after the first epoch, reading the decoded-pixel cache (``data.pixel_cache``);
4. vipriors with its random-resized crop taken while decoding (``PipelineSpec.decode_crop``:
   JPEGs decode only the window) instead of after a full decode;
5. the cars input with our one-warp ``RandomAffine`` vs the same augmentation written with keras
   core layers (rotation, translation, zoom and shear: four warps), the peer a user would write
   (goal: >= 1.0x, the reason the layer exists; DESIGN.md convention 5).

    python benchmarks/input_pipeline.py           # 224 px, batch 32, 10 s per row
    python benchmarks/input_pipeline.py --smoke   # tiny sizes (CI)
"""

import argparse
import math
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from _record import emit, goal_met, result_row
from PIL import Image

from keras_fgvc.augment import presets
from keras_fgvc.data.pipeline import PipelineSpec, build

PRESETS = ("hotel_id_train", "cars", "vipriors")
NUM_CLASSES = 10


def write_photos(folder, count, height, width, seed=0):
    """Photo-like JPEGs (smooth colour fields + texture) and their Table."""
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        coarse = rng.uniform(0, 255, (6, 8, 3)).astype("float32")
        smooth = tf.image.resize(coarse[None], (height, width), method="bicubic")[0].numpy()
        pixels = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype("uint8")
        path = os.path.join(folder, f"{index:04d}.jpg")
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return pd.DataFrame({"path": paths, "label": np.arange(count) % NUM_CLASSES})


def images_per_second(dataset, batch_size, min_batches, budget_s):
    """Throughput after one warm-up batch (tracing); at least ``min_batches`` or ``budget_s`` seconds."""
    iterator = iter(dataset.repeat())
    next(iterator)
    start, batches = time.perf_counter(), 0
    while batches < min_batches or time.perf_counter() - start < budget_s:
        next(iterator)
        batches += 1
    return batches * batch_size / (time.perf_counter() - start)


def training_input(table, spec, preset, drop_crop=False):
    """The dataset a stage trains on: image steps in tf.data, label mixing on the dicts."""
    steps = presets.get(preset)
    if drop_crop:  # the crop already happened while decoding
        steps = [step for step in steps if "RandomResizedCrop" not in step]
    image_steps, mixing_steps = presets.split_label_mixing(steps)
    augment = presets.build(image_steps) if image_steps else None
    return build(table, spec, training=True, augment=augment, mixing=presets.build_mixing(mixing_steps))


def keras_core_cars():
    """The cars preset with its ``RandomAffine`` written as keras core layers, one warp per factor
    (fill "constant" as ours; the flip stays first in the preset's part, which is the same
    distribution since every geometric range is symmetric)."""
    return keras.Sequential([
        keras.layers.RandomRotation(25 / 360, fill_mode="constant"),  # a fraction of a full turn
        keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant"),
        keras.layers.RandomZoom((-0.1, 0.1), fill_mode="constant"),  # scale 0.9-1.1
        keras.layers.RandomShear(x_factor=math.tan(math.radians(8)), fill_mode="constant"),
        presets.build(presets.without(presets.get("cars"), ["RandomAffine"])),
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for CI")
    args = parser.parse_args()
    size, batch, budget, count, (height, width) = (
        (32, 8, 0.5, 16, (60, 80)) if args.smoke else (224, 32, 10.0, 256, (480, 640)))
    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        table = write_photos(folder, count, height, width)
        base = {"image_size": size, "batch_size": batch, "targets": {"labels": "label"}, "num_classes": NUM_CLASSES,
                "drop_remainder": True, "cache_dir": os.path.join(folder, "cache")}
        streamed = PipelineSpec(**base, cache=False)
        cached = PipelineSpec(**base, cache=True)
        cropped = PipelineSpec(**base, cache=False, decode_crop=((0.08, 1.0), (3 / 4, 4 / 3)))
        reference = images_per_second(build(table, streamed, training=True), batch, 3, budget)
        rows = [("decode + resize (reference)", reference, "")]
        for preset in PRESETS:
            rows.append((f"{preset}: decode every epoch", images_per_second(
                training_input(table, streamed, preset), batch, 3, budget), ">= 0.5x"))
        for preset in PRESETS:
            rows.append((f"{preset}: cached pixels", images_per_second(
                training_input(table, cached, preset), batch, 3, budget), ""))
        rows.append(("vipriors: crop while decoding", images_per_second(
            training_input(table, cropped, "vipriors", drop_crop=True), batch, 3, budget), ""))
        core_cars = images_per_second(build(table, streamed, training=True, augment=keras_core_cars()),
                                      batch, 3, budget)
    print(f"training input in tf.data: {size} px, batch {batch}, {count} JPEG files of {height}x{width}, "
          f"{os.cpu_count()} CPU cores{' (smoke)' if args.smoke else ''}")
    print(f"{'input':<40} {'images/s':>10} {'ratio':>8} {'goal':>8} {'met':>4}")
    for name, ips, goal in rows:
        ratio = ips / reference
        met = {True: "yes", False: "no", None: ""}[goal_met(ratio, goal)]
        print(f"{name:<40} {ips:>10.1f} {ratio:>7.2f}x {goal:>8} {met:>4}")
    ours_cars = {name: ips for name, ips, _ in rows}["cars: decode every epoch"]
    print(f"\ncars, same flip + affine + colour jitter: keras_fgvc RandomAffine {ours_cars:.1f} images/s, "
          f"keras core layers {core_cars:.1f} images/s: {ours_cars / core_cars:.2f}x (goal >= 1.0x)")
    emit("input_pipeline", [
        *[result_row(f"{name} / decode + resize", ips / reference, goal,
                     f"{ips:.1f} vs {reference:.1f} images/s, {size} px, JPEG {height}x{width}")
          for name, ips, goal in rows[1:]],
        result_row("cars: keras_fgvc RandomAffine / keras core rotation+translation+zoom+shear",
                   ours_cars / core_cars, ">= 1.0x", f"{ours_cars:.1f} vs {core_cars:.1f} images/s"),
    ])


if __name__ == "__main__":
    main()
