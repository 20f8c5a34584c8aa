"""The engine end to end on a tiny GhostNet: three stages where each starts from the previous one's
weights, freezes what it declares (bit-identical afterwards) and trains its own losses."""

import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from keras_fgvc.config import to_config
from keras_fgvc.errors import UserError
from keras_fgvc.models import build_model
from keras_fgvc.training.callbacks import BEST, LAST
from keras_fgvc.training.precision import configure
from keras_fgvc.training.stages import check_can_start, freeze, stage_config, stages_to_run, train_stage

SIZE, CLASSES, ROWS, BATCH = 32, 4, 32, 8

STAGES = [
    {"name": "a", "init_from": "none", "losses": {"logits": [{"name": "sparse_ce"}]}},
    {"name": "b", "freeze": "backbone", "train": {"optimizer": "sgd", "learning_rate": 0.01},
     "losses": {"logits": [{"name": "label_smoothing_ce", "kwargs": {"epsilon": 0.1}}],
                "arcface_logits": [{"name": "sparse_ce", "weight": 0.25}],
                "embedding": [{"name": "batch_hard_triplet", "weight": 0.5}]}},
    {"name": "c", "freeze": "backbone_except_last_2",
     "losses": {"logits": [{"name": "sparse_ce"}], "pre_logits": [{"name": "center", "weight": 0.01}]}},
    # A student with another architecture, distilled from c (the Squeeze recipe's last step).
    {"name": "d", "init_from": "none", "teacher": "c", "model": {"backbone_kwargs": {"out_channels": 16}},
     "losses": {"logits": [{"name": "distillation", "kwargs": {"temperature": 2.0, "alpha": 0.5}}]}},
]


def write_images(folder, rows, seed=0):
    """Class k is a flat colour k plus noise: enough signal for a real (if tiny) training run."""
    rng = np.random.default_rng(seed)
    colours = np.array([[220, 40, 40], [40, 220, 40], [40, 40, 220], [220, 220, 40]], "float32")
    paths, labels = [], []
    for i in range(rows):
        label = i % CLASSES
        pixels = np.clip(colours[label] + rng.normal(0, 25, (SIZE, SIZE, 3)), 0, 255).astype("uint8")
        path = os.path.join(folder, f"{i:03d}.png")
        Image.fromarray(pixels).save(path)
        paths.append(path)
        labels.append(label)
    return pd.DataFrame({"path": paths, "label": labels})


def make_cfg(root, stages=STAGES, model=None, train=None, **extra):
    tree = {
        "runs_root": str(root / "runs"), "name": "engine", "seed": 0,
        "data": {"image_size": SIZE, "batch_size": BATCH, "cache": True},
        "model": model or {"backbone": "ghostnet_050", "backbone_kwargs": {"out_channels": 32}, "dropout": 0.0, "l2": 0.0,
                           "heads": ["softmax", "arcface"]},
        "augment": {"preset": "none"},
        "train": train or {"epochs": 1, "optimizer": "adamw", "learning_rate": 1e-3, "schedule": "constant", "stages": stages},
        "tracking": {"wandb": "disabled"},
        **extra,
    }
    return to_config(tree)


