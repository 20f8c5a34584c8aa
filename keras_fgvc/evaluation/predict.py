"""Prediction over a Table: the same tf.data decode + resize as training, no augmentation."""

import numpy as np


def predict_table(model, table, image_size: int, batch_size: int = 64, output: str = "logits", channels: int = 3,
                  resize: str = "squash", cache: bool = True, cache_dir=None, mirror: bool = False):
    """``model``'s ``output`` for every row of ``table``, in row order, as a NumPy array.

    Args:
        model: an inference model (``build_model``), dict or single output.
        table: a Table with a ``path`` column (may be empty).
        image_size: the side the model was trained at.
        batch_size: prediction batch.
        output: the output key to return for dict-output models.
        channels: image channels.
        resize: the resize policy the model was trained with.
        cache, cache_dir: read decoded pixels from the shared pixel cache (``data.pixel_cache``).
        mirror: predict the horizontally mirrored images instead.

    Example:
        >>> logits = predict_table(model, test_rows, 64)  # (len(test_rows), classes)  # doctest: +SKIP
    """
    from keras_fgvc.data.pipeline import PipelineSpec, build
    from keras_fgvc.tracking.progress import predict_verbosity

    predicted_output = model.output[output] if isinstance(model.output, dict) else model.output
    if len(table) == 0:
        return np.zeros((0, *predicted_output.shape[1:]), "float32")
    spec = PipelineSpec(image_size, batch_size, channels=channels, resize=resize, cache=cache, cache_dir=cache_dir)
    images = build(table, spec, training=False).map(lambda inputs: inputs["image"])
    if mirror:  # [batch, height, width, channels]: reverse the width axis
        images = images.map(lambda batch: batch[:, :, ::-1])
    predicted = model.predict(images, verbose=predict_verbosity())
    return np.asarray(predicted[output] if isinstance(predicted, dict) else predicted)


def predict_probabilities(model, table, image_size: int, batch_size: int = 64, flip_tta: bool = False,
                          **options) -> np.ndarray:
    """Softmax of ``predict_table``'s logits: float32 [rows, classes] (``options``: see predict_table).

    ``flip_tta``: the mean of the softmax over each image and its horizontal mirror (test-time
    augmentation, ``evaluation.tta``'s "flip" preset, batched through ``model.predict``).
    """
    views = (False, True) if flip_tta else (False,)
    total = None
    for mirror in views:
        logits = predict_table(model, table, image_size, batch_size, mirror=mirror, **options).astype("float64")
        if len(logits) == 0:
            return logits.astype("float32")
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        total = probabilities if total is None else total + probabilities
    return (total / len(views)).astype("float32")
