"""Model card: parameters, MACs, float32 size and measured throughput of a Keras model.

MACs (multiply-accumulates; papers often call them FLOPs) are counted for convolutions
(including grouped), depthwise and separable convolutions and Dense layers, from the shapes
each layer actually sees in one forward pass at the card's input size, so nested models,
custom layers with sublayers and shared layers are all counted. Bias adds, BatchNorm,
activations and pooling are not MACs and are left out, as in the GhostNet and MobileNetV3 papers.
"""

import os
import platform
import time

import keras
import numpy as np
import tensorflow as tf

from keras_fgvc.compiled import compiled

# keras' private base classes are the only common parents of Conv1D/2D/3D etc.; we dispatch on
# the public classes instead so a Keras upgrade cannot silently change what is counted.
_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
_SEPARABLE = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_DENSE = (keras.layers.Dense,)


def _layer_macs(layer, in_shape, out_shape):
    """MACs of one call; shapes are channels-last and include the batch dimension (1)."""
    if isinstance(layer, _DENSE):
        return int(np.prod(out_shape[1:-1], dtype=np.int64)) * in_shape[-1] * layer.units
    out_positions = int(np.prod(out_shape[1:-1], dtype=np.int64))
    kernel = int(np.prod(layer.kernel_size))
    if isinstance(layer, _DEPTHWISE):
        return out_positions * out_shape[-1] * kernel
    if isinstance(layer, _SEPARABLE):
        depthwise_channels = in_shape[-1] * layer.depth_multiplier
        return out_positions * depthwise_channels * (kernel + out_shape[-1])
    return out_positions * out_shape[-1] * kernel * (in_shape[-1] // layer.groups)


def _countable(layer):
    if isinstance(layer, (_DEPTHWISE + _SEPARABLE + _DENSE)):
        return True
    return isinstance(layer, _CONV) and layer.data_format == "channels_last"


def count_macs(model, input_shape):
    """Multiply-accumulates of one image through ``model`` at ``input_shape`` (no batch dim).

    Example:
        >>> count_macs(GhostNet(), (224, 224, 3))  # ~141M
    """
    calls = []
    patched = []
    # _flatten_layers is Keras' own recursive walk (nested models and sublayers of custom layers).
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if not _countable(layer):
            continue

        def recording_call(*args, _layer=layer, _call=layer.call, **kwargs):
            out = _call(*args, **kwargs)
            calls.append((_layer, tuple(args[0].shape), tuple(out.shape)))
            return out

        object.__setattr__(layer, "call", recording_call)
        patched.append(layer)
    try:
        model(np.zeros((1,) + tuple(input_shape), dtype="float32"), training=False)
    finally:
        for layer in patched:
            object.__delattr__(layer, "call")
    return int(sum(_layer_macs(layer, i, o) for layer, i, o in calls))


def images_per_second(model, input_shape, batch_size, min_seconds=1.0, warmup=2):
    """Inference throughput of a compiled forward pass (``keras_fgvc.compiled``) on random input."""
    forward = compiled(lambda x: model(x, training=False), model)
    x = np.random.default_rng(0).uniform(0.0, 255.0, (batch_size,) + tuple(input_shape)).astype("float32")

    def run():  # to host memory, so the time includes the whole computation
        keras.tree.map_structure(keras.ops.convert_to_numpy, forward(x))

    for _ in range(warmup):  # the first call traces the graph
        run()
    runs, start = 0, time.perf_counter()
    while True:
        run()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return runs * batch_size / elapsed


def _resolve_input_shape(model, input_shape):
    model_shape = tuple(model.inputs[0].shape[1:])
    if input_shape is None:
        input_shape = model_shape
    input_shape = tuple(input_shape)
    if len(input_shape) == len(model_shape) - 1:
        input_shape = input_shape + model_shape[-1:]
    if any(d is None for d in input_shape):
        raise ValueError(f"model input {model_shape} has free dimensions; pass input_shape=(height, width)")
    return input_shape


def model_card(model, input_shape=None, batch_sizes=(1, 32), min_seconds=1.0, tflite_paths=None):
    """Parameter counts, MACs, float32 size and measured images/s of ``model``.

    Args:
        model: a single-input Keras model taking channels-last images.
        input_shape: ``(height, width)`` or ``(height, width, channels)``; defaults to the
            model's own input shape (which must then be fully defined).
        batch_sizes: batch sizes to time; ``()`` skips timing.
        min_seconds: time each batch size for at least this long (after warm-up).
        tflite_paths: optional ``{"float32": path, "int8": path}`` of exported TFLite files
            whose sizes the card lists.

    Returns:
        dict with name, input_shape, trainable_params, total_params, macs, size_mb_float32
        (total params x 4 bytes, in 10^6 bytes), images_per_second {batch: float}, device,
        and tflite_size_mb {quantization: file size in 10^6 bytes} (empty without tflite_paths).

    Example:
        >>> print(format_model_card(model_card(GhostNet(num_classes=196), (224, 224))))
    """
    input_shape = _resolve_input_shape(model, input_shape)
    trainable = int(sum(np.prod(w.shape, dtype=np.int64) for w in model.trainable_weights))
    total = int(sum(np.prod(w.shape, dtype=np.int64) for w in model.weights))
    return {
        "name": model.name,
        "input_shape": input_shape,
        "trainable_params": trainable,
        "total_params": total,
        "macs": count_macs(model, input_shape),
        "size_mb_float32": total * 4 / 1e6,
        "images_per_second": {
            int(b): images_per_second(model, input_shape, int(b), min_seconds) for b in batch_sizes
        },
        "device": f"{platform.processor() or platform.machine()}, Keras {keras.__version__} on "
        f"{keras.backend.backend()}, TF {tf.__version__}, {len(tf.config.list_physical_devices('GPU'))} GPU",
        "tflite_size_mb": {name: os.path.getsize(path) / 1e6 for name, path in (tflite_paths or {}).items()},
    }


def format_model_card(card):
    """A small aligned text table of a :func:`model_card` dict.

    Example:
        >>> print(format_model_card(card))
    """
    rows = [
        ("model", card["name"]),
        ("input", "x".join(str(d) for d in card["input_shape"])),
        ("params (trainable / total)", f"{card['trainable_params']:,} / {card['total_params']:,}"),
        ("MACs", f"{card['macs'] / 1e6:,.1f}M"),
        ("size (float32)", f"{card['size_mb_float32']:.1f} MB"),
    ]
    # Two decimals: int8 files of small models are well under 1 MB.
    rows += [(f"size (TFLite {name})", f"{mb:.2f} MB") for name, mb in card.get("tflite_size_mb", {}).items()]
    rows += [(f"images/s @ batch {b}", f"{v:,.1f}") for b, v in card["images_per_second"].items()]
    rows.append(("device", card["device"]))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
