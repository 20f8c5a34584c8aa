"""pipeline=hotel_id end to end through ``run.py`` in subprocesses: ``stage=train``, ``stage=embed``
and ``stage=rank`` one after the other on one smoke run (each step reads the files of the one
before), then a 2-run ensemble on those files and a ``stage=embed`` killed half-way. One run
serves every assertion (tracing dominates small runs); two of its test photos are unreadable, as
some of a real data set's may be."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from keras_fgvc.data.sources import hotel_id as source
from keras_fgvc.evaluation.metrics import map_at_k
from keras_fgvc.evaluation.retrieval import load_embeddings, rank_classes
from tests.pipelines.cli import ROOT, run_cli

K = 5


def plant_unreadable_test_images(common) -> list[str]:
    """Make the demo data the run will find and break two of its test photos, a truncated JPEG and
    a zero-byte file (their truth rows stay): returns their image ids."""
    from keras_fgvc.config.compose import compose
    from keras_fgvc.pipelines.hotel_id import data_root

    test_dir = Path(data_root(compose(common))) / "test_images"
    names = sorted(path.name for path in test_dir.iterdir())
    truncated, empty = names[3], names[11]  # inside the table, not at its ends
    data = (test_dir / truncated).read_bytes()
    (test_dir / truncated).write_bytes(data[: len(data) // 2])
    (test_dir / empty).write_bytes(b"")
    return [truncated, empty]


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    root = tmp_path_factory.mktemp("hotel_id")
    common = ["pipeline=hotel_id", "smoke=true", f"runs_root={root}/runs", f"export.dir={root}/saved",
              f"data.demo_root={root}/demo"]
    unreadable = plant_unreadable_test_images(common)
    results = {}
    for step in ("train", "embed", "rank"):
        done, seconds = run_cli(*common, f"stage={step}", cwd=root)
        assert done.returncode == 0, (step, done.stderr[-3000:])
        results[step] = (done, seconds)
        print(f"hotel_id smoke stage={step}: {seconds:.0f} s")
    run = root / "runs" / "hotel_id" / "smoke"
    metrics = json.loads((run / "metrics.json").read_text())
    return {"root": root, "run": run, "common": common, "metrics": metrics, "results": results,
            "demo": next((root / "demo").iterdir()), "unreadable": unreadable}


def embedded_rows(rank_run, name: str, embed_run=None) -> np.ndarray:
    """The rows of ``rank/<name>`` that belong to the test images ``embed/`` embedded, in
    embed/test's order (rank/ has a row for every test image: the unreadable ones get the prior)."""
    position = {image: row for row, image in enumerate(np.load(rank_run / "rank" / "test_ids.npy"))}
    embedded = np.load((embed_run or rank_run) / "embed" / "test" / "ids.npy")
    return np.load(rank_run / "rank" / name)[[position[image] for image in embedded]]


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
    # smoke runs (20 hotels x 4 photos, 32 px) gave 1.6x at 2 epochs and 2.6x-4.1x at 8 epochs over
    # seeds 0-3 with the loss flat, so that bar is not met by training (the demo at 64 px reaches 6.5x,
    # README) and is not asserted here: at this size it is noise.
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
    np.testing.assert_array_equal(embedded_rows(steps["run"], "test_ranked.npy"), expected)


