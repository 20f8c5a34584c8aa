"""Stage configs are checked when composed: every mistake is one ConfigError naming its key, and the
seed recipes (VIPriors, Squeeze) are expressible as stage lists without new code."""

import pytest

from keras_fgvc.config import to_config
from keras_fgvc.config.validate import ConfigError
from keras_fgvc.training.stages import stage_config
from tests.training.test_stages import STAGES, make_cfg


def test_seed_recipes_are_expressible_without_new_code(tmp_path):
    """VIPriors (CE, then CE + ArcFace or triplet from the CE weights) and Squeeze (teacher levels
    0 -> 1 -> 2 with changing losses, then a SqueezeNext student by distillation) as stage lists."""
    vipriors = [
        {"name": "ce", "init_from": "none", "losses": {"logits": [{"name": "label_smoothing_ce"}]}},
        {"name": "margin", "init_from": "ce", "losses": {"logits": [{"name": "sparse_ce"}],
                                                         "arcface_logits": [{"name": "sparse_ce"}]}},
        {"name": "triplet", "init_from": "ce", "losses": {"logits": [{"name": "sparse_ce"}],
                                                          "embedding": [{"name": "batch_hard_triplet"}]}},
    ]
    cfg = make_cfg(tmp_path, stages=vipriors, model={"backbone": "seresnext50_32x4d", "heads": ["softmax", "arcface"]},
                   train={"optimizer": "sgd", "lr_scaling": "linear", "learning_rate": 0.1, "warmup_epochs": 1.0,
                          "stages": vipriors})
    assert [s.init_from for s in cfg.train.stages] == ["none", "ce", "ce"]
    squeeze = [
        {"name": "teacher0", "init_from": "none", "augment": "squeeze_level0", "losses": {"logits": [{"name": "sparse_ce"}]}},
        {"name": "teacher1", "augment": "squeeze_level1",
         "losses": {"logits": [{"name": "sparse_ce"}], "pre_logits": [{"name": "center", "weight": 1e-5},
                                                                      {"name": "prelogit_norm", "weight": 1e-5}]}},
        {"name": "teacher2", "augment": "squeeze_level2", "train": {"learning_rate": 5e-5},
         "losses": {"logits": [{"name": "hard_mining", "kwargs": {"loss": "sparse_ce", "fraction": 0.5}}],
                    "embedding": [{"name": "batch_hard_triplet"}],
                    "pre_logits": [{"name": "center", "weight": 1e-4}, {"name": "prelogit_norm", "weight": 1e-4}]}},
        {"name": "student_kd", "init_from": "none", "teacher": "teacher2", "model": {"backbone": "squeezenext_23v5_200"},
         "losses": {"logits": [{"name": "distillation", "kwargs": {"temperature": 4.0, "alpha": 0.1}}]}},
    ]
    cfg = make_cfg(tmp_path, stages=squeeze, model={"backbone": "inception_resnet_v2", "embedding_dim": 128},
                   train={"stages": squeeze})
    student = stage_config(cfg, cfg.train.stages[3])
    assert student.model.backbone == "squeezenext_23v5_200" and cfg.model.backbone == "inception_resnet_v2"
    assert cfg.train.stages[2].losses["pre_logits"][1].weight == 1e-4


@pytest.mark.parametrize("change, message", [
    ({"name": "a"}, "stage names must be unique"),
    ({"init_from": "zzz"}, "init_from"),
    ({"freeze": "half"}, "backbone_except_last_<N>"),
    ({"losses": {"logits": [{"name": "sparse_cee"}]}}, "Did you mean 'sparse_ce'"),
    ({"losses": {"logit": [{"name": "sparse_ce"}]}}, "unknown model output 'logit'"),
    ({"train": {"learning_rat": 0.1}}, "Did you mean 'learning_rate'"),
    ({"train": {"schedule": "cosinus"}}, "choose one of: cosine"),
    ({"augment": "nope"}, "unknown augmentation preset 'nope'"),
])
def test_stage_mistakes_are_config_errors_naming_the_key(tmp_path, change, message):
    stages = [STAGES[0], {**STAGES[1], **change}]
    with pytest.raises(ConfigError, match=message):
        make_cfg(tmp_path, stages=stages)


def test_unknown_stage_backbone_and_backbone_option_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown stage of pipeline fivek 'z'; known: a, all, b, c, d"):
        make_cfg(tmp_path, stage="z")
    with pytest.raises(ConfigError, match=r"unknown backbone 'ghostnet_5'.*Did you mean"):
        to_config({"model": {"backbone": "ghostnet_5"}})
    with pytest.raises(ConfigError, match=r"model.backbone_kwargs.out_chanels.*Did you mean 'out_channels'"):
        to_config({"model": {"backbone": "ghostnet_050", "backbone_kwargs": {"out_chanels": 8}}})


