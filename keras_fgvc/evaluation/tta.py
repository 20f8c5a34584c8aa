"""Test-time augmentation: views are data (dicts), ``predict_tta`` averages a model over them.

A view is ``{"crop": ..., "size": S, "flip": bool, ...}``:
  - ``crop="none"``: resize the whole image to S x S (multi-scale TTA);
  - ``crop="center"``: resize the shorter side to ``shorter`` (keeping aspect), cut the central
    ``crop_size`` square, resize it to S x S;
  - ``crop="random_area"``: cut a region of the image's aspect ratio whose area is a uniform
    fraction in ``area`` (e.g. [0.8, 1.0]) at a uniform position, resize to S x S; ``seed``
    makes it repeatable (one draw per image);
  - ``flip=True`` mirrors the result horizontally.
VIPriors 2020 (seed 002, section "Experimental settings"): center crop (shorter 256, crop 224)
and random-area 80-100% crops, each at scales 224/320/380/448, each also flipped; the
probabilities are averaged.
"""

import itertools

import numpy as np
import tensorflow as tf

CROPS = ("none", "center", "random_area")
REDUCTIONS = ("mean", "normalized_mean")

VIPRIORS_SCALES = (224, 320, 380, 448)
CENTER_CROP = {"crop": "center", "shorter": 256, "crop_size": 224}
RANDOM_AREA_CROP = {"crop": "random_area", "area": [0.8, 1.0], "seed": 0}


def make_views(crops=({"crop": "none"},), sizes=(224,), flips=(False,)):
    """Every combination of crop, output size and flip as a list of view dicts.

    Example:
        >>> len(make_views([CENTER_CROP], sizes=VIPRIORS_SCALES, flips=(False, True)))
        8
    """
    return [
        {**crop, "size": int(size), "flip": bool(flip)} for crop, size, flip in itertools.product(crops, sizes, flips)
    ]


# Presets as data; a pipeline config names one (``evaluation.tta``) or lists its own views.
TTA_PRESETS: dict[str, list[dict]] = {
    "none": make_views(),
    "flip": make_views(flips=(False, True)),
    "multiscale": make_views(sizes=VIPRIORS_SCALES, flips=(False, True)),
    "vipriors_center": make_views([CENTER_CROP], sizes=VIPRIORS_SCALES, flips=(False, True)),
    "vipriors": make_views([CENTER_CROP, RANDOM_AREA_CROP], sizes=VIPRIORS_SCALES, flips=(False, True)),
}


def _resize(images, height, width, method):
    return tf.image.resize(images, (height, width), method=method)


def apply_view(images, view, method: str = "bilinear"):
    """One TTA view of a batch ``images`` [B, H, W, C] -> float32 [B, size, size, C].

    Args:
        images: a batch of images (uint8 or float), all the same size.
        view: a view dict (see module docstring).
        method: ``tf.image.resize`` interpolation.

    Example:
        >>> apply_view(batch, {"crop": "center", "shorter": 256, "crop_size": 224, "size": 320, "flip": True})
    """
    crop = view.get("crop", "none")
    if crop not in CROPS:
        raise ValueError(f"unknown TTA crop {crop!r}; known: {CROPS}")
    images = tf.cast(tf.convert_to_tensor(images), tf.float32)
    size = int(view["size"])
    height, width = int(images.shape[1]), int(images.shape[2])
    if crop == "center":
        shorter, crop_size = int(view.get("shorter", 256)), int(view.get("crop_size", 224))
        scale = shorter / min(height, width)
        new_h, new_w = max(crop_size, round(height * scale)), max(crop_size, round(width * scale))
        images = _resize(images, new_h, new_w, method)
        top, left = (new_h - crop_size) // 2, (new_w - crop_size) // 2
        images = images[:, top : top + crop_size, left : left + crop_size]
    elif crop == "random_area":
        low, high = view.get("area", (0.8, 1.0))
        rng = np.random.default_rng(view.get("seed", 0))
        crops = []
        for image in tf.unstack(images):
            side = np.sqrt(rng.uniform(low, high))  # same aspect ratio: both sides scale by sqrt(area)
            crop_h, crop_w = max(1, round(height * side)), max(1, round(width * side))
            top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
            crops.append(_resize(image[None, top : top + crop_h, left : left + crop_w], size, size, method))
        images = tf.concat(crops, axis=0)
    if images.shape[1] != size or images.shape[2] != size:
        images = _resize(images, size, size, method)
    if view.get("flip", False):
        images = images[:, :, ::-1]
    return images


