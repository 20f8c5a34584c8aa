"""Progress bars: live in a terminal, quiet in logs, forced by KERAS_FGVC_PROGRESS."""

import io

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_fgvc.tracking import progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("stdout, env, bars", [
    (io.StringIO(), None, False), (Terminal(), None, True), (Terminal(), "0", False), (io.StringIO(), "1", True),
])
def test_bars_follow_the_terminal_unless_forced(monkeypatch, stdout, env, bars):
    monkeypatch.setattr("sys.stdout", stdout)
    if env is None:
        monkeypatch.delenv(progress.ENV, raising=False)
    else:
        monkeypatch.setenv(progress.ENV, env)
    assert progress.interactive() is bars
    assert progress.fit_verbosity() == (1 if bars else 0)
    assert progress.predict_verbosity() == (1 if bars else 0)


def test_prediction_and_embedding_loops_print_nothing_into_a_log(monkeypatch, tmp_path, capsys):
    import pandas as pd
    from PIL import Image

    from keras_fgvc.evaluation.predict import predict_table
    from keras_fgvc.evaluation.retrieval import extract_embeddings

    monkeypatch.delenv(progress.ENV, raising=False)  # pytest's captured stdout is not a terminal
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.full((8, 8, 3), 40 * i, "uint8")).save(paths[-1])
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, {"logits": keras.layers.Dense(2)(pooled), "embedding": pooled})
    logits = predict_table(model, pd.DataFrame({"path": paths}), 8, batch_size=2, cache=False)
    images = tf.data.Dataset.from_tensor_slices(np.zeros((3, 8, 8, 3), "float32")).batch(2)
    embeddings, _ = extract_embeddings(model, images, str(tmp_path / "gallery"))
    assert logits.shape == (3, 2) and embeddings.shape == (3, 3)
    assert capsys.readouterr().out == ""


def test_a_log_gets_one_line_per_epoch_that_names_the_stage(capsys):
    import re

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 1), "float32")
    model.fit(x, y, validation_data=(x, y), epochs=2, batch_size=4, verbose=0,
              callbacks=[progress.EpochLine("mask", 2)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for epoch, line in enumerate(lines, 1):
        assert re.fullmatch(rf"stage 'mask' epoch {epoch}/2: loss [0-9.e+-]+, val_loss [0-9.e+-]+ \([0-9.]+ s\)", line), line
    loss = float(re.search(r"val_loss ([0-9.e+-]+)", lines[1]).group(1))
    assert loss == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-3)
