"""The Squeeze report's pure parts: the markdown table, the distillation gain per width and its verdict."""

import types

import pytest

from keras_fgvc.pipelines.squeeze_report import (
    distillation_gains,
    gain_sentences,
    markdown_table,
)


def stage(name, teacher=None):
    return types.SimpleNamespace(name=name, teacher=teacher)


def row(model, backbone, val, test, role="student alone"):
    return {"model": model, "backbone": backbone, "val_top1": val, "test_top1": test, "role": role}


def test_gain_is_distilled_minus_alone_per_backbone_and_the_verdict_says_which_won():
    cfg = types.SimpleNamespace(train=types.SimpleNamespace(stages=[
        stage("t"), stage("a1"), stage("k1", "t"), stage("a2"), stage("k2", "t")]))
    rows = [row("t", "big", 0.9, 0.9, role="teacher (none)"), row("a1", "s1", 0.50, 0.40), row("k1", "s1", 0.60, 0.45),
            row("a2", "s2", 0.70, 0.70), row("k2", "s2", 0.65, 0.60)]
    gains = {g["backbone"]: g for g in distillation_gains(cfg, rows)}
    assert set(gains) == {"s1", "s2"}
    assert gains["s1"]["val_gain"] == pytest.approx(0.10) and gains["s1"]["test_gain"] == pytest.approx(0.05)
    assert gains["s2"]["test_gain"] == pytest.approx(-0.10)
    lines = gain_sentences([gains["s1"], gains["s2"]])
    assert "s1: distillation beats" in lines[0] and "+5.00 points" in lines[0]
    assert "s2: distillation does not beat" in lines[1] and "-10.00 points" in lines[1]


def test_markdown_table_formats_counts_fractions_and_missing_values():
    text = markdown_table([{"params": 3399352, "acc": 0.8598, "mb": 13.7, "int8": None, "on": True}],
                          [("params", "params"), ("acc", "acc"), ("mb", "MB"), ("int8", "int8"), ("on", "on")])
    header, rule, line = text.splitlines()
    assert header == "| params | acc | MB | int8 | on |" and rule == "|---|---|---|---|---|"
    assert line == "| 3,399,352 | 0.8598 | 13.7 | - | yes |"
