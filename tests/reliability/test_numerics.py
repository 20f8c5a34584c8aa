"""Margin heads and metric losses stay finite at the degenerate inputs training meets, and mixed
precision keeps logits and losses float32 (issue 21, "Numerics").

What the component tests already prove is not repeated here: ArcFace/CosFace gradients at
cos = +-1 on axis-aligned centres and float32 logits under mixed_float16 (tests/layers/test_margin.py,
tests/models/test_build.py); triplet losses with one duplicated pair and with a batch of one class
(tests/losses/test_triplet.py). This file adds: the margin heads through the engine's loss
(sparse_ce of the margin logits) at identical and zero embeddings, a zero class centre, an
embedding equal / opposite to a random (not axis-aligned) class centre and a batch of one class;
triplet losses at all-identical, all-zero and antipodal embeddings and a batch of one sample, in
every variant; center loss at the same inputs, its eq. (4) update included; and the whole model
+ Trainer under mixed_bfloat16.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_fgvc.layers import ArcFace, CosFace
from keras_fgvc.losses import BatchAllTripletLoss, BatchHardTripletLoss, CenterLoss, build_loss
from keras_fgvc.models import build as build_module
from keras_fgvc.models.build import build_model, head_keys, training_model
from keras_fgvc.models.registry import BackboneEntry, get_backbone
from keras_fgvc.training.trainer import LossTerm, Trainer

CLASSES, DIM, BATCH = 3, 4, 4
RNG = np.random.default_rng(21)
CENTRES = RNG.normal(size=(DIM, CLASSES)).astype("float32")  # the head's kernel: one column per class
LABELS = np.array([0, 1, 2, 0])


def finite(*arrays):
    return all(np.all(np.isfinite(keras.ops.convert_to_numpy(a))) for a in arrays)


def margin_step(head_cls, embedding, labels, kernel, **kwargs):
    """(loss, logits, d loss / d embedding, d loss / d kernel) of sparse_ce on the head's margin logits."""
    head = head_cls(CLASSES, s=30.0, **kwargs)
    head(embedding)
    head.kernel.assign(kernel)
    x = tf.constant(embedding)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = head(x, tf.constant(labels))
        loss = build_loss("sparse_ce")(labels, logits)
    grad_x, grad_kernel = tape.gradient(loss, [x, head.kernel])
    return loss, logits, grad_x, grad_kernel


def _embedding_cases():
    """name -> (embedding, labels, kernel): the degenerate inputs of issue 21."""
    targets = CENTRES[:, LABELS].T  # row i: the centre of its own class
    zero_centre = CENTRES.copy()
    zero_centre[:, 0] = 0.0
    return {
        "identical_embeddings": (np.tile(RNG.normal(size=(1, DIM)), (BATCH, 1)).astype("float32"), LABELS, CENTRES),
        "zero_embeddings": (np.zeros((BATCH, DIM), "float32"), LABELS, CENTRES),
        "zero_class_centre": (RNG.normal(size=(BATCH, DIM)).astype("float32"), LABELS, zero_centre),
        "cos_plus_one": (2.5 * targets, LABELS, CENTRES),  # embedding along its class centre
        "cos_minus_one": (-2.5 * targets, LABELS, CENTRES),  # embedding opposite its class centre
        "one_class_batch": (RNG.normal(size=(BATCH, DIM)).astype("float32"), np.full(BATCH, 1), CENTRES),
    }


CASES = _embedding_cases()
HEADS = [(ArcFace, {}), (ArcFace, {"easy_margin": True}), (CosFace, {})]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("head_cls,kwargs", HEADS, ids=["arcface", "arcface_easy", "cosface"])
def test_margin_head_loss_and_gradients_are_finite(head_cls, kwargs, case):
    embedding, labels, kernel = CASES[case]
    loss, logits, grad_x, grad_kernel = margin_step(head_cls, embedding, labels, kernel, **kwargs)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert finite(loss, logits, grad_x, grad_kernel), case
    # Logits are s * cos (the target's shifted by the margin): never beyond s * (1 + m) in magnitude.
    assert np.abs(keras.ops.convert_to_numpy(logits)).max() <= 30.0 * 1.5 + 1e-3


