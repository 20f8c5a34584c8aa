"""TFLite export (float32 or full-integer int8) and checks of a TFLite file against its Keras model.

The exported graph maps a batch of float pixels in [0, 255] (B, S, S, C) to class
probabilities, i.e. what ``build_model`` models take, with the softmax inside so a phone app
reads probabilities directly. int8 files are fully integer: weights and activations are int8
and the input/output tensors are uint8 (pixels as a camera delivers them; probabilities in
steps of 1/256), calibrated on a representative set of training images.

Conversion goes Keras ExportArchive -> SavedModel -> ``TFLiteConverter.from_saved_model``:
the converter then freezes the variables, which ``from_concrete_functions`` does not do for
Keras 3 models (int8 calibration fails on READ_VARIABLE ops).
"""

import tempfile
import warnings

import numpy as np
import tensorflow as tf

from keras_fgvc.atomic import atomic_open
from keras_fgvc.errors import UserError
from keras_fgvc.export.archive import add_tf_endpoint, model_archive
from keras_fgvc.export.saved_model import check_writable

QUANTIZATIONS = ("float32", "int8")


def _probabilities(forward, pixels):
    """Softmax of the model's logits, whether it returns a dict (``build_model``) or bare logits."""
    outputs = forward(pixels)
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs
    return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)


def _calibration_batches(representative_images, image_size, channels, max_images):
    """Float32 batches of at most ``max_images`` images in total, validated once up front.

    Accepts an array (N, S, S, C), or an iterable of arrays/tensors, or of ``(images, targets)``
    pairs as a training ``tf.data`` pipeline yields them.
    """
    if representative_images is None:
        raise UserError("int8 export needs representative_images (a sample of training images)")
    if isinstance(representative_images, (np.ndarray, tf.Tensor)):
        array = np.asarray(representative_images)
        source = (array[i : i + 32] for i in range(0, len(array), 32))
    else:
        source = iter(representative_images)
    batches, seen = [], 0
    for batch in source:
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        batch = np.asarray(batch, dtype=np.float32)[: max_images - seen]
        if not len(batch):
            continue
        if batch.shape[1:] != (image_size, image_size, channels):
            raise UserError(
                f"representative images have shape {batch.shape[1:]}, the model takes "
                f"{(image_size, image_size, channels)}"
            )
        if (batch.min() < 0.0 or batch.max() > 255.0):
            raise UserError(
                f"representative images must be pixels in [0, 255], got [{batch.min()}, {batch.max()}]"
            )
        batches.append(batch)
        seen += len(batch)
        if seen >= max_images:
            break
    if seen == 0:
        raise UserError("representative_images is empty")
    if max(float(b.max()) for b in batches) <= 1.0:
        # Calibrating on [0, 1] images would fit every activation range to the wrong inputs.
        warnings.warn("representative images are all <= 1.0; the model expects pixels in [0, 255]")
    return batches


def _convert(model, image_size, channels, quantization, batches):
    """TFLite flatbuffer bytes of pixels -> probabilities."""
    spec = tf.TensorSpec([None, image_size, image_size, channels], tf.float32, name="pixels")
    archive, forward = model_archive(model, image_size, channels)

    def serve(pixels):
        if quantization == "int8":
            # Pins the input's quantisation to scale 1, zero point 0, so uint8 pixels enter
            # unchanged whatever range the calibration images happened to cover.
            pixels = tf.quantization.fake_quant_with_min_max_args(pixels, min=0.0, max=255.0, num_bits=8)
        return {"probabilities": _probabilities(forward, pixels)}

    add_tf_endpoint(archive, "serving_default", serve, [spec])
    with tempfile.TemporaryDirectory(prefix="keras_fgvc_tflite_") as saved_model_dir:
        archive.write_out(saved_model_dir, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])
        if quantization == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([batch] for batch in batches)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
        return converter.convert()


