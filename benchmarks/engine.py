"""The engine's overhead: a tiny-GhostNet softmax stage through the engine vs plain ``compile/fit``.

All sides train the same model architecture on the same cached tf.data input with the same
optimizer. "plain" is ``keras.Model(image -> logits).compile(SGD, SparseCategoricalCrossentropy,
accuracy).fit`` without callbacks; "engine Trainer" is the ``Trainer`` that
``training.stages.train_stage`` compiles (losses looked up by name, per-term loss trackers,
accuracy); "+ stage callbacks" adds what every stage fits with (atomic best/last checkpoints,
CSV log, NaN guard), a fixed cost per epoch. Epochs alternate between the sides so that load from
other processes hits all alike; the first epoch of each (tracing) is not timed; the median epoch
time is reported. Goal: engine steps/s >= 0.95x plain (overhead <= 5%) at a realistic epoch
length (64 steps: the 5K demo's mask stage has 48).

    python benchmarks/engine.py            # 64 px, batch 32, 64 steps per epoch, 3 timed epochs each
    python benchmarks/engine.py --smoke    # 32 px, batch 8, 2 steps per epoch, 2 timed epochs
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from keras_fgvc.config import to_config  # noqa: E402
from keras_fgvc.data.pipeline import PipelineSpec, build  # noqa: E402
from keras_fgvc.models import build_model, training_model  # noqa: E402
from keras_fgvc.training.stages import loss_terms  # noqa: E402
from keras_fgvc.training.callbacks import stage_callbacks  # noqa: E402
from keras_fgvc.training.trainer import Trainer  # noqa: E402

CLASSES = 10


def write_table(folder, rows, size):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(rows):
        path = os.path.join(folder, f"{i:04d}.png")
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return pd.DataFrame({"path": paths, "label": np.arange(rows) % CLASSES})


def optimizer():
    return keras.optimizers.SGD(0.01, momentum=0.9)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=64, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per side")
    parser.add_argument("--smoke", action="store_true", help="32 px, batch 8, 2 steps, 2 timed epochs")
    args = parser.parse_args()
    if args.smoke:
        args.size, args.batch, args.steps, args.epochs = 32, 8, 2, 2
    cfg = to_config({
        "data": {"image_size": args.size, "batch_size": args.batch},
        "model": {"backbone": "ghostnet_050", "backbone_kwargs": {"out_channels": 128}, "l2": 0.0},
        "train": {"stages": [{"name": "bench", "init_from": "none", "losses": {"logits": [{"name": "sparse_ce"}]}}]},
    })
    stage = cfg.train.stages[0]
    with tempfile.TemporaryDirectory() as folder:
        table = write_table(folder, args.batch * args.steps, args.size)
        dataset = build(table, PipelineSpec(args.size, args.batch, targets={"logits": "label"}), training=True)
        plain_dataset = dataset.map(lambda inputs, targets: (inputs["image"], targets["logits"]))
        for _ in dataset:  # fill the cache once, outside the timing
            pass

        keras.utils.set_random_seed(0)
        engine_model = build_model(cfg, CLASSES)
        network = training_model(engine_model)
        trainer = Trainer(network, loss_terms(stage, network, CLASSES),
                          metrics={"logits": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]})
        trainer.compile(optimizer=optimizer(), jit_compile=False)
        callbacks = stage_callbacks(cfg.train, os.path.join(folder, "stage"), engine_model, "loss")

        keras.utils.set_random_seed(0)
        plain_model = build_model(cfg, CLASSES)
        plain = keras.Model(plain_model.input, plain_model.output["logits"])
        plain.compile(optimizer(), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")], jit_compile=False)

        sides = {
            "plain compile/fit": lambda: plain.fit(plain_dataset, epochs=1, verbose=0),
            "engine Trainer": lambda: trainer.fit(dataset, epochs=1, verbose=0),
            "engine Trainer + stage callbacks": lambda: trainer.fit(dataset, epochs=1, callbacks=callbacks, verbose=0),
        }
        times = {name: [] for name in sides}
        for epoch in range(args.epochs + 1):
            for name, fit in sides.items():  # alternate sides each epoch
                start = time.perf_counter()
                fit()
                if epoch:  # epoch 0 traces the step functions
                    times[name].append(time.perf_counter() - start)

    print(f"\nCPU, tiny GhostNet-0.5x at {args.size} px, batch {args.batch}, {args.steps} steps/epoch, "
          f"{args.epochs} timed epochs each (median), TF {tf.__version__}, {os.cpu_count()} CPUs")
    print(f"{'side':<38}{'epoch s':>10}{'steps/s':>10}")
    rates = {}
    for name, values in times.items():
        median = statistics.median(values)
        rates[name] = args.steps / median
        print(f"{name:<38}{median:>10.3f}{rates[name]:>10.2f}")
    plain_rate, step_rate, stage_rate = rates.values()
    print(f"{'ratio engine step/plain':<38}{'':>10}{step_rate / plain_rate:>9.2f}x")
    print(f"{'ratio engine stage/plain':<38}{'':>10}{stage_rate / plain_rate:>9.2f}x")
    callbacks_s = statistics.median(times["engine Trainer + stage callbacks"]) - statistics.median(times["engine Trainer"])
    print(f"stage callbacks (checkpoints, CSV, NaN guard): {callbacks_s:.3f} s per epoch")
    for label, rate in (("step", step_rate), ("stage", stage_rate)):
        print(f"engine {label} overhead goal <= 5% (ratio >= 0.95): {'met' if rate / plain_rate >= 0.95 else 'NOT met'}")


if __name__ == "__main__":
    main()
