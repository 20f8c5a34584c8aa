"""GhostNet-1.0x vs keras.applications MobileNetV3Large: training and inference images/s on CPU.

GhostNet has 141M MACs against MobileNetV3-Large's 219M, so at equal efficiency per MAC it should
train at least as fast (goal: ratio >= 1.0). Both models are built, compiled and timed in the
same process, in alternating rounds so that load from other processes hits both alike; the
median step time is reported.

    python benchmarks/backbones.py                # 224 px, batch 32 (the issue's setting)
    python benchmarks/backbones.py --smoke        # tiny sizes, < 60 s, still prints the table
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_fgvc.export.model_card import count_macs  # noqa: E402
from keras_fgvc.models.backbones.ghostnet import GhostNet  # noqa: E402


def build_models(size, classes):
    shape = (size, size, 3)
    return {
        "ghostnet_100": GhostNet(width=1.0, num_classes=classes, input_shape=shape),
        # weights=None: random init, nothing downloaded; minimalistic=False is the paper's model.
        "mobilenetv3_large": keras.applications.MobileNetV3Large(
            weights=None, input_shape=shape, classes=classes, include_preprocessing=False
        ),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per model (alternating)")
    parser.add_argument("--smoke", action="store_true", help="64 px, batch 4, 2 steps")
    args = parser.parse_args()
    if args.smoke:
        args.size, args.batch, args.steps = 64, 4, 2
    classes = 1000
    keras.utils.set_random_seed(0)
    models = build_models(args.size, classes)
    x = np.random.default_rng(0).uniform(-2, 2, size=(args.batch, args.size, args.size, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, classes, size=(args.batch,))

    forwards = {}
    for name, model in models.items():
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy", jit_compile=False)
        model.train_on_batch(x, y)  # traces and builds optimizer state
        model.train_on_batch(x, y)
        forwards[name] = tf.function(lambda t, m=model: m(t, training=False))
        forwards[name](x).numpy()

    train_times = {name: [] for name in models}
    infer_times = {name: [] for name in models}
    for _ in range(args.steps):
        for name, model in models.items():  # alternate models each round
            start = time.perf_counter()
            model.train_on_batch(x, y)
            train_times[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            forwards[name](x).numpy()
            infer_times[name].append(time.perf_counter() - start)

    rows = {}
    for name, model in models.items():
        rows[name] = dict(
            params=model.count_params(),
            macs=count_macs(model, x.shape[1:]),
            train=args.batch / statistics.median(train_times[name]),
            infer=args.batch / statistics.median(infer_times[name]),
        )
    print(f"\nCPU, {args.size} px, batch {args.batch}, {args.steps} timed steps each (median), "
          f"TF {tf.__version__}, {os.cpu_count()} CPUs")
    print(f"{'model':<20}{'params':>12}{'MACs':>10}{'train img/s':>14}{'infer img/s':>14}")
    for name, r in rows.items():
        print(f"{name:<20}{r['params']:>12,}{r['macs'] / 1e6:>9.1f}M{r['train']:>14.1f}{r['infer']:>14.1f}")
    g, m = rows["ghostnet_100"], rows["mobilenetv3_large"]
    print(f"{'ratio ghost/mnv3':<20}{g['params'] / m['params']:>12.2f}{g['macs'] / m['macs']:>10.2f}"
          f"{g['train'] / m['train']:>14.2f}{g['infer'] / m['infer']:>14.2f}")
    print(f"training ratio goal >= 1.0: {'met' if g['train'] >= m['train'] else 'NOT met'}")


if __name__ == "__main__":
    main()
