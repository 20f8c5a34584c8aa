"""The fine-tuning recipe for pretrained backbones (training/finetune.py), on a hub module.

The issue it answers: on the real 5K set an ImageNet MobileNetV2 hub module fine-tuned with SGD
0.01 reached training accuracy 0.99 but held-out accuracy 0.471, against 0.983 for the frozen
backbone with a trained head. Here the same happens in miniature: a small CNN with BatchNorm is
pretrained on colour textures (4 stripe orientations), saved as a hub-format SavedModel with
BatchNorm momentum 0.999 (what long-pretrained ImageNet networks such as the hub MobileNetV2 have),
and fine-tuned through the engine on a shifted task: the same classes in greyscale at 35%
brightness, 240 images, 15 SGD steps per epoch (~90-120 steps, as in the issue).

(a) frozen backbone + head, (b) the plain recipe (everything trains, BatchNorm in training mode),
(c) the pretrained recipe (``recipe=auto``: head phase, then BatchNorm frozen, backbone LR x0.1,
warm-up). Held-out accuracy at inference, measured while writing this test (seeds 0-4):

    seed   (a) frozen   (b) plain: inference / batch statistics / training   (c) recipe
    0      0.790        0.443 / 0.897 / 0.938                                0.897
    1      0.723        0.423 / 0.917 / 0.933                                0.733
    2      0.783        0.670 / 0.937 / 0.938                                0.943
    3      0.630        0.687 / 0.917 / 0.929                                0.873
    4      0.633        0.683 / 0.940 / 0.942                                0.890

(b) fails the way the issue describes, and for the reason it suspects: evaluated with the
statistics of the held-out batch itself instead of the moving ones, (b) is as accurate as in
training. Ablations (seeds 0-2, not asserted): the recipe with ``batchnorm=train`` 0.320 / 0.540 /
0.563, i.e. the frozen BatchNorm is what matters; BatchNorm frozen alone (full backbone LR, no head
phase or warm-up) 0.833 / 0.900 / 0.960. The test runs seed 0 (about 15 s on 2 cores) and asserts
only what held for all five seeds (each run through this file): (c) >= (a) - 0.03, (b) >= 0.2 below
its own training accuracy and >= 0.1 below (c), and >= 0.15 below itself with batch statistics.
"""

import dataclasses
import json
import os

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from keras_fgvc.config import to_config
from keras_fgvc.config.validate import ConfigError
from keras_fgvc.models import build_model
from keras_fgvc.models.backbones.hub import HubBackbone, save_as_hub_module
from keras_fgvc.training.finetune import apply_batchnorm_policy, choose_recipe, stage_phases
from keras_fgvc.training.precision import configure
from keras_fgvc.training.stages import train_stage

SIZE, CLASSES, SEED = 32, 4, 0
EPOCHS, HEAD_EPOCHS = 6, 2
BRIGHTNESS = 0.35


def textures(n, rng):
    """Class k: stripes at k * 45 degrees, random frequency, phase and colours, plus noise; [0, 1]."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype("float32")
    labels = rng.integers(0, CLASSES, n)
    images = np.empty((n, SIZE, SIZE, 3), "float32")
    for i, k in enumerate(labels):
        angle = np.pi * k / CLASSES + rng.normal(0, 0.1)
        wave = np.sin(rng.uniform(0.25, 0.6) * (np.cos(angle) * xx + np.sin(angle) * yy) + rng.uniform(0, 2 * np.pi))
        foreground, background = rng.uniform(0.3, 1.0, 3), rng.uniform(0.0, 0.7, 3)
        images[i] = np.where((wave > 0)[..., None], foreground, background) + rng.normal(0, 0.05, (SIZE, SIZE, 3))
    return np.clip(images, 0, 1), labels.astype("int32")


def shifted(images):
    """The fine-tuning domain: greyscale (replicated to 3 channels) and darker."""
    grey = images @ np.array([0.299, 0.587, 0.114], "float32")
    return np.repeat(grey[..., None], 3, -1) * BRIGHTNESS


def pretrain_hub_module(path, rng):
    inputs = keras.Input((SIZE, SIZE, 3))
    x = inputs
    for i, filters in enumerate((16, 32, 32)):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        # Pretrained with momentum 0.9 so that 150 steps converge the moving statistics, then
        # saved with 0.999 (a long-pretrained network's; the hub module bakes it into its graph).
        x = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x))
        x = keras.layers.MaxPooling2D()(x) if i < 2 else x
    features = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    classifier = keras.Sequential([features, keras.layers.Dense(CLASSES)])
    classifier.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images, labels = textures(800, rng)
    classifier.fit(images, labels, batch_size=32, epochs=6, verbose=0)
    held_out, truth = textures(300, rng)
    accuracy = float((classifier.predict(held_out, verbose=0).argmax(1) == truth).mean())
    for layer in features.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.999
    save_as_hub_module(features, path, (SIZE, SIZE, 3))
    return accuracy


def write_table(folder, images, labels):
    os.makedirs(folder)
    paths = []
    for i, image in enumerate(images):
        paths.append(os.path.join(folder, f"{i:04d}.png"))
        Image.fromarray(np.round(image * 255).astype("uint8")).save(paths[-1])
    return pd.DataFrame({"path": paths, "label": labels})


def recipe_cfg(root, hub, name, freeze="none", recipe="auto", epochs=EPOCHS, **finetune):
    """The thesis optimiser (SGD 0.01, momentum 0.9, cosine) on the hub module at 32 px."""
    return to_config({
        "runs_root": str(root / "runs"), "name": name, "seed": SEED,
        "data": {"image_size": SIZE, "batch_size": 16, "cache": True, "cache_dir": str(root / "cache")},
        "model": {"backbone": "hub", "hub_handle": hub, "dropout": 0.0, "l2": 0.0},
        "augment": {"preset": "none"},
        "train": {"optimizer": "sgd", "learning_rate": 0.01, "momentum": 0.9, "schedule": "cosine",
                  "finetune": {"recipe": recipe, "head_epochs": HEAD_EPOCHS, **finetune},
                  "stages": [{"name": "shifted", "init_from": "none", "epochs": epochs, "freeze": freeze}]},
        "tracking": {"wandb": "disabled"},
    })


def hub_values(model_or_path, fragment):
    """{variable name: value} of the hub module's variables whose name contains ``fragment``."""
    if isinstance(model_or_path, str):
        variables = tf.saved_model.load(model_or_path).variables
    else:
        layers = model_or_path.get_layer("backbone")._flatten_layers()
        (hub,) = [layer for layer in layers if isinstance(layer, HubBackbone)]
        variables = [v._borrowed for v in hub.hub_variables]
    return {v.name: v.numpy().copy() for v in variables if fragment in v.name}


