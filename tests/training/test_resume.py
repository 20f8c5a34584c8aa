"""resume=true and the NaN guard on a tiny conv net (traces in seconds; the engine is what is tested).

Resume: a stage trained for 4 epochs in a subprocess is killed with SIGKILL in the middle of epoch 2
(after 2 committed epochs), then run again with resume=true; its final weights must equal those of
an uninterrupted run, which needs the same batches in the same order after the restart (see
``training/stages.py``, "Data order"). NaN: a layer that turns its output into NaN at a known
optimizer step; the stage must stop there, say where, and keep the last good weights on disk.
"""

import glob
import json
import os
import subprocess
import sys

import h5py
import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from keras_fgvc.config import to_config
from keras_fgvc.errors import UserError
from keras_fgvc.training.callbacks import (
    BACKUP_DIR,
    BACKUP_METADATA,
    BEST,
    CHECKPOINT_STATE,
    KILL_ENV,
    LAST,
)
from keras_fgvc.training.precision import configure
from keras_fgvc.training.stages import (
    FINISHED,
    check_can_start,
    stages_to_run,
    train_stage,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZE, CLASSES, ROWS, BATCH, EPOCHS = 16, 3, 40, 8, 4  # 5 steps per epoch (4 full batches + 1 of 8)


def write_table(root: str) -> pd.DataFrame:
    """``ROWS`` PNGs whose class is a colour (plus noise), and their table (``path``, ``label``)."""
    rng = np.random.default_rng(0)
    colours = np.array([[220, 40, 40], [40, 220, 40], [40, 40, 220]], "float32")
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    rows = []
    for i in range(ROWS):
        label = i % CLASSES
        pixels = np.clip(colours[label] + rng.normal(0, 40, (SIZE, SIZE, 3)), 0, 255).astype("uint8")
        path = os.path.join(root, "images", f"{i:03d}.png")
        Image.fromarray(pixels).save(path)
        rows.append({"path": path, "label": label})
    return pd.DataFrame(rows)


class PoisonAfter(keras.layers.Layer):
    """Identity that counts training calls and outputs NaN from call number ``step`` (0-based) on."""

    def __init__(self, step=-1, **kwargs):
        super().__init__(**kwargs)
        self.step = step
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls")

    def call(self, x, training=False):
        if not training or self.step < 0:
            return x
        poison = keras.ops.where(self.calls >= self.step, float("nan"), 0.0)
        self.calls.assign(self.calls + 1.0)
        return x + poison


def tiny_model(cfg, poison_step=-1) -> keras.Model:
    """A ``build_model``-shaped net (``pre_logits`` layer, outputs embedding + logits)."""
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = PoisonAfter(poison_step, name="poison")(x)
    embedding = keras.layers.Dense(8, name="pre_logits")(x)
    # Dropout draws from a seed generator whose state the resume backup must carry.
    logits = keras.layers.Dense(CLASSES, name="logits")(keras.layers.Dropout(0.3)(embedding))
    return keras.Model(inputs, {"embedding": embedding, "logits": logits}, name="tiny")


def make_cfg(root: str, name: str, resume=False, epochs=EPOCHS, learning_rate=0.05, schedule="cosine"):
    return to_config({
        "runs_root": os.path.join(root, "runs"), "name": name, "seed": 0, "resume": resume,
        "data": {"image_size": SIZE, "batch_size": BATCH, "cache": True},
        "augment": {"preset": "none"},
        "train": {"epochs": epochs, "optimizer": "adamw", "learning_rate": learning_rate, "schedule": schedule,
                  "warmup_epochs": 1 if schedule == "cosine" else 0,
                  "stages": [{"name": "s", "init_from": "none", "losses": {"logits": [{"name": "sparse_ce"}]}}]},
        "tracking": {"wandb": "disabled"},
    })


def train(root: str, name: str, resume=False, poison_step=-1, **overrides):
    """Train stage "s" of run ``name`` on the table under ``root`` (also the subprocess entry point)."""
    table = pd.read_csv(os.path.join(root, "table.csv"))
    cfg = make_cfg(root, name, resume, **overrides)
    plan = configure(cfg.runtime)
    (stage,) = stages_to_run(cfg)
    check_can_start(cfg, [stage])
    run = train_stage(cfg, plan, stage, lambda c: tiny_model(c, poison_step), table, table.iloc[:8], "label", CLASSES)
    return cfg, run


def train_in_subprocess(root: str, name: str, resume=False, kill_at=None, backend="tensorflow") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": backend}
    env.pop(KILL_ENV, None)
    if kill_at is not None:
        env[KILL_ENV] = str(kill_at)
    code = f"from tests.training.test_resume import train; train({root!r}, {name!r}, resume={resume})"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
                          check=False)


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def h5_arrays(path: str) -> dict:
    """Every dataset of a .weights.h5 file by its path: weights compared without building a model."""
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda key, item: arrays.__setitem__(key, item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def assert_same_weights(a: str, b: str, atol=1e-6):
    left, right = h5_arrays(a), h5_arrays(b)
    assert sorted(left) == sorted(right) and left
    for key in left:
        np.testing.assert_allclose(left[key], right[key], rtol=0, atol=atol, err_msg=key)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("resume"))
    write_table(root).to_csv(os.path.join(root, "table.csv"), index=False)
    return root