def predict_tta(model_fn, images, views, reduce: str = "mean", output_key=None, method: str = "bilinear"):
    """Average a model's outputs over TTA views.

    Args:
        model_fn: callable on a float image batch (a Keras model is called with ``training=False``).
        images: a batch [B, H, W, C].
        views: list of view dicts, or the name of a preset in ``TTA_PRESETS``.
        reduce: "mean" averages outputs (probabilities); "normalized_mean" L2-normalises each
            view's output, averages, and re-normalises (embeddings).
        output_key: output to use when the model returns a dict (e.g. "embedding").
        method: resize interpolation.

    Returns:
        NumPy array [B, ...].

    Example:
        >>> probs = predict_tta(model, batch, "vipriors", output_key="probabilities")
    """
    import keras

    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    if isinstance(views, str):
        views = TTA_PRESETS[views]
    total = None
    for view in views:
        batch = apply_view(images, view, method)
        out = model_fn(batch, training=False) if isinstance(model_fn, keras.Model) else model_fn(batch)
        if isinstance(out, dict):
            out = out[output_key]
        out = np.asarray(keras.ops.convert_to_numpy(out), np.float32)
        if reduce == "normalized_mean":
            out = out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
        total = out if total is None else total + out
    mean = total / len(views)
    if reduce == "normalized_mean":
        mean = mean / np.maximum(np.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)
    return mean


def scaled_views(views, image_size: int, reference_size: int = 224) -> list[dict]:
    """``views`` written for a model trained at ``reference_size`` (VIPriors: 224), at ``image_size``.

    Every length (``size``, ``shorter``, ``crop_size``) is multiplied by image_size / reference_size,
    so the views keep their ratios to the training size: VIPriors' 224/320/380/448 become
    64/91/109/128 for a 64 px model, and its 256 -> 224 centre crop keeps 7/8 of the shorter side.

    Example:
        >>> [v["size"] for v in scaled_views(TTA_PRESETS["multiscale"], 64)][::2]
        [64, 91, 109, 128]
    """
    if isinstance(views, str):
        views = TTA_PRESETS[views]
    factor = image_size / reference_size
    lengths = ("size", "shorter", "crop_size")
    return [{**view, **{key: max(1, round(view[key] * factor)) for key in lengths if key in view}} for view in views]


def source_size(views) -> int:
    """The square size to decode images at for ``views``: their largest output or resize length."""
    return max(max(int(view["size"]), int(view.get("shorter", 0))) for view in views)


def predict_tta_batches(models_by_size: dict, batches, views, output_key: str = "logits") -> np.ndarray:
    """Class probabilities of image batches, averaged over TTA views (``predict_tta`` per batch).

    Args:
        models_by_size: ``{size: model}`` holding one model (the same weights) per view size: a
            classifier with a fixed input size is rebuilt at each size (its weights do not depend on it).
        batches: iterable of at least one image batch [B, H, W, C] at ``source_size(views)``.
        views: view dicts (``scaled_views``) or a ``TTA_PRESETS`` name.
        output_key: the logits output of the models; the softmax is averaged.

    Returns:
        float32 [N, classes], rows in the order of the batches.

    Example:
        >>> probs = predict_tta_batches({64: m64, 91: m91}, batches, scaled_views("multiscale", 64))  # doctest: +SKIP
    """
    import keras

    def probabilities(batch):
        logits = models_by_size[int(batch.shape[1])](batch, training=False)[output_key]
        return keras.ops.softmax(keras.ops.cast(logits, "float32"), axis=-1)

    return np.concatenate([predict_tta(probabilities, batch, views) for batch in batches])
