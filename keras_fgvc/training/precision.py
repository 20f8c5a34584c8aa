"""The "auto" precision / compilation / distribution policy (DESIGN.md), under either backend.

Measured on this project's 2-core CPU machine: bfloat16 is 2x and XLA 8x slower than plain
float32, so CPU runs stay float32 without jit. GPUs get mixed_float16 (tensor cores), TPUs
mixed_bfloat16. Heads, logits and losses stay float32 in every case (their layers say so).

Under JAX (the TPU path: Kaggle's TPU images drive TPUs from JAX, not TensorFlow) the device comes
from JAX, the step is always jitted (XLA is how JAX runs; unjitted it dispatches op by op), and
distribution is ``keras.distribution.DataParallel`` over the visible devices; ``tf.distribute``
does not apply, so the plan's strategy is TensorFlow's default (its scope is a no-op).
Keras' own ``keras.distribution`` on the TensorFlow backend is a prototype that distributes
nothing (backend/tensorflow/distribution_lib.py), so TensorFlow keeps tf.distribute.
"""

import json
import os
from dataclasses import dataclass

import keras
import tensorflow as tf


@dataclass(frozen=True)
class RuntimePlan:
    device: str  # cpu | gpu | tpu
    precision: str
    jit_compile: bool | str
    strategy: tf.distribute.Strategy
    # Devices one global batch is split over: the strategy's replicas, or DataParallel's devices.
    replicas: int = 1
    steps_per_execution: int = 1

    @property
    def whole_batches(self) -> bool:
        """Whether training batches must all have one shape: a compiled (XLA) step recompiles for a
        smaller last batch, and a batch split over devices must divide evenly (drop_remainder)."""
        return self.jit_compile is True or self.replicas > 1 or self.device == "tpu"


def jax_backend() -> bool:
    return keras.backend.backend() == "jax"


def detect_device() -> str:
    if jax_backend():
        import jax

        platform = jax.devices()[0].platform
        return platform if platform in ("tpu", "gpu") else "cpu"
    if tf.config.list_logical_devices("TPU"):
        return "tpu"
    if tf.config.list_physical_devices("GPU"):
        return "gpu"
    return "cpu"


def auto_precision(device: str) -> str:
    return {"cpu": "float32", "gpu": "mixed_float16", "tpu": "mixed_bfloat16"}[device]


def auto_steps_per_execution(device: str) -> int:
    # On a TPU every compiled call is a round trip from the host; 32 steps per call make it small
    # against the work (the usual TPU notebook setting). Elsewhere one step per call keeps
    # per-batch callbacks and progress exact at no measurable cost.
    return 32 if device == "tpu" else 1


def auto_jit(device: str) -> bool | str:
    if jax_backend():
        return True
    # On accelerators let Keras decide per model ("auto" compiles when the model supports XLA).
    return False if device == "cpu" else "auto"


def _tf_config_workers() -> int:
    """Workers TF_CONFIG lists (0 without TF_CONFIG)."""
    if "TF_CONFIG" not in os.environ:
        return 0
    return len(json.loads(os.environ["TF_CONFIG"]).get("cluster", {}).get("worker", []))


def make_strategy(kind: str, device: str) -> tf.distribute.Strategy:
    if kind == "auto":
        if device == "tpu":
            kind = "tpu"
        elif _tf_config_workers() > 1:
            kind = "multi_worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "none"
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multi_worker":
        from keras_fgvc.training.multi_worker import patch_keras_for_multi_worker

        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        patch_keras_for_multi_worker()  # keras#20585: Keras 3 fit fails under MWMS without it
        return strategy
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def configure_jax_distribution(kind: str) -> int:
    """``keras.distribution.DataParallel`` over every visible JAX device unless ``kind`` is none
    (one device: nothing to split); the number of devices a global batch is split over."""
    import jax

    devices = jax.devices()
    if kind == "none" or len(devices) == 1:
        keras.distribution.set_distribution(None)
        return 1
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return len(devices)


def configure(runtime_cfg, device: str | None = None) -> RuntimePlan:
    """Apply the config's precision policy globally and return the plan (strategy included)."""
    if jax_backend():
        device = device or detect_device()
        precision = auto_precision(device) if runtime_cfg.precision == "auto" else runtime_cfg.precision
        keras.config.set_dtype_policy(precision)
        jit = True if runtime_cfg.jit_compile == "auto" else bool(runtime_cfg.jit_compile)
        replicas = configure_jax_distribution(runtime_cfg.distribute)
        return RuntimePlan(device, precision, jit, tf.distribute.get_strategy(), replicas,
                           _steps_per_execution(runtime_cfg, device))
    strategy = None
    if runtime_cfg.distribute == "multi_worker" or (
            runtime_cfg.distribute == "auto" and device != "tpu" and _tf_config_workers() > 1):
        # MultiWorkerMirroredStrategy configures the collective ops, which TensorFlow allows only
        # before its runtime starts ("Collective ops must be configured at program startup"), and
        # listing logical devices (detect_device) starts it: create the strategy first.
        strategy = make_strategy("multi_worker", "cpu")
    device = device or detect_device()
    precision = auto_precision(device) if runtime_cfg.precision == "auto" else runtime_cfg.precision
    jit = auto_jit(device) if runtime_cfg.jit_compile == "auto" else bool(runtime_cfg.jit_compile)
    keras.config.set_dtype_policy(precision)
    strategy = strategy or make_strategy(runtime_cfg.distribute, device)
    return RuntimePlan(device, precision, jit, strategy, strategy.num_replicas_in_sync,
                       _steps_per_execution(runtime_cfg, device))


def _steps_per_execution(runtime_cfg, device: str) -> int:
    chosen = runtime_cfg.steps_per_execution
    return auto_steps_per_execution(device) if chosen == "auto" else int(chosen)
