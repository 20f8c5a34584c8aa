"""build_model: default softmax model unchanged, margin heads, multi-head training view, neck options.

A two-layer stub backbone (patched into build_model's registry lookup, so the shared registry
is untouched) keeps every model tiny; the backbones themselves are tested in their own files.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_fgvc.config.schema import Config
from keras_fgvc.config.validate import ConfigError, to_config
from keras_fgvc.models import build as build_module
from keras_fgvc.losses import build_loss
from keras_fgvc.models.build import build_model, head_keys, training_model
from keras_fgvc.training.trainer import LossTerm, Trainer
from keras_fgvc.models.registry import BackboneEntry, get_backbone
from tests.harness import check_keras_file_roundtrip, check_mixed_precision, check_predict_on_dataset

SIZE, CLASSES, BATCH = 32, 5, 4


def stub_backbone(input_shape, **kwargs):
    """Conv 3x3/2 + ReLU -> (B, 16, 16, 8) feature map; ignores weights/hub kwargs like a real builder may."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="stub_conv")(inputs)
    return keras.Model(inputs, x, name="stub")


@pytest.fixture(autouse=True)
def _stub_registry(monkeypatch):
    def lookup(name):
        return BackboneEntry("stub", stub_backbone, "standardize") if name == "stub" else get_backbone(name)

    monkeypatch.setattr(build_module, "get_backbone", lookup)


def make_cfg(**model):
    cfg = Config()
    cfg.data.image_size = SIZE
    cfg.model.backbone = "stub"
    for key, value in model.items():
        setattr(cfg.model, key, value)
    return cfg


def images(seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(BATCH, SIZE, SIZE, 3)).astype("float32")


LABELS = np.array([0, 3, 1, 4], dtype="int32")


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def l2_normalize(x, axis=-1):
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def reference_cos(embedding, kernel):
    return l2_normalize(embedding.astype("float64")) @ l2_normalize(kernel.astype("float64"), axis=0)


def reference_arcface(cos, labels, s, m):
    """Deng et al. 2019 eq. (3) via arccos, with the insightface fallback past theta + m > pi."""
    theta = np.arccos(np.clip(cos, -1.0, 1.0))
    target = np.where(theta + m <= math.pi, np.cos(theta + m), cos - math.sin(math.pi - m) * m)
    onehot = np.eye(cos.shape[1])[labels]
    return s * np.where(onehot == 1, target, cos)


