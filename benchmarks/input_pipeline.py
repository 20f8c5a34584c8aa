"""Each pipeline's full training input vs decode + resize alone, on the same 480x640 JPEG files.

Rows, side by side in one run (ratios are what we track; absolute images/s drift on shared machines):

1. decode + resize through ``data.pipeline.build`` without the cache: the reference (1.0x);
2. each preset's full training input (``hotel_id_train``, ``cars``, ``vipriors`` with CutMix) on
   the same files, decoding every epoch (goal: >= 0.5x of the reference);
3. the same inputs after the first epoch, reading the decoded-pixel cache (``data.pixel_cache``);
4. vipriors with its random-resized crop taken while decoding (``PipelineSpec.decode_crop``:
   JPEGs decode only the window) instead of after a full decode.

    python benchmarks/input_pipeline.py           # 224 px, batch 32, 10 s per row
    python benchmarks/input_pipeline.py --smoke   # tiny sizes (CI)
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from keras_fgvc.augment import presets  # noqa: E402
from keras_fgvc.data.pipeline import PipelineSpec, build  # noqa: E402

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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for CI")
    args = parser.parse_args()
    size, batch, budget, count, (height, width) = (
        (32, 8, 0.5, 16, (60, 80)) if args.smoke else (224, 32, 10.0, 256, (480, 640)))
    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        table = write_photos(folder, count, height, width)
        base = dict(image_size=size, batch_size=batch, targets={"labels": "label"}, num_classes=NUM_CLASSES,
                    drop_remainder=True, cache_dir=os.path.join(folder, "cache"))
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
    print(f"training input in tf.data: {size} px, batch {batch}, {count} JPEG files of {height}x{width}, "
          f"{os.cpu_count()} CPU cores{' (smoke)' if args.smoke else ''}")
    print(f"{'input':<40} {'images/s':>10} {'ratio':>8} {'goal':>8} {'met':>4}")
    for name, ips, goal in rows:
        ratio = ips / reference
        met = "" if not goal else ("yes" if ratio >= float(goal.strip(">= x")) else "no")
        print(f"{name:<40} {ips:>10.1f} {ratio:>7.2f}x {goal:>8} {met:>4}")


if __name__ == "__main__":
    main()
