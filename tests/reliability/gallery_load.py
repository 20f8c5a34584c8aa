"""Embed a synthetic gallery of N tiny images and rank queries against it, in this process alone,
and print one JSON line: shapes, answers, and the peak anonymous memory (heap, not the file pages
of the memory-mapped embeddings, which the kernel can drop) of each step, sampled every 5 ms.

    python tests/reliability/gallery_load.py <out_dir> [--images 200000]

Images are made inside the tf.data graph (seeded noise, 8 x 8 px), so nothing but the pipeline's
own buffers holds pixels; what the test bounds is the memory the gallery's embeddings would take.
"""

import argparse
import json
import os
import threading
import time

DIM = 64
CLASSES = 5_000
QUERIES = 2_000


def anonymous_mb() -> float:
    with open("/proc/self/status") as status:
        kb = next(line for line in status if line.startswith("RssAnon:")).split()[1]
    return int(kb) / 1024


class PeakAnonymous:
    """The largest RssAnon seen while the ``with`` block runs (a sampling thread)."""

    def __enter__(self):
        self.peak, self.running = anonymous_mb(), True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, anonymous_mb())
            time.sleep(0.005)

    def __exit__(self, *_):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, anonymous_mb())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--images", type=int, default=200_000)
    args = parser.parse_args()
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_fgvc.evaluation.retrieval import extract_embeddings, rank_classes

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, {"embedding": keras.layers.Dense(DIM)(x)})

    def images(ids):
        pixels = tf.random.stateless_uniform([tf.shape(ids)[0], 8, 8, 3], seed=[0, 1], maxval=255.0)
        return pixels + tf.cast(ids % 97, tf.float32)[:, None, None, None], ids

    dataset = tf.data.Dataset.range(args.images).batch(1024).map(images).prefetch(2)
    model(np.zeros((2, 8, 8, 3), "float32"))
    next(iter(dataset))  # the pipeline's graph and first buffers: part of the baseline
    baseline = anonymous_mb()
    with PeakAnonymous() as extracting:
        gallery, ids = extract_embeddings(model, dataset, os.path.join(args.out_dir, "gallery"), progress=False)
    labels = np.asarray(ids) % CLASSES
    query = np.array(gallery[:QUERIES])
    before_rank = anonymous_mb()
    with PeakAnonymous() as ranking:
        _, scores = rank_classes(query, gallery, labels, k=5, progress=False)
    # An independent reference for a few queries: every class's best cosine, by NumPy, in float64.
    unit = np.asarray(gallery, np.float64) / np.linalg.norm(gallery, axis=1, keepdims=True)
    best = np.full((8, CLASSES), -np.inf)
    for row in range(8):
        np.maximum.at(best[row], labels, unit @ unit[row])
    print(json.dumps({
        "shape": list(gallery.shape), "ids_in_order": bool(np.array_equal(ids, np.arange(args.images))),
        "top5_scores": scores[:8].tolist(), "reference_top5_scores": np.sort(best, axis=1)[:, ::-1][:, :5].tolist(),
        "gallery_mb": gallery.nbytes / 2**20, "baseline_mb": baseline,
        "extract_peak_mb": extracting.peak - baseline, "rank_peak_mb": ranking.peak - before_rank,
    }))


if __name__ == "__main__":
    main()