def cross_entropy(logits, labels):
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def test_default_config_builds_todays_softmax_model():
    model = build_model(make_cfg(), CLASSES)
    assert Config().model.heads == ["softmax"]
    assert [t.name for t in model.inputs] == ["image"]
    assert set(model.output) == {"embedding", "logits"}
    assert head_keys(model) == ["logits"]
    view = training_model(model)
    assert [t.name for t in view.inputs] == ["image"] and set(view.output) == {"embedding", "logits", "pre_logits"}
    x = images()
    out = model(x, training=False)
    pre_logits = numpy(keras.Model(model.input, model.get_layer("pre_logits").output)(x, training=False))
    kernel, bias = model.get_layer("logits").get_weights()
    np.testing.assert_allclose(numpy(out["logits"]), pre_logits @ kernel + bias, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(numpy(out["embedding"]), l2_normalize(pre_logits), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(numpy(view({"image": x}, training=False)["pre_logits"]), pre_logits, rtol=1e-6)


def test_config_accepts_heads_and_build_rejects_unknown_or_repeated_ones():
    cfg = to_config({"model": {"heads": ["softmax", "arcface"], "margin": 0.3, "easy_margin": True}})
    assert cfg.model.heads == ["softmax", "arcface"] and cfg.model.margin == 0.3 and cfg.model.easy_margin
    for heads in (["softmax", "sphereface"], ["arcface", "arcface"], []):
        with pytest.raises(ConfigError, match="softmax, arcface, cosface"):
            build_model(make_cfg(heads=heads), CLASSES)


def test_softmax_plus_arcface_inference_is_scaled_cosine_and_training_applies_the_margin():
    s, m = 16.0, 0.5
    model = build_model(make_cfg(heads=["softmax", "arcface"], margin_scale=s), CLASSES)
    assert set(model.output) == {"embedding", "logits", "arcface_logits"}
    assert head_keys(model) == ["logits", "arcface_logits"]
    head = model.get_layer("arcface_logits")
    assert (head.s, head.m, head.easy_margin) == (s, m, False)  # m: the paper's 0.5 rad when margin=None
    x = images()
    out = model(x, training=False)
    kernel = numpy(head.kernel)
    cos = reference_cos(numpy(out["embedding"]), kernel)
    np.testing.assert_allclose(numpy(out["arcface_logits"]), s * cos, atol=1e-4)

    trainer = training_model(model)
    assert sorted(t.name for t in trainer.inputs) == ["image", "label"]
    assert {w.path for w in trainer.weights} == {w.path for w in model.weights}  # a view, not a copy
    train_out = trainer({"image": x, "label": LABELS}, training=False)
    np.testing.assert_allclose(numpy(train_out["arcface_logits"]), reference_arcface(cos, LABELS, s, m), atol=1e-4)
    np.testing.assert_allclose(numpy(train_out["logits"]), numpy(out["logits"]), atol=1e-6)
    np.testing.assert_allclose(numpy(train_out["embedding"]), numpy(out["embedding"]), atol=1e-6)
    # Label -1 (unlabelled row) gets no margin: training logits fall back to s * cos.
    no_target = trainer({"image": x, "label": np.full(BATCH, -1, "int32")}, training=False)
    np.testing.assert_allclose(numpy(no_target["arcface_logits"]), s * cos, atol=1e-4)
    check_predict_on_dataset(model, x)


def test_cosface_only_model_aliases_logits_and_uses_the_paper_margin():
    s = 10.0
    model = build_model(make_cfg(heads=["cosface"], margin_scale=s), CLASSES)
    assert head_keys(model) == ["cosface_logits"]  # the "logits" alias carries no loss of its own
    head = model.get_layer("cosface_logits")
    assert head.m == pytest.approx(0.35)  # Wang et al. 2018, sec. 4.1
    x = images(1)
    out = model(x, training=False)
    np.testing.assert_array_equal(numpy(out["logits"]), numpy(out["cosface_logits"]))
    cos = reference_cos(numpy(out["embedding"]), numpy(head.kernel))
    train_out = training_model(model)({"image": x, "label": LABELS}, training=False)
    expected = s * (cos - 0.35 * np.eye(CLASSES)[LABELS])  # CosFace eq. (4)
    np.testing.assert_allclose(numpy(train_out["cosface_logits"]), expected, atol=1e-4)
    np.testing.assert_allclose(numpy(train_out["logits"]), s * cos, atol=1e-4)


def test_explicit_margin_and_easy_margin_reach_every_margin_head():
    model = build_model(make_cfg(heads=["arcface", "cosface"], margin=0.2, easy_margin=True), CLASSES)
    arc, cos = model.get_layer("arcface_logits"), model.get_layer("cosface_logits")
    assert (arc.m, arc.easy_margin, cos.m) == (0.2, True, 0.2)
    assert head_keys(model) == ["arcface_logits", "cosface_logits"]
    # No softmax head: "logits" repeats the first head listed.
    out = model(images(), training=False)
    np.testing.assert_array_equal(numpy(out["logits"]), numpy(out["arcface_logits"]))


def test_one_fit_step_with_summed_ce_and_arcface_loss_trains_both_heads_and_the_backbone():
    s, m = 8.0, 0.5
    model = build_model(make_cfg(heads=["softmax", "arcface"], margin_scale=s, dropout=0.0, l2=0.0), CLASSES)
    x = images(2)
    out = model(x, training=False)
    cos = reference_cos(numpy(out["embedding"]), numpy(model.get_layer("arcface_logits").kernel))
    expected_loss = cross_entropy(numpy(out["logits"]), LABELS) + cross_entropy(
        reference_arcface(cos, LABELS, s, m), LABELS
    )

    terms = [LossTerm(key, "sparse_ce", 1.0, build_loss("sparse_ce")) for key in head_keys(model)]
    trainer = Trainer(training_model(model), terms)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05))
    dataset = tf.data.Dataset.from_tensors(({"image": x, "label": LABELS}, {"logits": LABELS, "arcface_logits": LABELS}))
    before = {w.path: w.numpy().copy() for w in model.trainable_weights}
    history = trainer.fit(dataset, epochs=1, verbose=0)
    # Dropout 0 and no BatchNorm in this model: the training forward pass equals inference.
    assert history.history["loss"][0] == pytest.approx(expected_loss, rel=1e-4)
    now = {w.path: w.numpy() for w in model.trainable_weights}
    changed = {path for path, value in before.items() if not np.array_equal(value, now[path])}
    assert changed == set(before), set(before) - changed  # stub conv, softmax Dense, ArcFace centres
    after = trainer.evaluate(dataset, verbose=0, return_dict=True)
    assert after["loss"] < expected_loss
    assert set(after) >= {"logits_sparse_ce", "arcface_logits_sparse_ce"}  # one CE per head, summed into "loss"