@pytest.mark.parametrize("head_cls", [ArcFace, CosFace])
def test_cos_plus_and_minus_one_give_the_published_target_logit(head_cls):
    """The exact values at the boundary, for centres in general position (cos computed, then clipped)."""
    s, m = 30.0, (0.5 if head_cls is ArcFace else 0.35)
    for sign, case in ((1.0, "cos_plus_one"), (-1.0, "cos_minus_one")):
        embedding, labels, kernel = CASES[case]
        _, logits, _, _ = margin_step(head_cls, embedding, labels, kernel)
        target = keras.ops.convert_to_numpy(logits)[np.arange(BATCH), labels]
        if head_cls is CosFace:
            expected = s * (sign - m)
        elif sign > 0:
            expected = s * np.cos(m)  # cos(0 + m)
        else:
            expected = s * (-1.0 - np.sin(np.pi - m) * m)  # theta + m > pi: the insightface fallback
        np.testing.assert_allclose(target, expected, atol=2e-2)


TRIPLET_VARIANTS = [{}, {"squared": True}, {"soft_margin": True}]
TRIPLET_INPUTS = {
    "identical_embeddings": (np.ones((4, 3), "float32"), np.array([0, 0, 1, 1])),
    "zero_embeddings": (np.zeros((4, 3), "float32"), np.array([0, 0, 1, 1])),
    # Unit embeddings, each class's two samples opposite (the cos = -1 case of a normalised embedding).
    "antipodal": (np.array([[1, 0, 0], [-1, 0, 0], [1, 0, 0], [-1, 0, 0]], "float32"), np.array([0, 0, 1, 1])),
    "one_sample": (np.ones((1, 3), "float32"), np.array([0])),
}


def value_and_grad(loss_fn, labels, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = loss_fn(labels, x)
    return value, tape.gradient(value, x)


@pytest.mark.parametrize("case", sorted(TRIPLET_INPUTS))
@pytest.mark.parametrize("kwargs", TRIPLET_VARIANTS, ids=["hinge", "squared", "soft"])
@pytest.mark.parametrize("cls", [BatchHardTripletLoss, BatchAllTripletLoss])
def test_triplet_losses_are_finite_at_degenerate_embeddings(cls, kwargs, case):
    x, labels = TRIPLET_INPUTS[case]
    loss = cls(margin=0.3, **kwargs)
    value, grad = value_and_grad(loss, labels, x)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    assert finite(value, grad), case
    value = float(value)
    if case == "one_sample":  # no anchor has a positive: nothing to average
        assert value == 0.0 and np.all(grad.numpy() == 0.0)
    elif case in ("identical_embeddings", "zero_embeddings"):
        # Every distance is 0: the hinge sits at the margin (soft: softplus(0) = log 2).
        assert value == pytest.approx(np.log(2.0) if loss.soft_margin else 0.3, rel=1e-6)
    else:  # antipodal: d(a, p) = 2 (squared 4), d(a, n) = 0 or 2 -> a positive loss pulling positives together
        assert value > 0.0 and np.abs(grad.numpy()).max() > 0.0


CENTER_INPUTS = {
    "zero_embeddings_zero_centres": (np.zeros((BATCH, DIM), "float32"), LABELS, np.zeros((CLASSES, DIM), "float32")),
    "identical_embeddings": (np.ones((BATCH, DIM), "float32"), LABELS, CENTRES.T.copy()),
    "embedding_equals_centre": (CENTRES.T[LABELS].copy(), LABELS, CENTRES.T.copy()),
    "embedding_opposite_centre": (-CENTRES.T[LABELS], LABELS, CENTRES.T.copy()),
    "one_class_batch": (RNG.normal(size=(BATCH, DIM)).astype("float32"), np.full(BATCH, 2), CENTRES.T.copy()),
}


@pytest.mark.parametrize("case", sorted(CENTER_INPUTS))
def test_center_loss_and_its_update_are_finite(case):
    x, labels, centres = CENTER_INPUTS[case]
    loss = CenterLoss(CLASSES, DIM, alpha=0.5)
    loss.centers.assign(centres)
    value, grad = value_and_grad(lambda y, e: loss.compute(y, e, training=True), labels, x)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    assert finite(value, grad, loss.centers), case
    expected = 0.5 * ((x - centres[labels]) ** 2).sum(axis=1).mean()  # Wen et al. eq. (2), batch mean
    assert float(value) == pytest.approx(expected, rel=1e-5, abs=1e-7)
    np.testing.assert_allclose(grad.numpy(), (x - centres[labels]) / len(x), atol=1e-6)  # eq. (3)
    if case == "one_class_batch":  # eq. (4): c <- c - alpha * n (c - mean x) / (1 + n); other centres stay
        moved = centres[2] - 0.5 * (BATCH * centres[2] - x.sum(axis=0)) / (1 + BATCH)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(loss.centers)[2], moved, atol=1e-5)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(loss.centers)[:2], centres[:2])