def export_tflite(
    model,
    path,
    image_size,
    channels=3,
    quantization="float32",
    representative_images=None,
    overwrite=False,
    max_calibration_images=300,
):
    """Write ``model`` as a TFLite file (pixels in [0, 255] -> probabilities), atomically.

    Args:
        model: a Keras model taking float pixels in [0, 255]; it returns ``{"logits": ...}``
            (``build_model``) or bare logits.
        path: target file, e.g. ``saved_models/cars/default/train.int8.tflite``.
        image_size: side of the square input, as in training.
        channels: 3 (RGB) or 1 (greyscale).
        quantization: ``"float32"`` or ``"int8"`` (full-integer, uint8 input/output).
        representative_images: calibration images for int8, drawn from the training split:
            an array (N, S, S, C) of pixels in [0, 255] or an iterable of such batches (or of
            ``(images, targets)`` pairs).
        overwrite: replace an existing file; otherwise an existing ``path`` is a UserError.
        max_calibration_images: at most this many images are used for calibration (TFLite's
            guide suggests 100-500).

    Returns:
        ``path``.

    Example:
        >>> export_tflite(model, "out/model_int8.tflite", 64, quantization="int8",
        ...               representative_images=train_pixels[:200])  # doctest: +SKIP
    """
    if quantization not in QUANTIZATIONS:
        raise UserError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    check_writable(path, overwrite)
    batches = None
    if quantization == "int8":
        batches = _calibration_batches(representative_images, image_size, channels, max_calibration_images)
    flatbuffer = _convert(model, image_size, channels, quantization, batches)
    with atomic_open(path, "wb") as file:
        file.write(flatbuffer)
    return path


def _interpreter(path):
    # tf.lite.Interpreter warns that it moves to the ai_edge_litert package; it still works
    # and is the one interpreter the TensorFlow wheel ships with.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tf.lite.Interpreter(model_path=str(path))


def _quantize(values, details):
    scale, zero_point = details["quantization"]
    if not np.issubdtype(details["dtype"], np.integer):
        return values.astype(details["dtype"])
    limits = np.iinfo(details["dtype"])
    return np.clip(np.round(values / scale + zero_point), limits.min, limits.max).astype(details["dtype"])


def _dequantize(values, details):
    scale, zero_point = details["quantization"]
    if not np.issubdtype(details["dtype"], np.integer):
        return values.astype(np.float32)
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


def tflite_predict(path, images, batch_size=32):
    """Probabilities of a TFLite file from :func:`export_tflite` on float pixels in [0, 255].

    Integer inputs and outputs are (de)quantised with the file's own scale and zero point, so
    float32 and int8 files are called the same way.

    Args:
        path: the ``.tflite`` file.
        images: array (N, S, S, C) of pixels in [0, 255].
        batch_size: images per interpreter call.

    Returns:
        float32 array (N, num_classes).

    Example:
        >>> probabilities = tflite_predict("out/model_int8.tflite", val_pixels)  # doctest: +SKIP
    """
    images = np.asarray(images, dtype=np.float32)
    interpreter = _interpreter(path)
    input_details = interpreter.get_input_details()[0]
    output_details = interpreter.get_output_details()[0]
    allocated_batch, outputs = None, []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        if len(batch) != allocated_batch:
            interpreter.resize_tensor_input(input_details["index"], batch.shape)
            interpreter.allocate_tensors()
            allocated_batch = len(batch)
        interpreter.set_tensor(input_details["index"], _quantize(batch, input_details))
        interpreter.invoke()
        outputs.append(_dequantize(interpreter.get_tensor(output_details["index"]), output_details))
    return np.concatenate(outputs, axis=0)


def keras_probabilities(model, images, batch_size=32):
    """The Keras model's probabilities, computed exactly as the exported graph computes them."""
    images = np.asarray(images, dtype=np.float32)
    return np.concatenate(
        [_probabilities(model, images[i : i + batch_size]).numpy() for i in range(0, len(images), batch_size)],
        axis=0,
    )


def compare_with_keras(model, tflite_path, images, labels=None, batch_size=32):
    """How closely a TFLite file reproduces its Keras model on ``images``.

    Args:
        model: the Keras model that was exported.
        tflite_path: the file from :func:`export_tflite`.
        images: array (N, S, S, C) of pixels in [0, 255], e.g. the validation split.
        labels: optional integer class ids (N,) for accuracies.
        batch_size: images per call.

    Returns:
        dict with ``num_images``, ``max_abs_diff`` (of probabilities), ``top1_agreement`` (share
        of images with the same arg-max) and, given labels, ``keras_accuracy`` and
        ``tflite_accuracy``.

    Example:
        >>> compare_with_keras(model, "out/model_int8.tflite", val_pixels, val_labels)  # doctest: +SKIP
        {'num_images': 500, 'max_abs_diff': 0.03, 'top1_agreement': 0.98, ...}
    """
    expected = keras_probabilities(model, images, batch_size)
    got = tflite_predict(tflite_path, images, batch_size)
    report = {
        "num_images": len(expected),
        "max_abs_diff": float(np.max(np.abs(expected - got))),
        "top1_agreement": float(np.mean(expected.argmax(-1) == got.argmax(-1))),
    }
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        report["keras_accuracy"] = float(np.mean(expected.argmax(-1) == labels))
        report["tflite_accuracy"] = float(np.mean(got.argmax(-1) == labels))
    return report
