"""Two SGD steps of the engine's Trainer under whichever backend KERAS_BACKEND names.

Run by ``test_backend_parity.py`` once per backend: ``python -m tests.backends.parity_worker OUT
[WEIGHTS]``. The model is the hotel_id smoke model (GhostNet 0.5x at 32 px, 64-d neck, ArcFace
head; dropout 0, the only random layer) trained through ``Trainer.compute_loss`` with ArcFace CE
plus center loss (whose centres are loss state, updated in the step). Initial weights come from
WEIGHTS when given (random initialisers differ between backends), else they are written to
``OUT_initial.npz``; the per-step losses and the final trainable weights go to OUT (npz). Under JAX
the trained model is also exported (embedding and retrieval SavedModels, jax2tf inside) and served
from TensorFlow on PNG bytes; the served answers and the Keras embeddings go to OUT too."""

import sys

import keras
import numpy as np

from keras_fgvc.config.compose import compose
from keras_fgvc.losses import build_loss
from keras_fgvc.models.build import build_model, training_model
from keras_fgvc.training.trainer import LossTerm, Trainer

# Two steps: the loss after one update is the last one this check compares across backends. On an
# AVX-512 machine (2026-11-24) the third step's loss differed by 0.4% between TensorFlow and JAX and
# by 0.23% between TensorFlow with and without oneDNN, after agreeing to 4e-5 one step earlier. That
# jump is float32's, not the engine's; most likely (not verified) a gradient discontinuity, such as a
# ReLU input within rounding of 0, crossed on one side only. Older CPUs had shown 2e-5 after 2 steps
# and 7e-5 after 3.
CLASSES, BATCH, STEPS = 4, 8, 2
# ArcFace's scale (s = 30) makes the gradients large: at lr 1e-5 each step still moves the loss by
# ~1 (14.5 -> 13.7), while the backends' float32 rounding differences stay small.
LEARNING_RATE = 1e-5


def main(out: str, weights: str | None) -> None:
    cfg = compose(["pipeline=hotel_id", "smoke=true", "model.dropout=0.0"])
    keras.utils.set_random_seed(0)
    model = build_model(cfg, CLASSES)
    network = training_model(model)
    dim = int(network.output["pre_logits"].shape[-1])
    center = build_loss("center", {"alpha": 0.5}, {"num_classes": CLASSES, "dim": dim})
    terms = [LossTerm("arcface_logits", "sparse_ce", 1.0, build_loss("sparse_ce")),
             LossTerm("pre_logits", "center", 0.01, center)]
    trainer = Trainer(network, terms)
    rng = np.random.default_rng(0)
    size = cfg.data.image_size
    images = rng.uniform(0, 255, (BATCH, size, size, 3)).astype("float32")
    labels = np.arange(BATCH, dtype="int32") % CLASSES
    x, y = {"image": images, "label": labels}, {"arcface_logits": labels, "pre_logits": labels}
    # jit as each backend's engine runs it (training.precision: XLA under JAX, none on a TF CPU)
    trainer.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), jit_compile=keras.backend.backend() == "jax")
    trainer(x)  # builds every variable before the initial weights are loaded
    if weights is None:
        np.savez(out.replace(".npz", "_initial.npz"),
                 **{f"w{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(trainer.weights)})
    else:
        stored = np.load(weights)
        assert len(stored.files) == len(trainer.weights), (len(stored.files), len(trainer.weights))
        for i, variable in enumerate(trainer.weights):
            variable.assign(stored[f"w{i}"])
    losses = [float(trainer.train_on_batch(x, y, return_dict=True)["loss"]) for _ in range(STEPS)]
    final = {f"final{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(trainer.trainable_weights)}
    exported = export_and_serve(model, images, out.replace(".npz", "_export"), size) \
        if keras.backend.backend() == "jax" else {}
    np.savez(out, losses=np.array(losses), centres=keras.ops.convert_to_numpy(trainer.loss_state[0]), **final,
             **exported)


def export_and_serve(model, images, folder: str, size: int) -> dict:
    """The trained model's retrieval SavedModel, written from this (JAX) process
    (jax2tf inside) and served by TensorFlow on the PNG bytes of ``images``, with the Keras model's
    own embeddings of the same pixels: what a model trained on a TPU ships as."""
    import io

    import tensorflow as tf
    from PIL import Image

    from keras_fgvc.export.retrieval_model import export_retrieval_model

    pixels = np.round(images).astype("uint8")  # PNG is lossless: the served pixels are these
    encoded = []
    for image in pixels:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    keras_embeddings = keras.ops.convert_to_numpy(model(pixels.astype("float32"), training=False)["embedding"])
    unit = keras_embeddings / np.linalg.norm(keras_embeddings, axis=1, keepdims=True)
    # A gallery of the first images' unit embeddings, one class per 2 rows (the rest are queries).
    gallery, gallery_labels = unit[:6], np.array([0, 0, 1, 1, 2, 2])
    # One export (one jax2tf conversion) serves both: the retrieval model's embed signature is the
    # embedding model's, L2-normalised, and export_saved_model wraps the model the same way.
    export_retrieval_model(model, f"{folder}/retrieval", size, gallery, gallery_labels, ["a", "b", "c"], k=3)
    reloaded = tf.saved_model.load(f"{folder}/retrieval")
    served = reloaded.signatures["embed"](image_bytes=tf.constant(encoded))
    ranked = reloaded.signatures["serving_default"](image_bytes=tf.constant(encoded))
    return {"keras_embedding": keras_embeddings, "served_embedding": served["embedding"].numpy(),
            "gallery": gallery, "gallery_labels": gallery_labels,
            "served_labels": ranked["label"].numpy(), "served_scores": ranked["score"].numpy()}


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
