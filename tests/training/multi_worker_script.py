"""One worker of tests/training/test_multi_worker.py (the test sets TF_CONFIG and launches two).

    python tests/training/multi_worker_script.py engine <data_root> <runs_root> [--epochs N] [--resume]
        one stage of the project's engine (train_stage) under runtime.distribute=multi_worker
    python tests/training/multi_worker_script.py no_shim
        plain Keras fit under MultiWorkerMirroredStrategy without the shim; prints the error

The engine mode is also imported by the test for the single-process reference (``train``).
"""

import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

SIZE, CLASSES, BATCH = 16, 3, 4  # BATCH is data.batch_size: per replica
VAL_ROWS = 8


def tiny_model(cfg=None):
    """A ``build_model``-shaped net (``pre_logits``, outputs embedding + logits), without BatchNorm
    (per-replica batch statistics would differ from one global batch) or dropout (random)."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    embedding = keras.layers.Dense(8, name="pre_logits")(x)
    logits = keras.layers.Dense(CLASSES, name="logits")(embedding)
    return keras.Model(inputs, {"embedding": embedding, "logits": logits}, name="tiny")


def make_cfg(runs_root: str, distribute: str, epochs: int = 1, resume: bool = False, batch_size: int = BATCH):
    from keras_fgvc.config import to_config

    return to_config({
        "runs_root": runs_root, "name": "mw", "seed": 0, "resume": resume,
        "data": {"image_size": SIZE, "batch_size": batch_size, "cache": True},
        "augment": {"preset": "none"},
        "runtime": {"distribute": distribute, "precision": "float32", "jit_compile": False},
        "train": {"epochs": epochs, "optimizer": "sgd", "momentum": 0.9, "learning_rate": 0.05,
                  "schedule": "constant", "warmup_epochs": 0, "lr_scaling": "none",
                  "stages": [{"name": "s", "init_from": "none", "losses": {"logits": [{"name": "sparse_ce"}]}}]},
        "tracking": {"wandb": "disabled"},
    })


def train(data_root: str, runs_root: str, distribute: str, epochs: int = 1, resume: bool = False,
          batch_size: int = BATCH):
    """Train stage "s" on ``<data_root>/table.csv`` (``batch_size`` per replica); returns (plan, StageRun)."""
    import pandas as pd

    from keras_fgvc.training.precision import configure
    from keras_fgvc.training.stages import check_can_start, stages_to_run, train_stage

    table = pd.read_csv(os.path.join(data_root, "table.csv"))
    cfg = make_cfg(runs_root, distribute, epochs, resume, batch_size)
    plan = configure(cfg.runtime)
    (stage,) = stages_to_run(cfg)
    check_can_start(cfg, [stage])
    run = train_stage(cfg, plan, stage, tiny_model, table, table.iloc[:VAL_ROWS], "label", CLASSES)
    return plan, run


def engine(args):
    from keras_fgvc.training.multi_worker import is_patched

    plan, run = train(args.data_root, args.runs_root, "multi_worker", args.epochs, args.resume)
    report = {"strategy": type(plan.strategy).__name__, "replicas": plan.strategy.num_replicas_in_sync,
              "patched": is_patched(), "info": run.info, "history": run.history, "folder": run.folder}
    with open(os.path.join(args.runs_root, "report.json"), "w") as f:
        json.dump(report, f)


def no_shim(args):
    """Keras' own fit under MWMS: prints ``FAILED <error>`` (keras#20585) or ``FITTED``."""
    import keras
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, (x[:, 0] > 0).astype("int32"))).batch(8)
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    try:
        model.fit(dataset, epochs=1, verbose=0)
    except Exception as error:  # noqa: BLE001 - the point is to report it
        print(f"FAILED {type(error).__name__}: {str(error).splitlines()[0][:300]}", flush=True)
        return
    print("FITTED", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    run = sub.add_parser("engine")
    run.add_argument("data_root")
    run.add_argument("runs_root")
    run.add_argument("--epochs", type=int, default=1)
    run.add_argument("--resume", action="store_true")
    sub.add_parser("no_shim")
    args = parser.parse_args(argv)
    from keras_fgvc.errors import UserError

    try:
        engine(args) if args.mode == "engine" else no_shim(args)
    except UserError as error:  # what run.py does with it
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