def accuracy(model, pixels, labels, training=False):
    return float((keras.ops.convert_to_numpy(model(pixels, training=training)["logits"]).argmax(1) == labels).mean())


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    rng = np.random.default_rng(SEED)
    keras.utils.set_random_seed(SEED)
    hub = str(root / "hub")
    pretrained_accuracy = pretrain_hub_module(hub, rng)
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = textures(240, rng), textures(80, rng), textures(300, rng)
    train = write_table(str(root / "train"), shifted(train_x), train_y)
    val = write_table(str(root / "val"), shifted(val_x), val_y)
    test_pixels = np.round(shifted(test_x) * 255)  # what decoding the PNGs gives

    def run(cfg):
        return train_stage(cfg, configure(cfg.runtime), cfg.train.stages[0], lambda c: build_model(c, CLASSES),
                           train, val, "label", CLASSES)

    cfgs = {"frozen": recipe_cfg(root, hub, "frozen", freeze="backbone", epochs=EPOCHS + HEAD_EPOCHS),
            "plain": recipe_cfg(root, hub, "plain", recipe="plain", epochs=EPOCHS + HEAD_EPOCHS),
            "recipe": recipe_cfg(root, hub, "recipe")}
    runs = {name: run(cfg) for name, cfg in cfgs.items()}
    results = {name: accuracy(r.model, test_pixels, test_y) for name, r in runs.items()}
    results["plain_training"] = runs["plain"].history["accuracy"][-1]
    # Last (it updates the module's moving statistics): the plain model normalising with the
    # held-out batch's own statistics, as it did with each batch in training.
    results["plain_batch_statistics"] = accuracy(runs["plain"].model, test_pixels, test_y, training=True)
    print(json.dumps({"pretrained_accuracy": pretrained_accuracy, **results}))
    return {"root": root, "hub": hub, "cfgs": cfgs, "runs": runs, "results": results, "test": (test_pixels, test_y),
            "run": run, "pretrained_accuracy": pretrained_accuracy}


def test_the_pretrained_task_was_learned(experiment):
    assert experiment["pretrained_accuracy"] > 0.75  # measured 0.84-0.97 over seeds 0-4


def test_recipe_ends_no_worse_than_the_frozen_backbone_at_inference(experiment):
    results = experiment["results"]
    assert results["recipe"] >= results["frozen"] - 0.03, results


def test_plain_fine_tuning_fails_at_inference_through_batchnorm_statistics(experiment):
    results = experiment["results"]
    assert results["plain_training"] >= 0.85, results  # it learned the shifted task...
    assert results["plain"] <= results["plain_training"] - 0.2, results  # ...but not at inference
    assert results["plain"] <= results["recipe"] - 0.1, results
    # With batch statistics instead of the stale moving ones the same weights are accurate again.
    assert results["plain_batch_statistics"] >= results["plain"] + 0.15, results


