"""Serving one image: Keras vs SavedModel vs TFLite float32 vs TFLite int8, latency and size.

A GhostNet classifier built by the library (``build_model``: pixels in [0, 255] -> logits) is
exported the way every stage exports (``export.export_saved_model``, ``export.export_tflite``
float32 and full-integer int8 calibrated on the same kind of pixels), then each format answers one
image per call; the formats alternate call by call so that load from other processes hits all
alike, and the median latency is reported. Sides:

    Keras predict_on_batch        the reference (1.0x)
    SavedModel serving_default    JPEG bytes in: decode + resize are inside, as a client calls it
    TFLite float32 interpreter    float pixels in, probabilities out
    TFLite int8 interpreter       uint8 pixels in, uint8 probabilities out

The issue sets no bounds here; the goals are ours, from what each format is for: a TFLite file
serves one image at least as fast as Keras (latency <= 1.0x); a float32 file is its weights plus
a small graph (<= 1.1x of params x 4 bytes, the floor being 1.0x); int8 stores a byte per weight
(<= 0.3x of the float32 file, the floor being 0.25x). SavedModel rows are context (no goal): its
latency includes the JPEG decode and its folder the bytes-in signatures. Both interpreters use every
core, as TensorFlow does.

    python benchmarks/export.py            # GhostNet-1.0x at 224 px, 100 classes, 200 calls per format
    python benchmarks/export.py --smoke    # GhostNet-0.5x at 32 px with a 128-d head, 10 calls (< 30 s)
"""

import argparse
import os
import statistics
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from _record import emit, result_row

from keras_fgvc.config import to_config
from keras_fgvc.export import export_saved_model, export_tflite
from keras_fgvc.export.tflite import _quantize
from keras_fgvc.models import build_model

CLASSES = 100
KERAS = "Keras predict_on_batch"


def classifier(size, backbone, out_channels):
    cfg = to_config({"data": {"image_size": size},
                     "model": {"backbone": backbone, "backbone_kwargs": {"out_channels": out_channels}}})
    keras.utils.set_random_seed(0)
    return build_model(cfg, CLASSES)


def photo_pixels(count, size, seed=0):
    """Smooth colour fields plus texture in [0, 255]: calibration and a JPEG that decode like photos."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (count, 4, 4, 3)).astype("float32")
    smooth = tf.image.resize(coarse, (size, size), method="bicubic").numpy()
    return np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype("float32")


def tflite_call(path, pixels):
    """A batch-1 interpreter on every core, allocated once; returns a call that runs one inference."""
    with warnings.catch_warnings():  # tf.lite.Interpreter warns that it moves to ai_edge_litert
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=path, num_threads=os.cpu_count())
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(source["index"], pixels.shape)
    interpreter.allocate_tensors()
    values = _quantize(pixels, source)  # uint8 for the int8 file, unchanged float32 otherwise

    def call():
        interpreter.set_tensor(source["index"], values)
        interpreter.invoke()
        return interpreter.get_tensor(target["index"])

    return call


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def median_latencies(calls, rounds, warmup=3):
    """{side: median seconds per call}, sides alternating call by call after ``warmup`` untimed calls each."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    times = {side: [] for side in calls}
    for _ in range(rounds):
        for side, call in calls.items():
            start = time.perf_counter()
            call()
            times[side].append(time.perf_counter() - start)
    return {side: statistics.median(values) for side, values in times.items()}


def export_all(model, folder, size, calibration):
    """Writes the three exports; returns {format: path}."""
    paths = {"SavedModel serving_default": export_saved_model(model, os.path.join(folder, "saved_model"), size)}
    for quantization in ("float32", "int8"):
        paths[f"TFLite {quantization}"] = export_tflite(
            model, os.path.join(folder, f"model.{quantization}.tflite"), size, quantization=quantization,
            representative_images=calibration)
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--backbone", default="ghostnet_100")
    parser.add_argument("--out-channels", type=int, default=1280, help="the backbone's head width (paper: 1280)")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per format")
    parser.add_argument("--calibration", type=int, default=64, help="int8 calibration images")
    parser.add_argument("--smoke", action="store_true", help="ghostnet_050 at 32 px, 128-d head, 10 calls")
    args = parser.parse_args()
    if args.smoke:
        args.size, args.backbone, args.out_channels, args.calls, args.calibration = 32, "ghostnet_050", 128, 10, 8
    model = classifier(args.size, args.backbone, args.out_channels)
    pixels = photo_pixels(1, args.size, seed=1)
    jpeg = tf.io.encode_jpeg(tf.cast(tf.round(pixels[0]), tf.uint8), quality=90)
    with tempfile.TemporaryDirectory() as folder:
        paths = export_all(model, folder, args.size, photo_pixels(args.calibration, args.size))
        serve = tf.saved_model.load(paths["SavedModel serving_default"]).signatures["serving_default"]
        calls = {
            KERAS: lambda: model.predict_on_batch(pixels),
            "SavedModel serving_default": lambda: serve(image_bytes=tf.reshape(jpeg, [1]))["probabilities"].numpy(),
            **{side: tflite_call(paths[side], pixels) for side in ("TFLite float32", "TFLite int8")},
        }
        latency = median_latencies(calls, args.calls)
        sizes = {side: folder_bytes(path) if os.path.isdir(path) else os.path.getsize(path)
                 for side, path in paths.items()}
    weights = model.count_params() * 4

    print(f"\n{args.backbone} classifier ({model.count_params():,} params, {CLASSES} classes) at {args.size} px, "
          f"batch 1, median of {args.calls} calls each, TF {tf.__version__}, {os.cpu_count()} CPUs"
          f"{' (smoke)' if args.smoke else ''}")
    print(f"{'format':<30}{'latency ms':>12}{'vs Keras':>10}{'size MB':>10}")
    for side, seconds in latency.items():
        size = f"{sizes[side] / 1e6:.2f}" if side in sizes else f"{weights / 1e6:.2f}*"
        print(f"{side:<30}{seconds * 1e3:>12.2f}{seconds / latency[KERAS]:>9.2f}x{size:>10}")
    print("* Keras: float32 weights (params x 4 bytes)")

    def versus_keras(side, goal):
        return result_row(f"{side} / {KERAS} latency", latency[side] / latency[KERAS], goal,
                          f"{latency[side] * 1e3:.2f} vs {latency[KERAS] * 1e3:.2f} ms at batch 1")

    emit("export", [
        versus_keras("SavedModel serving_default", ""),
        versus_keras("TFLite float32", "<= 1.0x"),
        versus_keras("TFLite int8", "<= 1.0x"),
        result_row("SavedModel folder / float32 weights", sizes["SavedModel serving_default"] / weights, "",
                   f"{sizes['SavedModel serving_default'] / 1e6:.2f} vs {weights / 1e6:.2f} MB"),
        result_row("TFLite float32 file / float32 weights", sizes["TFLite float32"] / weights, "<= 1.1x",
                   f"{sizes['TFLite float32'] / 1e6:.2f} vs {weights / 1e6:.2f} MB"),
        result_row("TFLite int8 file / TFLite float32 file", sizes["TFLite int8"] / sizes["TFLite float32"], "<= 0.3x",
                   f"{sizes['TFLite int8'] / 1e6:.2f} vs {sizes['TFLite float32'] / 1e6:.2f} MB"),
    ], note=f"{args.backbone} at {args.size} px" + (" (smoke)" if args.smoke else ""))


if __name__ == "__main__":
    main()
