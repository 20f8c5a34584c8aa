"""Config composition: round-trip, typo rejection, smoke precedence, schema-only keys."""

import os
import subprocess
import sys

import pytest
import yaml

from keras_fgvc.config import to_config, to_dict
from keras_fgvc.config.compose import compose
from keras_fgvc.config.validate import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_round_trip_through_dict_and_yaml_is_identity():
    cfg = compose(["stage=mask", "train.epochs=3", "model.dropout=0.3"])
    tree = to_dict(cfg)
    again = to_config(yaml.safe_load(yaml.safe_dump(tree)))
    assert again == cfg
    assert (again.stage, again.train.epochs, again.model.dropout) == ("mask", 3, 0.3)


def test_yaml_values_reach_the_config():
    with open(os.path.join(REPO, "pipelines", "fivek.yaml")) as f:
        raw = yaml.safe_load(f)
    cfg = compose([])
    assert cfg.train.learning_rate == raw["train"]["learning_rate"]
    assert cfg.model.backbone == raw["model"]["backbone"]
    assert cfg.data.image_size == raw["data"]["image_size"]


def test_typo_names_the_valid_keys_and_suggests_the_right_one():
    with pytest.raises(ConfigError) as error:
        compose(["trian.epochs=3"])
    message = str(error.value)
    assert "trian.epochs" in message and "Did you mean 'train'" in message
    for key in ("data", "model", "train", "export"):
        assert key in message


def test_nested_typo_lists_the_group_keys():
    with pytest.raises(ConfigError, match=r"valid keys at train: .*learning_rate.*Did you mean 'train.epochs'"):
        compose(["train.epoch=3"])


def test_bad_choice_and_bad_type_are_config_errors():
    with pytest.raises(ConfigError, match="train.optimizer.*sgd, adam, adamw"):
        compose(["train.optimizer=adagrad"])
    with pytest.raises(ConfigError, match="train.epochs"):
        compose(["train.epochs=many"])


def test_smoke_settings_apply_under_explicit_overrides():
    smoke = compose(["smoke=true"])
    assert (smoke.data.image_size, smoke.tracking.wandb) == (32, "disabled")
    assert [stage.epochs for stage in smoke.train.stages] == [1, 1, 1]
    explicit = compose(["smoke=true", "train.stages.1.epochs=2"])
    assert [stage.epochs for stage in explicit.train.stages] == [1, 2, 1] and explicit.data.image_size == 32


def test_schema_keys_absent_from_the_yaml_can_be_set():
    cfg = compose(["runs_root=/tmp/elsewhere", "runtime.precision=float32"])
    assert cfg.runs_root == "/tmp/elsewhere" and cfg.run_dir == "/tmp/elsewhere/fivek/default"


def test_unknown_pipeline_lists_the_available_ones():
    with pytest.raises(ConfigError, match="unknown pipeline 'nope'; available: .*fivek"):
        compose(["pipeline=nope"])


def run_cli_in(tmp_path, *overrides):
    """``run.py`` with every output folder under ``tmp_path`` (so "nothing written" is checkable)."""
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "run.py"), *overrides, f"runs_root={tmp_path}/runs",
         f"export.dir={tmp_path}/saved", f"data.demo_root={tmp_path}/demo"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )


def test_cli_typo_exits_2_with_one_line_and_writes_nothing(tmp_path):
    result = run_cli_in(tmp_path, "trian.epochs=3")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown config key 'trian.epochs'")
    assert list(tmp_path.iterdir()) == []


