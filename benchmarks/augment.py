"""Augmentation throughput inside tf.data, side by side on the same batch.

1. our batched RandAugment(2, 9) vs ``keras.layers.RandAugment`` (goal: >= 20x images/s);
2. JPEG decode + resize + the full ``hotel_id_train`` preset vs decode + resize only (goal: >= 0.5x).

    python benchmarks/augment.py            # 224 px, batch 32
    python benchmarks/augment.py --smoke    # tiny sizes, < 60 s (CI)
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf
from _record import emit, result_row

from keras_fgvc.augment import RandAugment, presets


def synthetic_images(count, size, seed=0):
    """Smooth colour fields plus texture: histogram and geometry ops see photo-like statistics."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (count, 8, 8, 3)).astype("float32")
    smooth = tf.image.resize(coarse, (size, size), method="bicubic").numpy()
    return np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype("uint8")


def images_per_second(dataset, batch_size, min_batches, budget_s):
    """Throughput after one warm-up batch (tracing); runs at least ``min_batches`` or ``budget_s`` seconds."""
    iterator = iter(dataset)
    next(iterator)
    start, batches = time.perf_counter(), 0
    while batches < min_batches or time.perf_counter() - start < budget_s:
        next(iterator)
        batches += 1
        if batches >= min_batches and time.perf_counter() - start >= budget_s:
            break
    return batches * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for CI")
    parser.add_argument("--source-size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"),
                        help="JPEG size before decode+resize (photos, not thumbnails; default 480 640)")
    args = parser.parse_args()
    size, batch, budget = (64, 8, 1.0) if args.smoke else (224, 32, 10.0)
    keras.utils.set_random_seed(0)
    images = synthetic_images(batch, size)
    autotune = tf.data.AUTOTUNE

    def repeated_batch():
        return tf.data.Dataset.from_tensors(tf.cast(images, tf.float32)).repeat()

    ours = RandAugment(num_ops=2, magnitude=9)
    core = keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.9)
    ours_ds = repeated_batch().map(lambda x: ours(x, training=True), num_parallel_calls=autotune).prefetch(2)
    core_ds = repeated_batch().map(lambda x: core(x, training=True), num_parallel_calls=autotune).prefetch(2)
    ours_ips = images_per_second(ours_ds, batch, 3, budget)
    core_ips = images_per_second(core_ds, batch, 1, budget)

    # Decode path: JPEG bytes of source photos, decoded and resized per image, then batched.
    source_h, source_w = (size + size // 4,) * 2 if args.smoke else args.source_size
    source = tf.image.resize(synthetic_images(batch, max(source_h, source_w), seed=1), (source_h, source_w))
    source = tf.cast(tf.round(source), tf.uint8).numpy()
    jpegs = [tf.io.encode_jpeg(image, quality=90).numpy() for image in source]

    def decoded():
        ds = tf.data.Dataset.from_tensor_slices(jpegs).repeat()
        ds = ds.map(lambda b: tf.image.resize(tf.io.decode_jpeg(b, channels=3), (size, size)),
                    num_parallel_calls=autotune)
        return ds.batch(batch, drop_remainder=True)

    augment = presets.build(presets.get("hotel_id_train"))
    plain_ds = decoded().prefetch(2)
    preset_ds = decoded().map(lambda x: augment(x, training=True), num_parallel_calls=autotune).prefetch(2)
    plain_ips = images_per_second(plain_ds, batch, 3, budget)
    preset_ips = images_per_second(preset_ds, batch, 3, budget)

    rows = [
        ("keras.layers.RandAugment(2, 0.9)", core_ips, 1.0, ""),
        ("keras_fgvc RandAugment(2, 9)", ours_ips, ours_ips / core_ips, ">= 20x"),
        ("decode + resize", plain_ips, 1.0, ""),
        ("decode + resize + hotel_id_train", preset_ips, preset_ips / plain_ips, ">= 0.5x"),
    ]
    print(f"augmentation throughput in tf.data: {size} px, batch {batch}, JPEG source {source_h}x{source_w}, "
          f"{os.cpu_count()} CPU cores"
          f"{' (smoke)' if args.smoke else ''}")
    print(f"{'pipeline':<36} {'images/s':>10} {'ratio':>8} {'goal':>8}")
    for name, ips, ratio, goal in rows:
        print(f"{name:<36} {ips:>10.1f} {ratio:>7.2f}x {goal:>8}")
    emit("augment", [
        result_row("RandAugment(2, 9): keras_fgvc / keras.layers.RandAugment", ours_ips / core_ips, ">= 20x",
                   f"{ours_ips:.1f} vs {core_ips:.1f} images/s, {size} px, batch {batch}"),
        result_row("decode + resize + hotel_id_train / decode + resize", preset_ips / plain_ips, ">= 0.5x",
                   f"{preset_ips:.1f} vs {plain_ips:.1f} images/s, JPEG {source_h}x{source_w}"),
    ])


if __name__ == "__main__":
    main()
