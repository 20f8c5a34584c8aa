import keras
import numpy as np
import pytest

from keras_fgvc.config.validate import ConfigError
from keras_fgvc.losses import (
    BatchAllTripletLoss,
    BatchHardTripletLoss,
    CenterLoss,
    HardInstanceMining,
    KnowledgeDistillationLoss,
    LabelSmoothingCrossEntropy,
    MaskedBinaryCrossentropy,
    MaskedSparseCategoricalCrossentropy,
    PreLogitNormLoss,
    apply_loss,
    build_loss,
    check_loss,
    loss_names,
)
from keras_fgvc.losses.registry import LOSSES, register_loss

CONTEXT = {"num_classes": 4, "dim": 3, "output": "embedding"}
EXPECTED_NAMES = [
    "batch_all_triplet", "batch_hard_triplet", "center", "distillation", "focal", "hard_mining",
    "label_smoothing_ce", "masked_bce", "masked_sparse_ce", "prelogit_norm", "sparse_ce", "weighted_ce",
]


def test_importing_the_package_registers_every_loss():
    assert loss_names() == EXPECTED_NAMES


def test_unknown_name_lists_known_losses_and_suggests_one():
    with pytest.raises(ConfigError) as error:
        check_loss("centre", {})
    message = str(error.value)
    assert "unknown loss 'centre'" in message and "Did you mean 'center'?" in message
    assert "batch_hard_triplet" in message and "\n" not in message


def test_unknown_kwarg_lists_accepted_ones_and_suggests_one():
    with pytest.raises(ConfigError) as error:
        check_loss("batch_hard_triplet", {"margn": 0.3})
    assert str(error.value) == (
        "loss 'batch_hard_triplet' got unknown kwarg 'margn'; accepted: margin, soft_margin, squared."
        " Did you mean 'margin'?"
    )


def test_context_keys_and_required_kwargs():
    with pytest.raises(ConfigError, match="engine sets"):
        check_loss("center", {"num_classes": 10})
    with pytest.raises(ConfigError, match=r"'hard_mining' needs kwarg\(s\) loss"):
        check_loss("hard_mining", {"fraction": 0.5})


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"loss": "sparse_cee"}, "Did you mean 'sparse_ce'"),
        ({"loss": "center"}, "cannot wrap 'center'"),
        ({"loss": "distillation"}, "cannot wrap 'distillation'"),
        ({"loss": "label_smoothing_ce", "loss_kwargs": {"eps": 0.1}}, "'label_smoothing_ce' got unknown kwarg 'eps'"),
        ({"loss": "sparse_ce", "fraction": 1.5}, "fraction"),
        ({"loss": "sparse_ce", "top_k": 0}, "top_k"),
        ({"loss": "sparse_ce", "top_k": 2, "fraction": 0.5}, "not both"),
    ],
)
def test_hard_mining_checks_its_nested_loss(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        check_loss("hard_mining", kwargs)


def test_valid_configs_pass_the_check():
    check_loss("center", {"alpha": 0.3})
    check_loss("hard_mining", {"loss": "masked_sparse_ce", "top_k": 4})
    check_loss("sparse_ce", None)


def test_builder_gets_only_the_context_keys_it_names():
    center = build_loss("center", {"alpha": 0.25}, CONTEXT)
    assert (type(center), center.num_classes, center.dim, center.alpha) == (CenterLoss, 4, 3, 0.25)
    assert tuple(center.centers.shape) == (4, 3)
    ls = build_loss("label_smoothing_ce", {"epsilon": 0.2}, CONTEXT)  # ignores num_classes/dim/output
    assert (type(ls), ls.epsilon) == (LabelSmoothingCrossEntropy, 0.2)
    with pytest.raises(ValueError, match="context key 'dim'"):
        build_loss("center", {}, {"num_classes": 4})


def test_hard_mining_builder_passes_context_to_its_base():
    seen = {}

    @register_loss("_probe_loss")
    def probe(num_classes, output, **kwargs):
        seen.update(num_classes=num_classes, output=output, reduction=kwargs.get("reduction"))
        return LabelSmoothingCrossEntropy(**kwargs)

    try:
        loss = build_loss("hard_mining", {"loss": "_probe_loss"}, CONTEXT)
    finally:
        LOSSES.pop("_probe_loss")
    assert seen == {"num_classes": 4, "output": "embedding", "reduction": "none"}
    assert isinstance(loss, HardInstanceMining)


def test_registration_rules():
    with pytest.raises(ValueError, match="twice"):
        register_loss("center")(CenterLoss)
    with pytest.raises(ValueError, match="reduction"):
        register_loss("_no_reduction")(lambda scale=1.0: None)
    assert "_no_reduction" not in LOSSES


def test_build_loss_reduction_override():
    assert build_loss("sparse_ce").reduction == "sum_over_batch_size"
    assert build_loss("masked_bce", reduction="none").reduction == "none"


def test_apply_loss_dispatches_on_the_protocol():
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 0, 2])
    embedding = rng.normal(size=(4, 3)).astype("float32")
    student, teacher = rng.normal(size=(2, 4, 4)).astype("float32")
    # Teacher: the same value as call_with_teacher; missing teacher is an error.
    kd = build_loss("distillation", {"alpha": 0.5}, CONTEXT)
    assert float(apply_loss(kd, labels, student, teacher_pred=teacher)) == pytest.approx(
        float(kd.call_with_teacher(labels, student, teacher))
    )
    with pytest.raises(ValueError, match="teacher_pred"):
        apply_loss(kd, labels, student)
    # Stateful: centres move only with training=True.
    center = build_loss("center", {}, CONTEXT)
    apply_loss(center, labels, embedding, training=False)
    assert np.all(keras.ops.convert_to_numpy(center.centers) == 0.0)
    apply_loss(center, labels, embedding, training=True)
    assert np.any(keras.ops.convert_to_numpy(center.centers) != 0.0)
    # Plain: the loss's own call.
    triplet = build_loss("batch_hard_triplet", {}, CONTEXT)
    assert float(apply_loss(triplet, labels, embedding)) == pytest.approx(float(triplet(labels, embedding)))


