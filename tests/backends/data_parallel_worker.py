"""One epoch of the engine's Trainer under JAX with ``runtime.distribute=<kind>``.

Run by ``test_data_parallel.py`` with 2 host CPU devices (``XLA_FLAGS=--xla_force_host_platform_
device_count=2``): ``python -m tests.backends.data_parallel_worker KIND PER_REPLICA_BATCH OUT``.
A probe layer records, at trace time, the shape of the batch shard each device holds inside the
jitted training step; OUT (json) gets the plan's replicas, the distribution, those shard shapes,
the devices holding a weight, and the final weights."""

import json
import sys

import jax
import keras
import numpy as np
import tensorflow as tf

from keras_fgvc.config.compose import compose
from keras_fgvc.losses import build_loss
from keras_fgvc.training.precision import configure
from keras_fgvc.training.trainer import LossTerm, Trainer

ROWS, SIZE, CLASSES = 16, 6, 3


SHARDS = []  # module level: a list set on a Keras layer would be copied into a tracked one


class ShardProbe(keras.layers.Layer):
    """Identity that records the per-device shard shape of its input (at trace time)."""

    def call(self, x):
        jax.debug.inspect_array_sharding(x, callback=lambda sharding: SHARDS.append(
            list(sharding.shard_shape(x.shape))))
        return x


def main(kind: str, per_replica_batch: int, out: str) -> None:
    cfg = compose([f"runtime.distribute={kind}", f"data.batch_size={per_replica_batch}"])
    # The "auto" precision for each device kind under JAX (configure takes the device as given).
    precision = {device: configure(cfg.runtime, device=device).precision for device in ("cpu", "gpu", "tpu")}
    plan = configure(cfg.runtime)
    image = keras.Input((SIZE, SIZE, 3), name="image")
    hidden = keras.layers.Flatten()(ShardProbe()(image))
    logits = keras.layers.Dense(CLASSES, name="logits")(keras.layers.Dense(8, activation="relu")(hidden))
    trainer = Trainer(keras.Model({"image": image}, {"logits": logits}),
                      [LossTerm("logits", "sparse_ce", 1.0, build_loss("sparse_ce"))])
    trainer.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=plan.jit_compile)
    rng = np.random.default_rng(0)
    for variable in trainer.weights:
        variable.assign(rng.normal(0, 0.3, variable.shape).astype("float32"))
    x = rng.uniform(0, 1, (ROWS, SIZE, SIZE, 3)).astype("float32")
    y = (np.arange(ROWS) % CLASSES).astype("int32")
    global_batch = cfg.data.batch_size * plan.replicas  # the engine's rule (training.stages)
    data = tf.data.Dataset.from_tensor_slices(({"image": x}, {"logits": y})).batch(global_batch, drop_remainder=True)
    history = trainer.fit(data, epochs=1, verbose=0)
    kernel = trainer.weights[0]
    report = {
        "replicas": plan.replicas, "jit": plan.jit_compile, "global_batch": global_batch, "precision": precision,
        "policy": keras.config.dtype_policy().name, "device": plan.device,
        "distribution": type(keras.distribution.distribution()).__name__,
        "shards": SHARDS, "weight_devices": len(kernel.value.sharding.device_set),
        "loss": history.history["loss"][-1],
        "weights": [keras.ops.convert_to_numpy(v).tolist() for v in trainer.trainable_weights],
    }
    with open(out, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