def test_recipe_runs_as_two_engine_stages(experiment):
    runs, root, hub = experiment["runs"], experiment["root"], experiment["hub"]
    info = runs["recipe"].info["finetune"]
    assert info["recipe"] == "pretrained" and "backbone=hub" in info["why"]
    assert info["phases"] == {"head": "shifted_head", "finetune": "shifted"}
    assert info["hub_modules_in_inference_mode"] == 1
    assert (info["batchnorm"], info["backbone_lr_multiplier"], info["warmup_epochs"]) == ("frozen", 0.1, 1.0)
    head_folder = root / "runs" / "fivek" / "recipe" / "shifted_head"
    with open(head_folder / "finished.json") as f:
        head = json.load(f)
    assert head["info"]["finetune"]["phase"] == "head" and head["info"]["epochs_run"] == HEAD_EPOCHS
    assert runs["recipe"].info["init_from"] == str(head_folder / "best.weights.h5")
    assert runs["recipe"].info["epochs_run"] == EPOCHS and runs["recipe"].stage.init_from == "none"
    assert runs["frozen"].info["finetune"]["recipe"] == "plain" and runs["plain"].info["finetune"]["recipe"] == "plain"
    # Phase 2 trained the module's weights but, BatchNorm frozen, kept its pretrained statistics.
    pretrained, tuned = hub_values(hub, "moving"), hub_values(runs["recipe"].model, "moving")
    assert pretrained.keys() == tuned.keys() and len(pretrained) == 6
    for name in pretrained:
        np.testing.assert_array_equal(tuned[name], pretrained[name], err_msg=name)
    kernels, tuned_kernels = hub_values(hub, "kernel"), hub_values(runs["recipe"].model, "kernel")
    assert all(np.abs(tuned_kernels[n] - kernels[n]).max() > 1e-5 for n in kernels)


def test_resume_skips_both_finished_phases(experiment):
    cfg = experiment["cfgs"]["recipe"]
    resumed = experiment["run"](dataclasses.replace(cfg, resume=True))
    assert resumed.info["already_finished"] and resumed.info["finetune"]["phase"] == "finetune"
    pixels, labels = experiment["test"]
    assert accuracy(resumed.model, pixels, labels) == experiment["results"]["recipe"]


def test_recipe_choice(experiment, tmp_path):
    cfg = experiment["cfgs"]["recipe"]
    stage = cfg.train.stages[0]
    finetune = cfg.train.finetune
    assert choose_recipe(cfg.model, stage, finetune)[0] == "pretrained"
    random_init = type(cfg.model)(backbone="ghostnet_050")
    assert choose_recipe(random_init, stage, finetune)[0] == "plain"
    with_weights = type(cfg.model)(backbone="efficientnetv2_b0", weights="b0.h5")
    assert choose_recipe(with_weights, stage, finetune)[0] == "pretrained"
    frozen = type(stage)(name="s", freeze="backbone")
    assert choose_recipe(cfg.model, frozen, finetune)[0] == "plain"
    explicit = type(finetune)(recipe="pretrained", head_epochs=0)
    assert choose_recipe(random_init, stage, explicit)[0] == "pretrained"
    # Without a head phase the recipe is one phase in the stage's own folder.
    no_head = recipe_cfg(tmp_path, experiment["hub"], "no_head", head_epochs=0)
    assert [p.kind for p in stage_phases(no_head, no_head.train.stages[0])] == ["finetune"]
    assert [p.kind for p in stage_phases(cfg, stage)] == ["head", "finetune"]


def test_batchnorm_policy_on_a_keras_backbone():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.BatchNormalization(name="bn_a")(keras.layers.Conv2D(4, 3, name="conv")(inputs))
    backbone = keras.Model(inputs, keras.layers.BatchNormalization(name="bn_b")(x))
    assert apply_batchnorm_policy(backbone, "train", 0.9) == {"batchnorm_layers_momentum_set": 2}
    assert [backbone.get_layer(n).momentum for n in ("bn_a", "bn_b")] == [0.9, 0.9]
    assert apply_batchnorm_policy(backbone, "frozen")["batchnorm_layers_frozen"] == 2
    assert not backbone.get_layer("bn_a").trainable and backbone.get_layer("conv").trainable
    images = np.random.default_rng(0).uniform(0, 1, (4, 8, 8, 3)).astype("float32")
    # Inference mode in training: the training-mode output equals the inference output.
    np.testing.assert_allclose(backbone(images, training=True), backbone(images, training=False), atol=1e-6)


def test_recipe_config_errors(experiment, tmp_path):
    hub = experiment["hub"]
    with pytest.raises(ConfigError, match="hub module's BatchNorm momentum is fixed"):
        recipe_cfg(tmp_path, hub, "x", batchnorm="train", bn_momentum=0.9)
    with pytest.raises(ConfigError, match="train.finetune.batchnorm' = 'off'; choose one of: frozen, train"):
        recipe_cfg(tmp_path, hub, "x", batchnorm="off")
    with pytest.raises(ConfigError, match="backbone_lr_multiplier"):
        recipe_cfg(tmp_path, hub, "x", backbone_lr_multiplier=0.0)
