"""Trainer.compute_loss equals the hand-computed weighted sum (incl. center-loss state and the
distillation mix with a fixed teacher); a fit step trains the student and leaves the teacher alone."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_fgvc.losses import build_loss
from keras_fgvc.training.trainer import LossTerm, Trainer

CLASSES, DIM, BATCH = 3, 4, 6


def tiny_network(seed):
    keras.utils.set_random_seed(seed)
    image = keras.Input((2, 2, 3), name="image")
    pre = keras.layers.Dense(DIM, name="pre_logits")(keras.layers.Flatten()(image))
    logits = keras.layers.Dense(CLASSES, name="logits")(pre)
    return keras.Model({"image": image}, {"logits": logits, "pre_logits": pre})


def data():
    rng = np.random.default_rng(0)
    x = {"image": rng.uniform(0, 1, (BATCH, 2, 2, 3)).astype("float32")}
    labels = np.array([0, 1, 2, 0, 1, 2], "int32")
    return x, labels


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_weighted_sum_of_ce_and_center_loss_with_its_state_update():
    network = tiny_network(0)
    terms = [LossTerm("logits", "sparse_ce", 1.0, build_loss("sparse_ce")),
             LossTerm("pre_logits", "center", 0.1, build_loss("center", {"alpha": 0.5}, {"num_classes": CLASSES, "dim": DIM}))]
    trainer = Trainer(network, terms)
    x, labels = data()
    outputs = {k: keras.ops.convert_to_numpy(v) for k, v in network(x).items()}
    y = {"logits": labels, "pre_logits": labels}
    loss = float(trainer.compute_loss(x, y, trainer(x), training=True))
    ce = -log_softmax(outputs["logits"].astype("float64"))[np.arange(BATCH), labels].mean()
    center = 0.5 * np.mean(np.sum(outputs["pre_logits"].astype("float64") ** 2, axis=1))  # centres start at 0
    assert loss == pytest.approx(ce + 0.1 * center, rel=1e-5)
    # Wen et al. 2016 eq. 4 moved the centres towards their class means (training=True) ...
    centres = keras.ops.convert_to_numpy(trainer.loss_state[0])
    for k in range(CLASSES):
        members = outputs["pre_logits"][labels == k]
        np.testing.assert_allclose(centres[k], 0.5 * members.sum(0) / (1 + len(members)), rtol=1e-5, atol=1e-6)
    # ... and the centres are the trainer's state (checkpointed, mirrored), not trainable weights.
    assert trainer.loss_state[0] in trainer.non_trainable_variables
    assert all(v is not trainer.loss_state[0] for v in trainer.trainable_variables)


def test_distillation_with_a_fixed_teacher_is_the_hand_computed_mix():
    student, teacher_net = tiny_network(1), tiny_network(2)
    teacher = keras.Model(teacher_net.input["image"], teacher_net.output["logits"])  # bare logits, raw image in
    temperature, alpha = 2.0, 0.3
    kd = build_loss("distillation", {"temperature": temperature, "alpha": alpha})
    trainer = Trainer(student, [LossTerm("logits", "distillation", 1.0, kd)], teacher=teacher)
    x, labels = data()
    s = keras.ops.convert_to_numpy(student(x)["logits"]).astype("float64")
    t = keras.ops.convert_to_numpy(teacher(x["image"])).astype("float64")
    hard = -log_softmax(s)[np.arange(BATCH), labels].mean()
    p_t = np.exp(log_softmax(t / temperature))
    kl = np.sum(p_t * (np.log(p_t) - log_softmax(s / temperature)), axis=1).mean()
    expected = alpha * hard + (1 - alpha) * temperature**2 * kl  # Hinton et al. 2015
    assert float(trainer.compute_loss(x, {"logits": labels}, trainer(x), training=True)) == pytest.approx(expected, rel=1e-5)

    trainer.compile(optimizer=keras.optimizers.SGD(0.1))
    teacher_before = [w.numpy().copy() for w in teacher.weights]
    student_before = [w.numpy().copy() for w in student.weights]
    history = trainer.fit(tf.data.Dataset.from_tensors((x, {"logits": labels})), epochs=1, verbose=0)
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-5)
    assert history.history["logits_distillation"][0] == pytest.approx(expected, rel=1e-5)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(teacher_before, teacher.weights))
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(student_before, student.weights))
    assert not any(w is v for w in teacher.weights for v in trainer.trainable_variables)


def test_kernel_regularisers_are_added_once():
    keras.utils.set_random_seed(3)
    image = keras.Input((2, 2, 3), name="image")
    logits = keras.layers.Dense(CLASSES, kernel_regularizer=keras.regularizers.L2(0.5), name="logits")(
        keras.layers.Flatten()(image))
    network = keras.Model({"image": image}, {"logits": logits})
    trainer = Trainer(network, [LossTerm("logits", "sparse_ce", 2.0, build_loss("sparse_ce"))])
    x, labels = data()
    z = keras.ops.convert_to_numpy(network(x)["logits"]).astype("float64")
    ce = -log_softmax(z)[np.arange(BATCH), labels].mean()
    l2 = 0.5 * np.sum(network.get_layer("logits").kernel.numpy().astype("float64") ** 2)
    loss = float(trainer.compute_loss(x, {"logits": labels}, trainer(x), training=False))
    assert loss == pytest.approx(2.0 * ce + l2, rel=1e-5)
