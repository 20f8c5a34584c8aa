"""Three SGD steps of the engine's Trainer under whichever backend KERAS_BACKEND names.

Run by ``test_backend_parity.py`` once per backend: ``python -m tests.backends.parity_worker OUT
[WEIGHTS]``. The model is the hotel_id smoke model (GhostNet 0.5x at 32 px, 64-d neck, ArcFace
head; dropout 0, the only random layer) trained through ``Trainer.compute_loss`` with ArcFace CE
plus center loss (whose centres are loss state, updated in the step). Initial weights come from
WEIGHTS when given (random initialisers differ between backends), else they are written to
``OUT_initial.npz``; the per-step losses and the final trainable weights go to OUT (npz)."""

import sys

import keras
import numpy as np

from keras_fgvc.config.compose import compose
from keras_fgvc.losses import build_loss
from keras_fgvc.models.build import build_model, training_model
from keras_fgvc.training.trainer import LossTerm, Trainer

CLASSES, BATCH, STEPS = 4, 8, 3
# ArcFace's scale (s = 30) makes the gradients large: at lr 1e-5 each step still moves the loss by
# ~1 (14.5 -> 13.7 -> 12.4), while the backends' float32 rounding differences stay small.
LEARNING_RATE = 1e-5


def main(out: str, weights: str | None) -> None:
    cfg = compose(["pipeline=hotel_id", "smoke=true", "model.dropout=0.0"])
    keras.utils.set_random_seed(0)
    network = training_model(build_model(cfg, CLASSES))
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
    np.savez(out, losses=np.array(losses), centres=keras.ops.convert_to_numpy(trainer.loss_state[0]), **final)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