@pytest.fixture(scope="module")
def three_stages(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    (root / "images").mkdir()
    table = write_images(str(root / "images"), ROWS)
    cfg = make_cfg(root)
    plan = configure(cfg.runtime)
    runs = {}
    for stage in stages_to_run(cfg):
        runs[stage.name] = train_stage(cfg, plan, stage, lambda stage_cfg: build_model(stage_cfg, CLASSES), table,
                                       table.iloc[:8], "label", CLASSES)
    return cfg, runs


def weights_of(cfg, stage, which=BEST):
    model = build_model(stage_config(cfg, next(s for s in cfg.train.stages if s.name == stage)), CLASSES)
    model.load_weights(os.path.join(cfg.run_dir, stage, which))
    return model


def layer_weights(model, names):
    backbone = model.get_layer("backbone")
    return {name: [w.numpy() for w in backbone.get_layer(name).weights] for name in names}


def backbone_layer_names(model):
    return [layer.name for layer in model.get_layer("backbone").layers if layer.weights]


def test_each_stage_writes_best_last_and_history(three_stages):
    cfg, runs = three_stages
    for name in ("a", "b", "c", "d"):
        for file in (BEST, LAST, "history.csv"):
            assert os.path.isfile(os.path.join(cfg.run_dir, name, file)), (name, file)
        assert runs[name].info["epochs_run"] == 1
    assert runs["a"].info["init_from"] is None
    assert runs["b"].info["init_from"] == os.path.join(cfg.run_dir, "a", BEST)
    assert runs["c"].info["init_from"] == os.path.join(cfg.run_dir, "b", BEST)
    assert runs["b"].info["warm_start_skipped"] == [] and runs["c"].info["warm_start_skipped"] == []


def test_stage_b_starts_from_a_and_its_frozen_backbone_stays_bit_identical(three_stages):
    cfg, _ = three_stages
    a, b = weights_of(cfg, "a"), weights_of(cfg, "b")
    names = backbone_layer_names(a)
    before, after = layer_weights(a, names), layer_weights(b, names)
    for name in names:
        for x, y in zip(before[name], after[name]):
            np.testing.assert_array_equal(x, y, err_msg=name)
    # ...while the heads trained on their new losses (the ArcFace centres through the label input).
    assert not np.array_equal(a.get_layer("logits").kernel.numpy(), b.get_layer("logits").kernel.numpy())
    assert not np.array_equal(a.get_layer("arcface_logits").kernel.numpy(), b.get_layer("arcface_logits").kernel.numpy())


def test_stage_c_trains_only_the_last_two_blocks_and_what_follows(three_stages):
    cfg, runs = three_stages
    b, c = weights_of(cfg, "b"), weights_of(cfg, "c")
    names = backbone_layer_names(b)
    before, after = layer_weights(b, names), layer_weights(c, names)
    changed = {n for n in names if any(not np.array_equal(x, y) for x, y in zip(before[n], after[n]))}
    trainable = {n for n in names if n.startswith(("block14_", "block15_", "last", "head_conv"))}
    assert changed and changed <= trainable, changed - trainable
    assert runs["c"].info["frozen_layers"] == len(names) - len(trainable)


def test_each_stage_logs_its_own_loss_terms_and_their_weighted_sum(three_stages):
    cfg, _ = three_stages
    history = {name: pd.read_csv(os.path.join(cfg.run_dir, name, "history.csv")) for name in ("a", "b", "c", "d")}
    terms = {name: {c for c in h.columns if c.startswith(("logits_", "arcface_logits_", "embedding_", "pre_logits_"))}
             for name, h in history.items()}
    assert terms == {"a": {"logits_sparse_ce"}, "b": {"logits_label_smoothing_ce", "arcface_logits_sparse_ce", "embedding_batch_hard_triplet"},
                     "c": {"logits_sparse_ce", "pre_logits_center"}, "d": {"logits_distillation"}}
    b = history["b"].iloc[0]
    # Equal batches (32 rows / 8) and no regulariser: the logged loss is exactly the weighted sum.
    assert b["loss"] == pytest.approx(b["logits_label_smoothing_ce"] + 0.25 * b["arcface_logits_sparse_ce"]
                                      + 0.5 * b["embedding_batch_hard_triplet"], rel=1e-5)
    c = history["c"].iloc[0]
    assert c["loss"] == pytest.approx(c["logits_sparse_ce"] + 0.01 * c["pre_logits_center"], rel=1e-5)


def test_the_student_has_its_own_architecture_and_learns_from_the_teacher(three_stages):
    cfg, runs = three_stages
    student = weights_of(cfg, "d")
    assert student.get_layer("backbone").get_layer("head_conv").kernel.shape[-1] == 16
    assert weights_of(cfg, "c").get_layer("backbone").get_layer("head_conv").kernel.shape[-1] == 32
    assert runs["d"].info["init_from"] is None
    history = pd.read_csv(os.path.join(cfg.run_dir, "d", "history.csv")).iloc[0]
    assert history["loss"] == pytest.approx(history["logits_distillation"], rel=1e-5)


def test_a_later_stage_alone_needs_the_earlier_checkpoint(tmp_path):
    cfg = make_cfg(tmp_path, stage="b")
    assert [s.name for s in stages_to_run(cfg)] == ["b"]
    with pytest.raises(UserError, match=r"stage 'b' starts from stage 'a': .*best.weights.h5 not found \(run stage=a first"):
        check_can_start(cfg, stages_to_run(cfg))
    assert not (tmp_path / "runs").exists()


def test_freeze_backbone_except_last_blocks_counts_blocks_not_layers():
    cfg = to_config({"data": {"image_size": SIZE}, "model": {"backbone": "ghostnet_050"}})
    model = build_model(cfg, CLASSES)
    frozen = set(freeze(model, "backbone_except_last_1"))
    backbone = model.get_layer("backbone")
    trainable = {layer.name for layer in backbone.layers if layer.weights and layer.trainable}
    assert all(n.startswith(("block15_", "last", "head_conv")) for n in trainable) and any(n.startswith("block15_") for n in trainable)
    weighted = {layer.name for layer in backbone.layers if layer.weights}
    assert frozen == weighted - trainable and any(n.startswith("stem") for n in frozen)


def test_default_accuracy_reads_integer_labels_and_cutmix_rows_alike():
    from keras_fgvc.training.stages import default_metrics

    logits = np.array([[2.0, 0.0, 1.0], [0.0, 3.0, 1.0], [1.0, 0.0, 4.0], [5.0, 1.0, 0.0]], "float32")
    labels = np.array([0, 1, 0, 2])  # right, right, wrong, wrong
    (metric,) = default_metrics({"logits": "label"})["logits"]
    metric.update_state(labels, logits)
    assert float(metric.result()) == 0.5
    # mixed rows count their largest share: [0.7 a + 0.3 b] is class a
    eye = np.eye(3, dtype="float32")
    mixed = 0.7 * eye[labels] + 0.3 * eye[[2, 2, 1, 0]]
    (metric,) = default_metrics({"logits": "label"})["logits"]
    metric.update_state(mixed, logits)
    assert float(metric.result()) == float(np.mean(labels == logits.argmax(1)))