INSTANCES = [
    LabelSmoothingCrossEntropy(0.2),
    MaskedSparseCategoricalCrossentropy(from_logits=False),
    MaskedBinaryCrossentropy(),
    BatchHardTripletLoss(0.4, squared=True),
    BatchAllTripletLoss(soft_margin=True),
    CenterLoss(4, 3, alpha=0.1),
    PreLogitNormLoss(p=2.0),
    KnowledgeDistillationLoss(5.0, 0.2),
    HardInstanceMining(LabelSmoothingCrossEntropy(reduction="none"), top_k=2),
]


@pytest.mark.parametrize("loss", INSTANCES, ids=lambda loss: type(loss).__name__)
def test_keras_serialization_roundtrip_by_registered_name(loss):
    serialized = keras.saving.serialize_keras_object(loss)
    assert serialized["registered_name"] == f"keras_fgvc>{type(loss).__name__}"
    clone = keras.saving.deserialize_keras_object(serialized)
    assert type(clone) is type(loss)
    assert clone.get_config() == loss.get_config()


GRAPH_CASES = {
    "sparse_ce": ("labels", "logits"),
    "label_smoothing_ce": ("labels", "logits"),
    "masked_sparse_ce": ("nan_labels", "logits"),
    "masked_bce": ("nan_multilabel", "logits"),
    "batch_hard_triplet": ("labels", "embedding"),
    "batch_all_triplet": ("labels", "embedding"),
    "center": ("labels", "embedding"),
    "prelogit_norm": ("labels", "embedding"),
    "distillation": ("labels", "logits"),
    "hard_mining": ("labels", "logits"),
    "focal": ("labels", "logits"),
    "weighted_ce": ("labels", "logits"),
}


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_graph_mode_with_unknown_batch_matches_eager(name):
    """fit traces the step with a free batch dimension; every loss must trace and agree with eager."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    labels = np.array([0, 1, 0, 2, 1, 2], "float32")
    nan_labels = labels.copy()
    nan_labels[1] = np.nan
    nan_multilabel = rng.integers(0, 2, size=(6, 4)).astype("float32")
    nan_multilabel[0, 0] = np.nan
    data = {
        "labels": labels, "nan_labels": nan_labels, "nan_multilabel": nan_multilabel,
        "logits": rng.normal(size=(6, 4)).astype("float32"),
        "embedding": rng.normal(size=(6, 3)).astype("float32"),
    }
    kwargs = {"hard_mining": {"loss": "label_smoothing_ce"}, "weighted_ce": {"class_weight": [1.0, 2.0, 0.5, 1.0]}}.get(name, {})
    loss = build_loss(name, kwargs, CONTEXT)
    y_key, p_key = GRAPH_CASES[name]
    y, p = data[y_key], data[p_key]
    teacher = p[::-1].copy() if getattr(loss, "needs_teacher", False) else None

    def run(y, p):
        return apply_loss(loss, y, p, teacher_pred=teacher)

    spec = [tf.TensorSpec((None,) + y.shape[1:], "float32"), tf.TensorSpec((None,) + p.shape[1:], "float32")]
    graph_value = tf.function(run, input_signature=spec)(y, p)
    assert graph_value.shape == ()
    assert float(graph_value) == pytest.approx(float(run(y, p)), rel=1e-6)
    assert np.isfinite(float(graph_value)) and float(graph_value) > 0.0
