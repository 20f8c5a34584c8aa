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

Distillation: "distillation Trainer" trains the same student with the KD term (Hinton et al. 2015,
T 4, alpha 0.1 as pipeline=squeeze) from a frozen GhostNet-1.0x teacher that the step calls on the
same images; the peer is what it replaces, a student-only step ("engine Trainer") plus the
teacher's inference over the same epoch (``predict``). Goal: distillation epoch <= 1.1x of that sum.

    python benchmarks/engine.py            # 64 px, batch 32, 64 steps per epoch, 3 timed epochs each
    python benchmarks/engine.py --smoke    # 32 px, batch 8, 2 steps per epoch, 2 timed epochs, 0.5x teacher
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from _record import emit, result_row
from PIL import Image

from keras_fgvc.config import to_config
from keras_fgvc.data.pipeline import PipelineSpec, build
from keras_fgvc.models import build_model, training_model
from keras_fgvc.training.callbacks import stage_callbacks
from keras_fgvc.training.stages import loss_terms
from keras_fgvc.training.trainer import Trainer

CLASSES = 10
KD = {"temperature": 4.0, "alpha": 0.1}  # pipelines/squeeze.yaml's defaults


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


def config(size, batch, backbone="ghostnet_050", out_channels=128):
    """Stage 0 "bench" trains with sparse CE, stage 1 "distil" with the KD term."""
    return to_config({
        "data": {"image_size": size, "batch_size": batch},
        "model": {"backbone": backbone, "backbone_kwargs": {"out_channels": out_channels}, "l2": 0.0},
        "train": {"stages": [
            {"name": "bench", "init_from": "none", "losses": {"logits": [{"name": "sparse_ce"}]}},
            {"name": "distil", "init_from": "none", "losses": {"logits": [{"name": "distillation", "kwargs": KD}]}},
        ]},
    })


def engine_trainer(cfg, stage, teacher=None):
    """A fresh student and the Trainer that ``training.stages.train_stage`` compiles for ``stage``."""
    keras.utils.set_random_seed(0)
    model = build_model(cfg, CLASSES)
    network = training_model(model)
    trainer = Trainer(network, loss_terms(stage, network, CLASSES), teacher=teacher,
                      metrics={"logits": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]})
    trainer.compile(optimizer=optimizer(), jit_compile=False)
    return model, trainer


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
    cfg = config(args.size, args.batch)
    stage, distil_stage = cfg.train.stages
    # The teacher a squeeze student learns from is larger; smoke keeps it small (tracing dominates).
    teacher_cfg = config(args.size, args.batch, *(("ghostnet_050", 128) if args.smoke else ("ghostnet_100", 1280)))
    with tempfile.TemporaryDirectory() as folder:
        table = write_table(folder, args.batch * args.steps, args.size)
        dataset = build(table, PipelineSpec(args.size, args.batch, targets={"logits": "label"}), training=True)
        plain_dataset = dataset.map(lambda inputs, targets: (inputs["image"], targets["logits"]))
        for _ in dataset:  # fill the cache once, outside the timing
            pass

        engine_model, trainer = engine_trainer(cfg, stage)
        callbacks = stage_callbacks(cfg.train, os.path.join(folder, "stage"), engine_model, "loss")
        keras.utils.set_random_seed(1)
        teacher = build_model(teacher_cfg, CLASSES)
        _, distiller = engine_trainer(cfg, distil_stage, teacher=teacher)
        images = dataset.map(lambda inputs, targets: inputs["image"])

        keras.utils.set_random_seed(0)
        plain_model = build_model(cfg, CLASSES)
        plain = keras.Model(plain_model.input, plain_model.output["logits"])
        plain.compile(optimizer(), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")], jit_compile=False)

        sides = {
            "plain compile/fit": lambda: plain.fit(plain_dataset, epochs=1, verbose=0),
            "engine Trainer": lambda: trainer.fit(dataset, epochs=1, verbose=0),
            "engine Trainer + stage callbacks": lambda: trainer.fit(dataset, epochs=1, callbacks=callbacks, verbose=0),
            "distillation Trainer": lambda: distiller.fit(dataset, epochs=1, verbose=0),
            "teacher inference (predict)": lambda: teacher.predict(images, verbose=0),
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
    plain_rate, step_rate, stage_rate = (rates[name] for name in list(sides)[:3])
    print(f"{'ratio engine step/plain':<38}{'':>10}{step_rate / plain_rate:>9.2f}x")
    print(f"{'ratio engine stage/plain':<38}{'':>10}{stage_rate / plain_rate:>9.2f}x")
    callbacks_s = statistics.median(times["engine Trainer + stage callbacks"]) - statistics.median(times["engine Trainer"])
    print(f"stage callbacks (checkpoints, CSV, NaN guard): {callbacks_s:.3f} s per epoch")
    for label, rate in (("step", step_rate), ("stage", stage_rate)):
        print(f"engine {label} overhead goal <= 5% (ratio >= 0.95): {'met' if rate / plain_rate >= 0.95 else 'NOT met'}")
    epoch_s = {name: statistics.median(values) for name, values in times.items()}
    separate_s = epoch_s["engine Trainer"] + epoch_s["teacher inference (predict)"]
    distil_ratio = epoch_s["distillation Trainer"] / separate_s
    print(f"distillation epoch / (student-only epoch + teacher inference): {distil_ratio:.2f}x (goal <= 1.1x)")
    teacher_name = teacher_cfg.model.backbone
    emit("engine", [
        result_row("engine Trainer / plain compile/fit (steps/s)", step_rate / plain_rate, ">= 0.95x",
                   f"{step_rate:.2f} vs {plain_rate:.2f} steps/s, {args.steps} steps/epoch"),
        result_row("engine stage (Trainer + stage callbacks) / plain compile/fit (steps/s)", stage_rate / plain_rate,
                   ">= 0.95x", f"{stage_rate:.2f} vs {plain_rate:.2f} steps/s, callbacks {callbacks_s:.3f} s/epoch"),
        result_row(f"distillation epoch / (student-only epoch + {teacher_name} teacher inference)", distil_ratio,
                   "<= 1.1x", f"{epoch_s['distillation Trainer']:.3f} s vs {epoch_s['engine Trainer']:.3f} + "
                              f"{epoch_s['teacher inference (predict)']:.3f} s"),
    ])


if __name__ == "__main__":
    main()
