"""SavedModel export with signatures that take encoded image bytes.

``serving_default``: batch of JPEG/PNG bytes -> {"probabilities", "top_class"} (the argmax, or for a
binary model exported with a decision threshold, P(1) >= threshold);
``embed``: the same bytes -> {"embedding"} (L2-normalised). Decoding, resizing and
normalisation are inside, so a client sends files as they are. ``from_pixels``: decoded float
pixels -> the model's outputs (``export.archive``; how a JAX-trained model exports too).
"""

import os
import shutil
import tempfile

import keras
import tensorflow as tf

from keras_fgvc.atomic import replace_dir
from keras_fgvc.data.decode import model_pixels
from keras_fgvc.export.archive import add_tf_endpoint, model_archive
from keras_fgvc.errors import UserError

# The binary decision threshold a SavedModel's top_class uses, next to saved_model.pb.
DECISION_FILE = "decision.json"


def check_writable(path: str, overwrite: bool):
    """Fail before any work when an export would clobber an existing one."""
    if os.path.exists(path) and not overwrite:
        raise UserError(f"{path} already exists; set export.overwrite=true to replace it")


def export_saved_model(model: keras.Model, path: str, image_size: int, channels: int = 3, overwrite: bool = False,
                       classes=None, resize: str = "squash", decision_threshold: float | None = None) -> str:
    """Write ``model`` as a SavedModel at ``path`` (atomically: temp dir + rename).

    Args:
        model: a model from ``build_model`` (outputs ``logits`` and ``embedding``).
        path: target directory, e.g. ``saved_models/fivek/default/mask``.
        image_size: side the images are resized to, as in training.
        channels: 3 (RGB) or 1 (greyscale).
        overwrite: replace an existing export.
        classes: the data set's class ids in index order (``data.classes``): ``serving_default`` then
            also returns ``class_id`` (the original id of ``top_class``, as a string) and the
            export folder holds ``classes.json``.
        resize: the resize policy used in training (``data.decode.RESIZE_POLICIES``).
        decision_threshold: binary models: ``top_class`` is 1 where P(class 1) >= this (a threshold
            chosen on validation, e.g. for F1 on imbalanced labels) instead of the argmax; it is
            also written to ``decision.json`` in the export folder.

    Example:
        >>> export_saved_model(model, "saved_models/fivek/default/mask", image_size=64)  # doctest: +SKIP
        >>> tf.saved_model.load("saved_models/fivek/default/mask").signatures["serving_default"](tf.constant([jpeg]))  # doctest: +SKIP
    """
    check_writable(path, overwrite)
    if decision_threshold is not None and int(model.output["logits"].shape[-1]) != 2:
        raise ValueError(f"decision_threshold needs a binary model, got {model.output['logits'].shape[-1]} classes")
    spec = tf.TensorSpec([None], tf.string, name="image_bytes")
    archive, forward = model_archive(model, image_size, channels)

    def pixels(image_bytes):
        return encoded_batch_pixels(image_bytes, image_size, channels, resize)

    class_ids = tf.constant([str(c) for c in classes]) if classes is not None else None

    def serve(image_bytes):
        logits = forward(pixels(image_bytes))["logits"]
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        if decision_threshold is None:
            top_class = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        else:
            top_class = tf.cast(probabilities[:, 1] >= decision_threshold, tf.int32)
        outputs = {"probabilities": probabilities, "top_class": top_class}
        if class_ids is not None:
            outputs["class_id"] = tf.gather(class_ids, top_class)
        return outputs

    def embed(image_bytes):
        return {"embedding": tf.cast(forward(pixels(image_bytes))["embedding"], tf.float32)}

    add_tf_endpoint(archive, "serving_default", serve, [spec])
    add_tf_endpoint(archive, "embed", embed, [spec])

    def extra_files(folder):
        if classes is not None:
            from keras_fgvc.data import classes as class_map

            class_map.save(classes, folder)
        if decision_threshold is not None:
            import json

            with open(os.path.join(folder, DECISION_FILE), "w") as f:
                json.dump({"decision_threshold": float(decision_threshold), "positive_class": 1}, f)

    return write_archive(archive, path, extra_files)


def encoded_batch_pixels(image_bytes, image_size: int, channels: int, resize: str):
    """Encoded images [B] -> float32 pixels [B, S, S, C] exactly as training decodes them
    (``data.decode.model_pixels``): the train/serve parity of every exported signature."""
    return tf.map_fn(
        lambda encoded: model_pixels(encoded, image_size, channels, resize),
        image_bytes,
        fn_output_signature=tf.TensorSpec([image_size, image_size, channels], tf.float32),
    )


def write_archive(archive, path: str, extra_files=None) -> str:
    """Write a ``keras.export.ExportArchive`` (and ``extra_files(folder)``'s files) to a staging
    folder beside ``path``, then rename it onto ``path``: a reader sees the old export or the new
    one, never half of one."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}-")
    try:
        archive.write_out(staging, verbose=False)
        if extra_files is not None:
            extra_files(staging)
        replace_dir(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path