# --- mixed precision: logits and losses float32 under mixed_bfloat16 ------------------------------------


SIZE = 16


def stub_backbone(input_shape, **kwargs):
    """Conv 3x3/2 + ReLU: the body whose compute dtype the policy sets (as tests/models/test_build.py)."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="stub_conv")(inputs)
    return keras.Model(inputs, x, name="stub")


@pytest.fixture
def mixed_bfloat16(monkeypatch):
    monkeypatch.setattr(build_module, "get_backbone",
                        lambda name: BackboneEntry("stub", stub_backbone, "standardize") if name == "stub"
                        else get_backbone(name))
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def stub_config():
    from keras_fgvc.config.schema import Config

    cfg = Config()
    cfg.data.image_size = SIZE
    cfg.model.backbone = "stub"
    cfg.model.heads = ["softmax", "arcface", "cosface"]
    cfg.model.embedding_dim = DIM
    return cfg


def test_mixed_bfloat16_keeps_logits_and_every_loss_float32(mixed_bfloat16):
    model = build_model(stub_config(), CLASSES)
    assert model.get_layer("backbone").get_layer("stub_conv").compute_dtype == "bfloat16"  # the policy applies
    network = training_model(model)
    x = np.random.default_rng(0).uniform(0, 255, (BATCH, SIZE, SIZE, 3)).astype("float32")
    inputs = {"image": x, "label": LABELS.astype("int32")}
    terms = [LossTerm(key, "sparse_ce", 1.0, build_loss("sparse_ce")) for key in head_keys(model)]
    terms += [LossTerm("pre_logits", "center", 0.1, build_loss("center", {}, {"num_classes": CLASSES, "dim": DIM})),
              LossTerm("embedding", "batch_hard_triplet", 1.0, build_loss("batch_hard_triplet"))]
    trainer = Trainer(network, terms)
    targets = {term.output: LABELS for term in terms}
    with tf.GradientTape() as tape:
        outputs = trainer(inputs, training=True)
        values = [term.compute(targets, outputs, True) for term in terms]
        total = trainer.compute_loss(inputs, targets, outputs, training=True)
    dtypes = {key: keras.backend.standardize_dtype(value.dtype) for key, value in outputs.items()}
    assert set(dtypes) == {"logits", "arcface_logits", "cosface_logits", "embedding", "pre_logits"}
    assert set(dtypes.values()) == {"float32"}, dtypes
    assert [keras.backend.standardize_dtype(v.dtype) for v in values] == ["float32"] * len(terms)
    assert keras.backend.standardize_dtype(total.dtype) == "float32"
    assert finite(total, *values) and float(total) > 0.0
    grads = tape.gradient(total, trainer.trainable_weights)
    assert {keras.backend.standardize_dtype(w.dtype) for w in trainer.trainable_weights} == {"float32"}
    assert all(g is not None for g in grads) and finite(*grads)


@pytest.mark.parametrize("name", ["sparse_ce", "label_smoothing_ce", "batch_hard_triplet", "batch_all_triplet",
                                  "center"])
def test_losses_return_float32_for_bfloat16_predictions(mixed_bfloat16, name):
    """A loss given half-precision predictions (a head someone left on the policy) still answers float32."""
    loss = build_loss(name, {}, {"num_classes": CLASSES, "dim": DIM, "output": "x"})
    width = CLASSES if name.endswith("_ce") else DIM
    y_pred = keras.ops.cast(RNG.normal(size=(BATCH, width)), "bfloat16")
    value = loss(LABELS, y_pred)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    assert finite(value)
