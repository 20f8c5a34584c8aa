"""Pipelines under Keras' JAX backend (the TPU path), through ``run.py`` as a user runs them:
``KERAS_BACKEND=jax python run.py pipeline=<p> smoke=true``.

Every pipeline's JAX smoke run costs 1.5-4 min on 2 cores, beyond the suite's budget, so they run
with ``KERAS_FGVC_JAX_ALL=1`` (measured results in the README, "Backends"). ``make test`` covers the
JAX path with cheaper runs: the notebook trains cars under JAX through the library and checks its
SavedModel against Keras (tests/notebooks), the parity worker exports its JAX-trained model and
serves the embed and retrieval signatures from TensorFlow (test_backend_parity.py), and a killed
JAX run resumes exactly (tests/training/test_resume.py). The one-line refusals below always run."""

import json

import numpy as np
import pytest
import tensorflow as tf

from keras_fgvc.evaluation.retrieval import load_embeddings
from tests.fixtures.jax_all import jax_all
from tests.pipelines.cli import run_cli
from tests.pipelines.test_hotel_id import assert_top_k_of, class_scores

pytest.importorskip("jax", reason="the JAX backend needs the jax extra: pip install '.[jax]'")
JAX = {"KERAS_BACKEND": "jax"}
ALL = jax_all("1.5-4 min each")


@pytest.fixture(scope="module")
def hotel_id(tmp_path_factory):
    root = tmp_path_factory.mktemp("jax_hotel_id")
    done, seconds = run_cli("pipeline=hotel_id", "smoke=true", f"runs_root={root}/runs", f"export.dir={root}/saved",
                            f"data.demo_root={root}/demo", cwd=root, env=JAX)
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"hotel_id smoke under JAX: {seconds:.0f} s")
    run = root / "runs" / "hotel_id" / "smoke"
    return {"root": root, "run": run, "demo": next((root / "demo").iterdir()), "done": done,
            "metrics": json.loads((run / "metrics.json").read_text())}


@pytest.mark.slow
@ALL
def test_the_run_trains_validates_every_epoch_and_says_its_backend(hotel_id):
    run, metrics = hotel_id["run"], hotel_id["metrics"]
    assert (run / "command.txt").read_text().startswith("KERAS_BACKEND=jax python run.py pipeline=hotel_id")
    history = (run / "train" / "history.csv").read_text().splitlines()
    assert "val_map5" in history[0] and len(history) == 3  # header + 2 epochs, MAP@5 in each
    assert 0.0 < metrics["val_map5"] <= 1.0 and (run / "submission.csv").is_file()


@pytest.mark.slow
@ALL
def test_the_embed_saved_model_of_a_jax_model_gives_its_keras_embeddings(hotel_id):
    # embed/test holds the JAX Keras model's embeddings of the test images (test preprocessing);
    # the SavedModel, written through jax2tf, must give the same from the encoded files.
    run, demo = hotel_id["run"], hotel_id["demo"]
    embeddings, ids = load_embeddings(str(run / "embed" / "test"))
    model = tf.saved_model.load(str(hotel_id["root"] / "saved" / "hotel_id" / "smoke" / "embed"))
    images = tf.constant([(demo / "test_images" / name).read_bytes() for name in ids])
    served = model.signatures["embed"](image_bytes=images)["embedding"].numpy()
    np.testing.assert_allclose(served, embeddings, atol=1e-4)


@pytest.mark.slow
@ALL
def test_the_retrieval_saved_model_of_a_jax_model_ranks_as_the_pipeline(hotel_id):
    run, demo = hotel_id["run"], hotel_id["demo"]
    model = tf.saved_model.load(str(hotel_id["root"] / "saved" / "hotel_id" / "smoke" / "retrieval"))
    test_ids = np.load(run / "embed" / "test" / "ids.npy")
    answer = model.signatures["serving_default"](image_bytes=tf.constant(
        [(demo / "test_images" / name).read_bytes() for name in test_ids]))
    assert_top_k_of(answer["label"].numpy(), class_scores(run, "test"))
    np.testing.assert_allclose(answer["score"].numpy(), np.load(run / "rank" / "test_scores.npy"), atol=1e-4)


@pytest.mark.slow
@ALL
@pytest.mark.parametrize("pipeline, top1_key", [("fivek", None), ("cars", "test_top1"), ("vipriors", "val_top1_tta"),
                                                ("squeeze", None)])
def test_every_other_pipeline_runs_to_the_end_under_jax(tmp_path, pipeline, top1_key):
    done, seconds = run_cli(f"pipeline={pipeline}", "smoke=true", f"runs_root={tmp_path}/runs",
                            f"export.dir={tmp_path}/saved", f"data.demo_root={tmp_path}/demo", cwd=tmp_path, env=JAX)
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"{pipeline} smoke under JAX: {seconds:.0f} s")
    run = tmp_path / "runs" / pipeline / "smoke"
    assert (run / "report.html").is_file() and (run / "command.txt").read_text().startswith("KERAS_BACKEND=jax")
    metrics = json.loads((run / "metrics.json").read_text())
    if top1_key:
        assert 0.0 <= metrics[top1_key] <= 1.0


@pytest.mark.parametrize("override, line", [
    ("augment.runs_in=model", "error: config key 'augment.runs_in' = 'model': the augmentation layers are TensorFlow "
                              "ops and cannot run in a jax training step; set augment.runs_in=data (or auto)"),
    ("model.backbone=hub", "error: config key 'model.backbone' = 'hub': TF-Hub modules are TensorFlow graphs and "
                           "need KERAS_BACKEND=tensorflow (this process runs jax)"),
    ("runtime.distribute=multi_worker", "error: config key 'runtime.distribute' = 'multi_worker' is TensorFlow's "
                                        "MultiWorkerMirroredStrategy; under jax use auto (DataParallel over this "
                                        "host's devices)"),
])
def test_what_only_tensorflow_can_do_is_one_line_under_jax(tmp_path, override, line):
    done, _ = run_cli("pipeline=cars", "smoke=true", override, f"runs_root={tmp_path}/runs", cwd=tmp_path, env=JAX)
    assert done.returncode == 2 and done.stderr.strip() == line
    assert not (tmp_path / "runs").exists()