def test_cli_help_prints_the_chosen_pipelines_values_and_stages():
    result = subprocess.run([sys.executable, os.path.join(REPO, "run.py"), "pipeline=cars", "train.epochs=7", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    out = result.stdout
    assert "stages of pipeline=cars: train (stage=all runs them in order)" in out
    for text in ("  train.epochs = 7   >= 1", "  train.optimizer = 'adamw'", "  cars.label_smoothing = 0.1",
                 "  data.image_size = 227", "    0: name=train init_from=none losses={logits: label_smoothing_ce}",
                 "task=model_card"):
        assert text in out, text
    assert "pseudo_label" not in out and "sub-minute" not in out
    bad = subprocess.run([sys.executable, os.path.join(REPO, "run.py"), "pipeline=cars", "data.batch_size=0", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: config key 'data.batch_size' = 0: must be >= 1"]


def _yaml_leaves(tree, prefix=""):
    for key, value in tree.items():
        if key in ("stages", "smoke_settings"):
            continue
        if isinstance(value, dict) and key not in ("backbone_kwargs", "source_options"):
            yield from _yaml_leaves(value, f"{prefix}{key}.")
        elif not (isinstance(value, str) and "${" in value):
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("pipeline", ["fivek", "cars", "hotel_id"])
def test_help_shows_every_value_the_pipelines_yaml_sets(pipeline):
    import yaml

    from keras_fgvc.config.compose import PIPELINES_DIR, available_pipelines
    from keras_fgvc.config.help import help_text

    with open(os.path.join(PIPELINES_DIR, f"{pipeline}.yaml")) as f:
        tree = yaml.safe_load(f)
    text = help_text(available_pipelines(), compose([f"pipeline={pipeline}"]))
    leaves = dict(_yaml_leaves(tree))
    assert len(leaves) > 20
    for dotted, value in leaves.items():
        assert f"  {dotted} = {value!r}" in text, (dotted, value)
    stages = ", ".join(stage["name"] for stage in tree["train"]["stages"])
    assert f"stages of pipeline={pipeline}: {stages}" in text


@pytest.mark.parametrize("override, message", [
    ("train.learning_rate=-1", "config key 'train.learning_rate' = -1.0: must be > 0"),
    ("pseudo_label.threshold=1.5", "config key 'pseudo_label.threshold' = 1.5: must be >= 0 and <= 1"),
    ("data.batch_size=0", "config key 'data.batch_size' = 0: must be >= 1"),
    ("data.val_fraction=1.2", "config key 'data.val_fraction' = 1.2: must be >= 0 and < 1"),
    ("train.epochs=0", "config key 'train.epochs' = 0: must be >= 1"),
    ("data.image_size=-5", "config key 'data.image_size' = -5: must be >= 8"),
    ("seed=-1", "config key 'seed' = -1: must be >= 0"),
    ("train.learning_rate=nan", "config key 'train.learning_rate' = nan: must be > 0"),
    ("train.stages.0.train={learning_rate: -2}", "config key 'train.stages.0.train.learning_rate' = -2.0: must be > 0"),
    ("train.stages.1.epochs=0", "config key 'train.stages.1.epochs' = 0: must be at least 1"),
    ("name=../../escape", "config key 'name' = '../../escape': a run name is a plain folder name"),
    ("name=a/b", "config key 'name' = 'a/b': a run name is a plain folder name"),
    ("runtime.steps_per_execution=0", "config key 'runtime.steps_per_execution' = 0: must be 'auto' or an integer >= 1"),
    ("runtime.steps_per_execution=2.5", "config key 'runtime.steps_per_execution' = 2.5: must be 'auto' or an integer"),
    ("runtime.steps_per_execution=fast", "config key 'runtime.steps_per_execution' = 'fast': must be 'auto' or an"),
])
def test_impossible_values_fail_at_compose_naming_the_key_and_the_range(override, message):
    with pytest.raises(ConfigError) as caught:
        compose([override])
    assert str(caught.value).startswith(message)


def test_steps_per_execution_takes_auto_or_a_whole_number():
    assert compose([]).runtime.steps_per_execution == "auto"
    assert compose(["runtime.steps_per_execution=16"]).runtime.steps_per_execution == 16


def test_fractions_must_leave_rows_to_train_on():
    with pytest.raises(ConfigError, match=r"'data.val_fraction' \+ 'data.test_fraction' = 0.6 \+ 0.5: must be < 1"):
        compose(["data.val_fraction=0.6", "data.test_fraction=0.5"])
    assert compose(["data.val_fraction=0.5", "data.test_fraction=0.4"]).data.val_fraction == 0.5
    import dataclasses

    from keras_fgvc.config.validate import check_ranges

    check_ranges(dataclasses.replace(compose([]), name="smoke-model.dropout=0.1,train.epochs=2"))  # a sweep job's


def test_cli_impossible_value_exits_2_with_one_line_and_writes_nothing(tmp_path):
    result = run_cli_in(tmp_path, "train.learning_rate=-1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: config key 'train.learning_rate' = -1.0: must be > 0"]
    assert list(tmp_path.iterdir()) == []


def test_pipeline_options_belong_to_their_pipeline():
    cfg = compose(["pseudo_label.threshold=0.8"])
    assert cfg.pseudo_label.threshold == 0.8
    with pytest.raises(ConfigError, match="unknown config key 'pseudo_label.warm_start'.*valid keys at pseudo_label: input_table, threshold"):
        compose(["pseudo_label.warm_start=false"])


def test_stage_keys_are_indexed_and_checked():
    cfg = compose(["train.stages.2.init_from=none", "train.stages.0.train={learning_rate: 0.01}"])
    assert cfg.train.stages[2].init_from == "none" and cfg.train.stages[0].train == {"learning_rate": 0.01}
    with pytest.raises(ConfigError, match=r"unknown config key 'train.stages.0.epoch'.*Did you mean 'train.stages.0.epochs'"):
        compose(["train.stages.0.epoch=3"])
    with pytest.raises(ConfigError, match=r"'train.stages.0.train.learning_rat'.*Did you mean 'learning_rate'"):
        compose(["train.stages.0.train={learning_rat: 0.01}"])
    with pytest.raises(ConfigError, match=r"unknown stage of pipeline fivek 'mask2'; known: all, distancing, fivek, mask.*Did you mean 'mask'"):
        compose(["stage=mask2"])


def test_unknown_names_fail_at_compose_before_anything_runs():
    with pytest.raises(ConfigError, match=r"model.backbone.*unknown backbone 'efficientnetv2_b9'"):
        compose(["model.backbone=efficientnetv2_b9"])
    with pytest.raises(ConfigError, match=r"augment.preset.*unknown augmentation preset 'fivk'.*Did you mean 'fivek'"):
        compose(["augment.preset=fivk"])
    with pytest.raises(ConfigError, match=r"data.format.*unknown data format 'imagefolders'.*Did you mean 'imagefolder'"):
        compose(["data.format=imagefolders"])


# 3 does not divide 32; K = 1 has no positive; K = 32 leaves P = 1 (no negative); 8 gives P = 4.
@pytest.mark.parametrize("value", ["3", "1", "32", "8"])
def test_images_per_class_must_split_the_batch_into_p_by_k(value):
    overrides = ["pipeline=vipriors", "data.batch_size=32", f"train.stages.1.images_per_class={value}"]
    if value == "8":
        assert compose(overrides).train.stages[1].images_per_class == 8
        return
    with pytest.raises(ConfigError, match=r"train.stages.1.images_per_class' = \d+: give K >= 2 that divides"):
        compose(overrides)


def test_a_bad_value_that_an_interpolation_selects_by_is_named_with_its_choices():
    with pytest.raises(ConfigError, match="config key 'vipriors.finetune' = 'cosface'; choose one of: triplet, arcface"):
        compose(["pipeline=vipriors", "vipriors.finetune=cosface"])
    assert compose(["pipeline=vipriors", "vipriors.finetune=arcface"]).train.stages[1].model == {
        "heads": ["softmax", "arcface"]}


def test_a_successful_cli_run_on_a_cpu_machine_keeps_stderr_empty(tmp_path):
    import shutil

    from tests.pipelines.cli import run_cli

    if os.path.exists("/proc/driver/nvidia") or shutil.which("nvidia-smi"):
        pytest.skip("a machine with an NVIDIA driver passes TensorFlow's device messages on")
    done, _ = run_cli("task=model_card", "smoke=true", f"runs_root={tmp_path}/runs", f"data.demo_root={tmp_path}/demo",
                      cwd=tmp_path)
    assert done.returncode == 0 and "params" in done.stdout
    assert done.stderr == ""  # no oneDNN/absl INFO lines, no "failed call to cuInit" on a CPU-only machine