def kill_and_resume(data_root, backend="tensorflow", prefix=""):
    """The uninterrupted reference and a run killed mid-epoch 2, then resumed (all in subprocesses)."""
    reference = train_in_subprocess(data_root, f"{prefix}reference", backend=backend)
    assert reference.returncode == 0, reference.stderr[-3000:]
    killed = train_in_subprocess(data_root, f"{prefix}killed", kill_at=2, backend=backend)
    stage_dir = os.path.join(data_root, "runs", "fivek", f"{prefix}killed", "s")
    state_after_kill = {
        "returncode": killed.returncode,
        "metadata": read_json(os.path.join(stage_dir, BACKUP_DIR, BACKUP_METADATA)),
        "history": pd.read_csv(os.path.join(stage_dir, "history.csv")),
        "checkpoint": read_json(os.path.join(stage_dir, CHECKPOINT_STATE)),
    }
    resumed = train_in_subprocess(data_root, f"{prefix}killed", resume=True, backend=backend)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return os.path.join(data_root, "runs", "fivek", f"{prefix}reference", "s"), stage_dir, state_after_kill, resumed


@pytest.fixture(scope="module")
def killed_and_resumed(data_root):
    return kill_and_resume(data_root)


def test_the_kill_leaves_two_committed_epochs(killed_and_resumed):
    _, _, state, _ = killed_and_resumed
    assert state["returncode"] == -9  # SIGKILL: no cleanup ran
    assert state["metadata"]["epoch"] == 2
    assert state["history"]["epoch"].tolist() == [0, 1]
    assert state["checkpoint"]["last_epoch"] == 1


def test_resumed_run_equals_the_uninterrupted_one(killed_and_resumed):
    assert_resumed_equals_reference(*killed_and_resumed)


def test_under_jax_a_killed_run_resumes_to_the_uninterrupted_one(data_root):
    """The TPU path's resume: the same engine and BackupAndRestore under KERAS_BACKEND=jax (its
    jitted step, the dropout seed state in the backup, whole batches: 40 rows make 5 of 8)."""
    reference, resumed, state, process = kill_and_resume(data_root, backend="jax", prefix="jax_")
    assert state["returncode"] == -9 and state["history"]["epoch"].tolist() == [0, 1]
    assert_resumed_equals_reference(reference, resumed, state, process)


def assert_resumed_equals_reference(reference, resumed, _, process):
    assert "resuming" in process.stdout and "after epoch 2 of 4" in process.stdout
    for name in (LAST, BEST):
        assert_same_weights(os.path.join(reference, name), os.path.join(resumed, name))
    ref_info = read_json(os.path.join(reference, FINISHED))["info"]
    info = read_json(os.path.join(resumed, FINISHED))["info"]
    assert info["resumed_from_epoch"] == 2 and info["epochs_run"] == EPOCHS == ref_info["epochs_run"]
    assert info["best_epoch"] == ref_info["best_epoch"] and info["best_value"] == ref_info["best_value"]
    ref_history, history = (pd.read_csv(os.path.join(d, "history.csv")) for d in (reference, resumed))
    assert history["epoch"].tolist() == list(range(EPOCHS))
    pd.testing.assert_frame_equal(history, ref_history, check_exact=False, rtol=0, atol=1e-6)


def test_no_backup_or_half_written_file_is_left(killed_and_resumed):
    _, resumed, _, _ = killed_and_resumed
    run_dir = os.path.dirname(resumed)
    assert glob.glob(os.path.join(run_dir, "**", ".tmp-*"), recursive=True) == []
    assert not os.path.exists(os.path.join(resumed, BACKUP_DIR))


def test_a_finished_stage_is_loaded_not_retrained(killed_and_resumed, data_root, capsys):
    _, resumed, _, _ = killed_and_resumed
    before = os.path.getmtime(os.path.join(resumed, LAST))
    _, run = train(data_root, "killed", resume=True)
    assert "finished in an earlier run" in capsys.readouterr().out
    assert run.info["already_finished"] and run.info["epochs_run"] == EPOCHS
    assert os.path.getmtime(os.path.join(resumed, LAST)) == before
    expected = tiny_model(None)
    expected.load_weights(os.path.join(resumed, BEST))
    for loaded, saved in zip(run.model.get_weights(), expected.get_weights()):
        np.testing.assert_array_equal(loaded, saved)