def test_unreadable_test_images_get_the_prior_and_the_others_their_ranking(steps):
    from keras_fgvc.pipelines.hotel_id import prior_ranking

    run, demo, unreadable, metrics = steps["run"], steps["demo"], steps["unreadable"], steps["metrics"]
    test = source.load_truth(str(demo))
    submission = pd.read_csv(run / "submission.csv", dtype=str)
    answers = dict(zip(submission["image_id"], submission["hotel_id"]))
    assert len(submission) == len(answers) == len(test)  # one row per test image, readable or not
    # listed and counted as before: bad_files.txt, metrics.json
    listed = dict(line.split("\t") for line in (run / "bad_files.txt").read_text().splitlines())
    reasons = {os.path.basename(path): reason for path, reason in listed.items()}
    assert sorted(reasons) == sorted(unreadable) and reasons[unreadable[1]] == "empty file (0 bytes)"
    assert reasons[unreadable[0]].startswith("unreadable image (")  # the truncated JPEG
    assert metrics["data"]["test_unreadable"] == metrics["embed"]["test_unreadable"] == 2
    assert metrics["rank"]["test_unreadable"] == 2 and metrics["data"]["test"] == len(test) - 2
    # the prior: the K hotels with the most gallery photos, equal counts in label order
    gallery_labels = np.load(run / "embed" / "gallery" / "labels.npy")
    counts = np.bincount(gallery_labels)
    prior = sorted(range(len(counts)), key=lambda label: (-counts[label], label))[:K]
    classes = [str(c) for c in source.hotel_ids(str(demo))[0]]
    assert [answers[image] for image in unreadable] == [" ".join(classes[c] for c in prior)] * 2
    assert [str(h) for h in metrics["rank"]["test_prior"]] == [classes[c] for c in prior]
    # every other image: its own ranking from the embed files, as when nothing was unreadable
    embed = run / "embed"
    embedded = np.load(embed / "test" / "ids.npy")
    assert sorted(embedded) == sorted(set(test["image_id"]) - set(unreadable))
    expected, _ = rank_classes(load_embeddings(str(embed / "test"))[0], load_embeddings(str(embed / "gallery"))[0],
                               gallery_labels, k=K, normalize=False)
    assert [answers[image] for image in embedded] == [" ".join(classes[c] for c in row) for row in expected]
    # rank/ holds the submission's rows in its order: the prior's rows have no score
    ids = np.load(run / "rank" / "test_ids.npy")
    assert ids.tolist() == submission["image_id"].tolist()
    bad = np.isin(ids, unreadable)
    ranked, scores = np.load(run / "rank" / "test_ranked.npy"), np.load(run / "rank" / "test_scores.npy")
    assert (ranked[bad] == prior).all() and np.isnan(scores[bad]).all() and np.isfinite(scores[~bad]).all()
    # test MAP@5 is Kaggle's score of the whole submission, the prior's rows included
    truth = test.set_index("image_id")["label"]
    assert metrics["test_map5"] == pytest.approx(map_at_k(truth[ids].to_numpy(), ranked, K))
    # the prior function itself, on unequal counts (the smoke gallery has 4 photos of every hotel)
    labels = np.array([3, 3, 1, 0, 1, 3, 2])  # photos: hotel 3 three, hotel 1 two, hotels 0 and 2 one, hotel 4 none
    assert prior_ranking(labels, num_classes=5, k=3).tolist() == [3, 1, 0]
    assert prior_ranking(labels, num_classes=5, k=6).tolist() == [3, 1, 0, 2, -1, -1]  # no photo: never offered


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
    assert_top_k_of(embedded_rows(run, "test_ranked.npy"), reference)
    assert_top_k_of(answer["label"].numpy(), reference)
    np.testing.assert_allclose(answer["score"].numpy(), embedded_rows(run, "test_scores.npy"), atol=1e-4)
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
    assert_top_k_of(embedded_rows(ensemble, "test_ranked.npy", run), class_scores(run, "test"))
    # The same rows, and the unreadable test images get the same prior
    assert np.load(ensemble / "rank" / "test_ids.npy").tolist() == np.load(run / "rank" / "test_ids.npy").tolist()
    bad = np.isin(np.load(run / "rank" / "test_ids.npy"), steps["unreadable"])
    np.testing.assert_array_equal(np.load(ensemble / "rank" / "test_ranked.npy")[bad],
                                  np.load(run / "rank" / "test_ranked.npy")[bad])
    # Summing a run's similarity with itself doubles every score: the same ranking, twice the scores
    # (the prior's rows have none: NaN in both).
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


def folder_bytes(folder: Path) -> dict:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_killed_embed_step_leaves_the_old_embed_folder_and_rank_still_works(steps):
    """SIGKILL while ``stage=embed`` writes (its gallery part done, the rest not): the old embed/ is
    byte for byte what it was, and the next ``stage=rank`` clears the half-built folder and ranks.
    Last in this file: its rank run rewrites the run's files (without exports)."""
    from keras_fgvc.pipelines.hotel_id import EMBED_HOLD_ENV

    root, run = steps["root"], steps["run"]
    before, submission = folder_bytes(run / "embed"), (run / "submission.csv").read_bytes()
    hold = root / "embed_hold"
    hold.mkdir()
    with open(root / "killed_embed.log", "w") as log:
        child = subprocess.Popen([sys.executable, os.path.join(ROOT, "run.py"), *steps["common"], "stage=embed"],
                                 cwd=root, stdout=log, stderr=subprocess.STDOUT,
                                 env={**os.environ, EMBED_HOLD_ENV: str(hold)})
        try:
            announced, deadline = hold / str(child.pid), time.monotonic() + 300
            while not announced.exists() and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert announced.exists(), (root / "killed_embed.log").read_text()[-3000:]
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    assert child.returncode == -signal.SIGKILL
    building = Path(announced.read_text())
    # killed with a partial folder beside the old one: the gallery written, the test part not
    assert building == run / f"embed.tmp-{child.pid}"
    assert (building / "gallery" / "embeddings.npy").is_file() and not (building / "test").exists()
    assert folder_bytes(run / "embed") == before

    done, _ = run_cli(*steps["common"], "stage=rank", "export.enabled=false", cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"embed: removed {building} (left by a killed embed step)" in done.stdout
    assert not building.exists() and [p.name for p in run.glob("*embed*")] == ["embed"]
    assert folder_bytes(run / "embed") == before and (run / "submission.csv").read_bytes() == submission

