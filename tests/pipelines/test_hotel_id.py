"""pipeline=hotel_id end to end through ``run.py`` in subprocesses: ``stage=train``, ``stage=embed``
and ``stage=rank`` one after the other on one smoke run (each step reads the files of the one
before), then a re-rank with DBA + alpha-QE and a 2-run ensemble on those files. One run serves
every assertion (tracing dominates small runs)."""

import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from keras_fgvc.data.sources import hotel_id as source
from keras_fgvc.evaluation.metrics import map_at_k
from keras_fgvc.evaluation.retrieval import load_embeddings, rank_classes
from tests.pipelines.cli import run_cli

K = 5



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
    assert (steps["root"] / "saved" / "hotel_id" / "smoke" / "embed" / "saved_model.pb").is_file()


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
    # The embed files are unit vectors and rank ranks them as they are (normalize=False)
    np.testing.assert_allclose(np.linalg.norm(gallery, axis=1), 1.0, atol=1e-5)
    expected, _ = rank_classes(test, gallery, np.load(embed / "gallery" / "labels.npy"), k=K, normalize=False)
    np.testing.assert_array_equal(np.load(steps["run"] / "rank" / "test_ranked.npy"), expected)


# Two correct rankings may order hotels whose cosine scores differ by float32 rounding either way
# (a smoke model's embeddings are nearly parallel: scores agree to ~1e-5), so rankings computed
# by different code are compared through an independent float64 reference up to such ties.
TIE = 1e-5


def class_scores(run, queries: str, gallery_rows=None) -> np.ndarray:
    """Reference: each query's best cosine similarity to each hotel's gallery photos (float64)."""
    embed = run / "embed"
    gallery = np.asarray(load_embeddings(str(embed / "gallery"))[0], np.float64)[:gallery_rows]
    labels = np.load(embed / "gallery" / "labels.npy")[:gallery_rows]
    similarity = np.asarray(load_embeddings(str(embed / queries))[0], np.float64) @ gallery.T
    scores = np.full((len(similarity), labels.max() + 1), -np.inf)
    for label in np.unique(labels):
        scores[:, label] = similarity[:, labels == label].max(axis=1)
    return scores


def assert_top_k_of(ranked, reference):
    """Each row of ``ranked`` is K distinct hotels whose reference scores are the K best, in order."""
    assert ranked.shape == (len(reference), K)
    for row, scores in zip(ranked, reference):
        assert len(set(row.tolist())) == K
        np.testing.assert_allclose(scores[row], np.sort(scores)[::-1][:K], rtol=0, atol=TIE)


def test_retrieval_saved_model_answers_as_the_pipeline_ranks(steps):
    run, demo = steps["run"], steps["demo"]
    model = tf.saved_model.load(str(steps["root"] / "saved" / "hotel_id" / "smoke" / "retrieval"))
    test_ids = np.load(run / "embed" / "test" / "ids.npy")
    images = tf.constant([(demo / "test_images" / name).read_bytes() for name in test_ids])
    answer = model.signatures["serving_default"](image_bytes=images)
    reference = class_scores(run, "test")
    assert_top_k_of(np.load(run / "rank" / "test_ranked.npy"), reference)
    assert_top_k_of(answer["label"].numpy(), reference)
    np.testing.assert_allclose(answer["score"].numpy(), np.load(run / "rank" / "test_scores.npy"), atol=1e-4)
    classes = np.asarray([str(c) for c in source.hotel_ids(str(demo))[0]])
    np.testing.assert_array_equal(answer["class_id"].numpy().astype(str), classes[answer["label"].numpy()])


def test_an_ensemble_of_a_run_with_itself_ranks_as_the_run(steps):
    root, run = steps["root"], steps["run"]
    done, _ = run_cli(*steps["common"], f"hotel_id.ensemble=[{run},{run}]", "name=ensemble", cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    ensemble = root / "runs" / "hotel_id" / "ensemble"
    train_rows = json.loads((run / "embed" / "embed.json").read_text())["train_rows"]
    val_ranked = np.load(ensemble / "rank" / "val_ranked.npy")
    assert_top_k_of(val_ranked, class_scores(run, "val_queries", train_rows))
    assert_top_k_of(np.load(ensemble / "rank" / "test_ranked.npy"), class_scores(run, "test"))
    # Summing a run's similarity with itself doubles every score: the same ranking, twice the scores.
    np.testing.assert_allclose(np.load(ensemble / "rank" / "test_scores.npy"),
                               2 * np.load(run / "rank" / "test_scores.npy"), rtol=0, atol=2 * TIE)
    val_labels = np.load(run / "embed" / "val_queries" / "labels.npy")
    metrics = json.loads((ensemble / "metrics.json").read_text())
    assert metrics["val_map5"] == pytest.approx(map_at_k(val_labels, val_ranked, K))
    submission = pd.read_csv(ensemble / "submission.csv", dtype=str)
    classes = [str(c) for c in source.hotel_ids(str(steps["demo"]))[0]]
    test_ranked = np.load(ensemble / "rank" / "test_ranked.npy")
    assert [" ".join(classes[c] for c in row) for row in test_ranked] == list(submission["hotel_id"])


def test_a_bad_ensemble_is_one_error_line_before_anything_is_written(steps):
    root, run = steps["root"], steps["run"]
    done, _ = run_cli(*steps["common"], f"hotel_id.ensemble=[{run},{root}/nowhere]", "name=bad", cwd=root)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: config key 'hotel_id.ensemble'")
    assert "nowhere" in done.stderr and not (root / "runs" / "hotel_id" / "bad").exists()


def test_max_rows_cuts_gallery_and_queries_stratified_by_hotel(steps):
    from keras_fgvc.config.compose import compose
    from keras_fgvc.pipelines.hotel_id import data_root, split_tables

    cfg = compose([*steps["common"], "data.max_rows=30"])
    full = split_tables(compose([*steps["common"], "data.max_rows=0"]), data_root(cfg))
    tables = split_tables(cfg, data_root(cfg))
    assert {name: len(t) for name, t in tables.items()} == {name: min(30, len(t)) for name, t in full.items()}
    assert len(full["train"]) > 30 and set(tables["train"]["path"]) < set(full["train"]["path"])
    # 20 hotels: every one keeps a gallery photo (1 each, then 10 more by share)
    assert tables["train"]["label"].nunique() == full["train"]["label"].nunique() == 20
    assert tables["train"].attrs["classes"] == full["train"].attrs["classes"]


def test_the_run_report_shows_training_and_the_retrieval_figures(steps):
    from tests.tracking.report_checks import check_report

    page = check_report(steps["run"], ["train"], command_has="stage=rank")
    assert len(page.images) >= 3  # the curves, plots/retrieval.png, plots/val_map5.png