@pytest.mark.parametrize("steps", [5, 7, 3])  # a whole pass (5 batches), and epochs across passes
def test_a_resumed_stream_continues_the_batches_of_an_uninterrupted_one(data_root, steps):
    from keras_fgvc.data.pipeline import PipelineSpec, build
    from keras_fgvc.training.resume import resumed_dataset

    table = pd.read_csv(os.path.join(data_root, "table.csv"))
    spec = PipelineSpec(SIZE, BATCH, targets={"logits": "label"}, seed=0)

    def batches(dataset, count):
        iterator = iter(dataset)
        return [next(iterator)[0]["image"].numpy() for _ in range(count)]

    completed, ahead = 2, 8
    uninterrupted = batches(build(table, spec, training=True).repeat(), completed * steps + ahead)[-ahead:]
    resumed = batches(resumed_dataset(build(table, spec, training=True), completed, steps, 5), ahead)
    for expected, got in zip(uninterrupted, resumed):
        np.testing.assert_array_equal(got, expected)


def test_without_resume_an_interrupted_stage_is_refused(data_root):
    cfg = make_cfg(data_root, "stale")
    folder = os.path.join(cfg.run_dir, "s", BACKUP_DIR)
    os.makedirs(folder)
    with open(os.path.join(folder, BACKUP_METADATA), "w") as f:
        json.dump({"epoch": 3, "weights": "epoch-0003.weights.h5"}, f)
    with pytest.raises(UserError, match=r"stage 's' of run .*stale was interrupted after 3 epoch\(s\).*add resume=true"):
        check_can_start(cfg, stages_to_run(cfg))


def test_nan_loss_stops_the_stage_and_keeps_the_last_good_weights(data_root, capfd):
    # 5 steps per epoch: training call 12 is epoch 2, batch 2. A constant LR, so that a 2-epoch run
    # reaches exactly the weights the 4-epoch run has after its epoch 1.
    _, good = train(data_root, "two_epochs", poison_step=10**6, epochs=2, learning_rate=1e-3, schedule="constant")
    _, run = train(data_root, "nan", poison_step=12, learning_rate=1e-3, schedule="constant")
    assert run.info["stopped_on_nan"] == {"epoch": 2, "batch": 2, "loss": "nan", "cause": "loss"}
    warning = [line for line in capfd.readouterr().err.splitlines() if line.startswith("warning: stage 's'")]
    assert len(warning) == 1 and "epoch 2, batch 2" in warning[0] and "last.weights.h5 is epoch 1" in warning[0]
    assert run.info["epochs_run"] == 3  # the NaN epoch is logged (history.csv shows the NaN loss)
    assert not np.isfinite(run.history["loss"][-1])
    # The files hold the weights after epoch 1 (the last good one), finite.
    assert_same_weights(os.path.join(run.folder, LAST), os.path.join(good.folder, LAST), atol=0)
    assert run.info["best_epoch"] == good.info["best_epoch"] == 1
    assert_same_weights(os.path.join(run.folder, BEST), os.path.join(good.folder, BEST), atol=0)
    for array in h5_arrays(os.path.join(run.folder, LAST)).values():
        assert np.isfinite(array).all()
    assert read_json(os.path.join(run.folder, FINISHED))["info"]["stopped_on_nan"]["epoch"] == 2
    assert not os.path.exists(os.path.join(run.folder, BACKUP_DIR))


def test_the_fivek_driver_skips_finished_stages_and_keeps_their_exports(tmp_path, capsys):
    from keras_fgvc.config.compose import compose
    from run import main

    args = ["smoke=true", f"runs_root={tmp_path}/runs", f"export.dir={tmp_path}/saved", f"data.demo_root={tmp_path}/demo",
            "data.demo.num_images=24", "data.demo.test_images=0", "resume=true"]
    cfg = compose(args)
    assert cfg.run_dir == os.path.join(str(tmp_path), "runs", "fivek", "smoke")  # found again from the same keys
    for index, stage in enumerate(("mask", "distancing", "fivek")):
        folder = os.path.join(cfg.run_dir, stage)
        os.makedirs(folder)
        pd.DataFrame({"path": ["x.jpg"], stage: [1.0]}).to_csv(os.path.join(folder, "table.csv"), index=False)
        with open(os.path.join(folder, "metrics.json"), "w") as f:
            json.dump({"heldout_accuracy": 0.5 + index / 10}, f)
        os.makedirs(os.path.join(str(tmp_path), "saved", "fivek", "smoke", stage))  # would refuse a new export
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("finished in an earlier run") == 3
    summary = read_json(os.path.join(cfg.run_dir, "metrics.json"))
    assert [summary[s]["heldout_accuracy"] for s in ("mask", "distancing", "fivek")] == [0.5, 0.6, 0.7]
