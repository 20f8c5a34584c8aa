"""pipeline=hotel_id end to end through ``run.py`` in subprocesses: ``stage=train``, ``stage=embed``
and ``stage=rank`` one after the other on one smoke run (each step reads the files of the one
before), then a re-rank with DBA + alpha-QE and a 2-run ensemble on those files. One run serves
every assertion (tracing dominates small runs)."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from keras_fgvc.data.sources import hotel_id as source
from keras_fgvc.evaluation.metrics import map_at_k
from keras_fgvc.evaluation.retrieval import load_embeddings, rank_classes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K = 5


def run_cli(*args, cwd):
    started = time.perf_counter()
    done = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), *args], cwd=cwd, capture_output=True, text=True,
                          check=False)
    return done, time.perf_counter() - started


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    root = tmp_path_factory.mktemp("hotel_id")
    common = ["pipeline=hotel_id", "smoke=true", f"runs_root={root}/runs", f"export.dir={root}/saved",
              f"data.demo_root={root}/demo"]
    results = {}
    for step in ("train", "embed", "rank"):
        done, seconds = run_cli(*common, f"stage={step}", cwd=root)
        assert done.returncode == 0, (step, done.stderr[-3000:])
        results[step] = (done, seconds)
        print(f"hotel_id smoke stage={step}: {seconds:.0f} s")
    run = root / "runs" / "hotel_id" / "smoke"
    metrics = json.loads((run / "metrics.json").read_text())
    return {"root": root, "run": run, "common": common, "metrics": metrics, "results": results,
            "demo": next((root / "demo").iterdir())}


def test_each_step_exits_zero_and_writes_its_files(steps):
    run = steps["run"]
    history = pd.read_csv(run / "train" / "history.csv")
    assert "val_map5" in history.columns and len(history) == 2
    for part in ("gallery", "val_queries", "test"):
        embeddings, ids = load_embeddings(str(run / "embed" / part))
        assert embeddings.shape == (len(ids), 64)
        np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert (run / "plots" / "retrieval.png").is_file() and (run / "plots" / "val_map5.png").is_file()
    assert (steps["root"] / "saved" / "hotel_id" / "embed" / "saved_model.pb").is_file()


def test_best_checkpoint_is_the_best_val_map_epoch(steps):
    history = pd.read_csv(steps["run"] / "train" / "history.csv")
    train = steps["metrics"]["train"]
    assert train["monitor"] == "val_map5"
    assert train["best_epoch"] == int(history["val_map5"].to_numpy().argmax())
    assert train["best_value"] == pytest.approx(history["val_map5"].max())
    # rank re-embeds with the best weights: the same queries against the same gallery
    assert steps["metrics"]["rank"]["val_map5"] == pytest.approx(train["best_value"], abs=1e-6)


def test_random_ranking_expectation_is_the_mean_over_every_ranking(steps):
    from itertools import permutations

    from keras_fgvc.pipelines.hotel_id import random_map_at_k

    # Every ordering of K classes is equally likely under random ranking: average MAP@5 over all of them.
    for classes in (3, 6):
        orders = np.array(list(permutations(range(classes))))
        exact = map_at_k(np.zeros(len(orders), int), orders, K)
        assert random_map_at_k(classes, K) == pytest.approx(exact)
    # The smoke run reports it next to its val MAP@5. Issue 16 asks for 3x that at smoke size; measured
    # smoke runs (20 hotels x 4 photos, 32 px, 1-8 epochs) gave 1.8x-3.7x, so that bar is not met (the
    # demo at 64 px reaches 6.5x, README) and is not asserted here: at this size it is noise.
    hotels = steps["metrics"]["data"]["hotels"]
    assert steps["metrics"]["rank"]["random_val_map"] == pytest.approx(random_map_at_k(hotels, K))


def test_submission_has_five_distinct_training_hotels_per_test_image(steps):
    submission = pd.read_csv(steps["run"] / "submission.csv", dtype=str)
    test = source.load_truth(str(steps["demo"]))
    assert list(submission.columns) == ["image_id", "hotel_id"]
    assert sorted(submission["image_id"]) == sorted(test["image_id"])
    hotels = {str(h) for h in test.attrs["classes"]}
    ranked = [row.split(" ") for row in submission["hotel_id"]]
    assert all(len(row) == K == len(set(row)) and set(row) <= hotels for row in ranked)
    labels = test.set_index("image_id").loc[submission["image_id"], "hotel_id"].astype(str).to_numpy()
    assert steps["metrics"]["test_map5"] == pytest.approx(map_at_k(labels, ranked, K))


def test_rank_equals_rank_classes_on_the_embed_files(steps):
    embed = steps["run"] / "embed"
    gallery, _ = load_embeddings(str(embed / "gallery"))
    test, _ = load_embeddings(str(embed / "test"))
    expected, _ = rank_classes(test, gallery, np.load(embed / "gallery" / "labels.npy"), k=K)
    np.testing.assert_array_equal(np.load(steps["run"] / "rank" / "test_ranked.npy"), expected)


def test_retrieval_saved_model_answers_as_the_pipeline_ranks(steps):
    run, demo = steps["run"], steps["demo"]
    model = tf.saved_model.load(str(steps["root"] / "saved" / "hotel_id" / "retrieval"))
    test_ids = np.load(run / "embed" / "test" / "ids.npy")
    images = tf.constant([(demo / "test_images" / name).read_bytes() for name in test_ids])
    answer = model.signatures["serving_default"](image_bytes=images)
    np.testing.assert_array_equal(answer["label"].numpy(), np.load(run / "rank" / "test_ranked.npy"))
    np.testing.assert_allclose(answer["score"].numpy(), np.load(run / "rank" / "test_scores.npy"), atol=1e-4)
    submission = pd.read_csv(run / "submission.csv", dtype=str).set_index("image_id")
    served = [" ".join(row) for row in answer["class_id"].numpy().astype(str)]
    assert served == list(submission.loc[test_ids, "hotel_id"])


def test_an_ensemble_of_a_run_with_itself_ranks_as_the_run(steps):
    root, run = steps["root"], steps["run"]
    done, _ = run_cli(*steps["common"], f"hotel_id.ensemble=[{run},{run}]", "name=ensemble", cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    ensemble = root / "runs" / "hotel_id" / "ensemble"
    assert (ensemble / "submission.csv").read_text() == (run / "submission.csv").read_text()
    assert json.loads((ensemble / "metrics.json").read_text())["val_map5"] == pytest.approx(
        steps["metrics"]["val_map5"])


def test_a_bad_ensemble_is_one_error_line_before_anything_is_written(steps):
    root, run = steps["root"], steps["run"]
    done, _ = run_cli(*steps["common"], f"hotel_id.ensemble=[{run},{root}/nowhere]", "name=bad", cwd=root)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: config key 'hotel_id.ensemble'")
    assert "nowhere" in done.stderr and not (root / "runs" / "hotel_id" / "bad").exists()