def test_model_config_and_keras_file_roundtrip_keep_both_views(tmp_path):
    model = build_model(make_cfg(heads=["softmax", "arcface"], pooling="gem", embedding_dim=6), CLASSES)
    x = images(3)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    for key, value in model(x, training=False).items():
        np.testing.assert_allclose(numpy(clone(x, training=False)[key]), numpy(value), atol=1e-5)
    reloaded = check_keras_file_roundtrip(model, x, tmp_path)
    want = training_model(model)({"image": x, "label": LABELS}, training=False)["arcface_logits"]
    got = training_model(reloaded)({"image": x, "label": LABELS}, training=False)["arcface_logits"]
    np.testing.assert_allclose(numpy(got), numpy(want), atol=1e-5)


def test_mixed_float16_keeps_every_logit_float32_in_both_views():
    x = images()
    model = check_mixed_precision(
        lambda: build_model(make_cfg(heads=["softmax", "arcface", "cosface"]), CLASSES), x
    )
    assert model.get_layer("backbone").get_layer("stub_conv").compute_dtype == "float16"  # the body did run in half precision
    keras.config.set_dtype_policy("mixed_float16")
    trainer = training_model(model)
    for key, value in trainer({"image": x, "label": LABELS}, training=False).items():
        assert keras.backend.standardize_dtype(value.dtype) == "float32", key
        assert np.all(np.isfinite(numpy(value)))


def test_neck_options_follow_the_config():
    model = build_model(
        make_cfg(pooling="gem", embedding_dim=6, neck_batchnorm=True, embedding_batchnorm=False, dropout=0.0),
        CLASSES,
    )
    names = {layer.name for layer in model.layers}
    assert {"gem_pool", "neck_bn_in", "neck_dense"} <= names and "neck_bn" not in names
    dense = model.get_layer("neck_dense")
    assert dense.use_bias  # no BatchNorm after it to absorb a bias
    x = images(4)
    features = numpy(keras.Model(model.input, model.get_layer("gem_pool").input)(x, training=False))
    p = float(numpy(model.get_layer("gem_pool").p_weight))
    pooled = np.mean(np.maximum(features, 1e-6) ** p, axis=(1, 2)) ** (1.0 / p)  # Radenovic et al. 2018
    gamma, beta, mean, var = model.get_layer("neck_bn_in").get_weights()
    eps = 1e-5  # PyTorch's BatchNorm1d epsilon (models/necks.py _BN)
    assert model.get_layer("neck_bn_in").epsilon == eps and model.get_layer("neck_bn_in").momentum == 0.9
    normed = gamma * (pooled - mean) / np.sqrt(var + eps) + beta
    kernel, bias = dense.get_weights()
    pre_logits = numpy(keras.Model(model.input, model.get_layer("pre_logits").output)(x, training=False))
    np.testing.assert_allclose(pre_logits, normed @ kernel + bias, rtol=1e-4, atol=1e-4)

    default_neck = build_model(make_cfg(embedding_dim=6), CLASSES)
    names = {layer.name for layer in default_neck.layers}
    assert "neck_bn" in names and "neck_bn_in" not in names and "avg_pool" in names
    assert not default_neck.get_layer("neck_dense").use_bias
