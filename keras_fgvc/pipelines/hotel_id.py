"""Hotel-ID 2022: ArcFace/CosFace embeddings under occlusion, gallery retrieval, MAP@5 (SYSTEMS.md section 1).

    train   the engine's stage(s) (``train.stages``): backbone -> embedding neck -> margin head,
            the seed's occlusion augmentation; validation MAP@5 (occluded val queries against the
            train gallery) is logged every epoch and picks the best checkpoint
    embed   train + val images through the *test* preprocessing (resize, no occlusion) -> the
            gallery, plus the occluded val queries and the test images, each streamed to disk
    rank    cosine similarity, top-k unique hotels: val MAP@5, ``submission.csv`` (Kaggle's
            format: one row per test image; one that cannot be read gets the prior, the k hotels
            with the most gallery photos), test MAP@5 where the truth is known (the demo), plots,
            and the exports: the embedding SavedModel and a retrieval SavedModel with the gallery inside

``stage=train|embed|rank`` runs one step on the files of the earlier ones; ``hotel_id.ensemble=
[run_a, run_b]`` ranks with the summed similarities of trained runs instead. Everything else
(the model, losses, augmentation, schedule) is config: ``pipelines/hotel_id.yaml``.
"""

import glob
import os
import shutil
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from keras_fgvc.atomic import recover_dir, replace_dir
from keras_fgvc.config.schema import register_pipeline_options
from keras_fgvc.data import classes as class_mapping
from keras_fgvc.data import synthetic
from keras_fgvc.errors import DataError, UserError
from keras_fgvc.tracking import run_dir as rundir

LABEL = "label"
EMBED_DIR = "embed"
RANK_DIR = "rank"
STEPS = ("embed", "rank")
GALLERY, VAL_QUERIES, TEST = "gallery", "val_queries", "test"
LABELS_FILE = "labels.npy"
# In embed/test/: the test images the check found unreadable (never embedded), and their labels
# (-1: unknown), so rank and an ensemble can still answer them with the prior.
UNREADABLE_IDS, UNREADABLE_LABELS = "unreadable_ids.npy", "unreadable_labels.npy"
# In rank/: the test image of each row of test_ranked.npy / test_scores.npy (= submission.csv's rows).
TEST_IDS_FILE = "test_ids.npy"
PLOT_QUERIES = 8
# Test-only: with this set to a folder, the embed step stops once its first part is written into
# its temp folder, writes ``<folder>/<pid>`` and waits there for the test's SIGKILL
# (tests/pipelines/test_hotel_id.py: a killed stage=embed leaves the old embed/ whole).
EMBED_HOLD_ENV = "KERAS_FGVC_TEST_HOLD_IN_EMBED_DIR"


@dataclass
class HotelIdConfig:
    k: int = 5  # hotels per query (Kaggle scores MAP@5)
    # Embed the image and its mirror (both sides of the ranking); the step embed reads it.
    flip_tta: bool = False
    # none | dba_aqe: database-side augmentation of the gallery, then alpha query expansion
    # (Radenovic et al., TPAMI 2018), each over ``rerank_neighbours`` neighbours with weight sim^alpha.
    rerank: str = "none"
    rerank_neighbours: int = 2
    rerank_alpha: float = 3.0
    # Trained runs (folders with embed/) whose cosine similarities are summed (the seed's
    # 5-model ensemble); weights default to equal. A non-empty list makes this run rank only.
    ensemble: list = field(default_factory=list)
    ensemble_weights: list = field(default_factory=list)
    # The seed of the fixed red rectangle on each validation query.
    val_occlusion_seed: int = 0
    # Demo data (synthetic.make("hotel_id")): hotels, photos per hotel, mask PNGs.
    demo_hotels: int = 40
    demo_images_per_hotel: int = 16
    demo_masks: int = 64


register_pipeline_options("hotel_id", "hotel_id", HotelIdConfig, steps=STEPS)


# --- data -----------------------------------------------------------------------------------------


def data_root(cfg) -> str:
    """``data.root``, or the demo Hotel-ID layout (generated on first use) for these settings."""
    demo, options = cfg.data.demo, cfg.hotel_id
    return synthetic.demo_root(
        cfg, f"hotel_id-h{options.demo_hotels}-n{options.demo_images_per_hotel}-t{demo.test_images}-s{demo.image_size}",
        "test_truth.csv",
        lambda root: synthetic.make("hotel_id", root, seed=cfg.seed, num_hotels=options.demo_hotels,
                                    images_per_hotel=options.demo_images_per_hotel, image_size=demo.image_size,
                                    num_masks=options.demo_masks, test_images=demo.test_images))


def mask_bank(cfg):
    """The ``train_masks`` PNGs as a bank when the augmentation draws real masks, else None."""
    from keras_fgvc.augment import presets
    from keras_fgvc.data.masks import load_mask_bank
    from keras_fgvc.data.sources.hotel_id import mask_paths
    from keras_fgvc.training.stages import stage_steps

    steps = [step for stage in cfg.train.stages for step in stage_steps(cfg, stage)]
    return load_mask_bank(mask_paths(data_root(cfg))) if presets.needs_mask_bank(steps) else None


def split_tables(cfg, root: str) -> dict:
    """``{"train", "val", "test"}``: val is ``data.val_fraction`` of each hotel's photos (every
    hotel keeps one in train, so it can be retrieved); test carries the demo's labels when known."""
    from keras_fgvc.data.prepare import limit_rows, source_table
    from keras_fgvc.data.sources.hotel_id import load_truth
    from keras_fgvc.data.splits import stratified_split

    table = source_table(cfg, root)
    keep, val = stratified_split(table[LABEL].to_numpy(), cfg.data.val_fraction, cfg.seed)
    if not len(val):
        raise UserError(f"{root}: no validation photos: hotel_id validates MAP@5 on data.val_fraction "
                        f"(= {cfg.data.val_fraction}) of each hotel with two or more photos; raise it above 0")
    test = load_truth(root)
    tables = {"train": table.iloc[keep].reset_index(drop=True), "val": table.iloc[val].reset_index(drop=True),
              "test": test if test is not None else source_table(cfg, root, "test")}
    for split in tables.values():
        split.attrs["classes"] = table.attrs["classes"]
    return limit_rows(cfg, tables)


def image_batches(cfg, rows, boxes=None, with_ids: bool = False):
    """Batches of ``rows``' images through the test preprocessing (resize; no augmentation), in
    row order; with ``boxes`` each image gets its red rectangle (the validation queries); with
    ``with_ids``, ``(images, image_ids)`` pairs (what ``extract_embeddings`` stores)."""
    import tensorflow as tf

    from keras_fgvc.augment.occlusion import paint_rectangles
    from keras_fgvc.data.pipeline import PipelineSpec, build

    batch = max(cfg.data.batch_size, 32)
    spec = PipelineSpec(cfg.data.image_size, batch, channels=cfg.model.img_channels, resize=cfg.data.resize,
                        cache=cfg.data.cache, cache_dir=cfg.data.cache_dir)
    images = build(rows, spec, training=False).map(lambda inputs: inputs["image"])
    if boxes is not None:
        boxed = tf.data.Dataset.zip((images, tf.data.Dataset.from_tensor_slices(boxes).batch(batch)))
        images = boxed.map(paint_rectangles)
    if with_ids:
        ids = tf.data.Dataset.from_tensor_slices(rows["image_id"].astype(str).to_numpy()).batch(batch)
        images = tf.data.Dataset.zip((images, ids))
    return images.prefetch(tf.data.AUTOTUNE)


def val_boxes(cfg, rows) -> np.ndarray:
    from keras_fgvc.augment.occlusion import fixed_rectangles

    return fixed_rectangles(len(rows), cfg.data.image_size, cfg.hotel_id.val_occlusion_seed)


# --- the steps ------------------------------------------------------------------------------------


def run(cfg) -> dict:
    """Run the steps ``cfg.stage`` selects (all: train, embed, rank); returns the run's metrics."""
    from keras_fgvc.config import to_dict
    from keras_fgvc.data.prepare import check_tables, decode_once, submission_rows
    from keras_fgvc.export.stage import check_stage_exports
    from keras_fgvc.training.precision import configure
    from keras_fgvc.training.stages import check_can_start, stages_to_run

    check_options(cfg)
    if cfg.hotel_id.ensemble:
        return rank_ensemble(cfg)
    steps = [cfg.stage] if cfg.stage in STEPS else ([*STEPS] if cfg.stage == "all" else [])
    stages = stages_to_run(cfg)
    if "rank" in steps and cfg.export.enabled:
        check_stage_exports(cfg, ["embed", "retrieval"])
    root = data_root(cfg)
    tables = split_tables(cfg, root)
    check_can_start(cfg, stages)
    if steps:
        recover_embed_dir(cfg)  # before the checks: a kill may have left embed/ set aside
    for step in steps:
        check_inputs_of(cfg, step, will_train=bool(stages))
    plan = configure(cfg.runtime)
    checked, data_info = check_tables(cfg, tables)  # data_info counts them: test_unreadable
    # Kaggle scores one answer per test image: the unreadable ones are kept aside for the prior.
    unreadable_test = submission_rows(tables, checked).unreadable
    tables = {name: table.reset_index(drop=True) for name, table in checked.items()}
    for table in tables.values():
        decode_once(cfg, table)
    rundir.write_config(cfg.run_dir, to_dict(cfg))
    metrics = {"data": {**data_info, **{split: len(t) for split, t in tables.items()},
                        "hotels": len(tables["train"].attrs["classes"])}}
    model = None
    for stage in stages:
        metrics[stage.name], model = train(cfg, plan, stage, tables)
        print(f"stage '{stage.name}': best val MAP@{cfg.hotel_id.k} {metrics[stage.name]['best_value']:.4f} "
              f"(epoch {metrics[stage.name]['best_epoch'] + 1} of {metrics[stage.name]['epochs_run']})")
    if "embed" in steps or ("rank" in steps and cfg.export.enabled):  # rank uses the model only to export
        model = model or trained_model(cfg, tables)
    if "embed" in steps:
        metrics["embed"] = embed(cfg, model, tables, unreadable_test)
    if "rank" in steps:
        metrics["rank"] = rank(cfg, model, tables)
        metrics.update({key: metrics["rank"][key] for key in metric_keys(cfg) if key in metrics["rank"]})
    # Merged: a step run on its own (stage=rank) keeps the earlier steps' numbers.
    return rundir.merge_json(os.path.join(cfg.run_dir, "metrics.json"), metrics)


def check_options(cfg):
    """The ``hotel_id`` values ``schema.RANGES`` cannot check (relations between keys, run folders),
    before anything is written."""
    options = cfg.hotel_id
    if options.rerank != "none" and options.rerank_neighbours < 1:
        raise UserError(f"config key 'hotel_id.rerank_neighbours' = {options.rerank_neighbours}: must be at least 1 "
                        "with hotel_id.rerank=dba_aqe")
    if options.ensemble_weights and len(options.ensemble_weights) != len(options.ensemble):
        raise UserError(f"config key 'hotel_id.ensemble_weights' has {len(options.ensemble_weights)} values for "
                        f"{len(options.ensemble)} runs in hotel_id.ensemble")
    for run_folder in options.ensemble:
        if not os.path.isfile(os.path.join(run_folder, EMBED_DIR, GALLERY, "embeddings.npy")):
            raise UserError(f"config key 'hotel_id.ensemble': {run_folder} has no {EMBED_DIR}/{GALLERY}/embeddings.npy "
                            "(give run folders whose embed step has run)")


def check_inputs_of(cfg, step: str, will_train: bool):
    """A step run on its own needs the files of the steps before it."""
    from keras_fgvc.training.callbacks import BEST

    best = os.path.join(cfg.run_dir, cfg.train.stages[-1].name, BEST)
    if not will_train and not os.path.isfile(best):
        raise UserError(f"stage={step} needs the trained weights {best}; run stage={cfg.train.stages[-1].name} first")
    if step == "rank" and cfg.stage == "rank" and not os.path.isfile(os.path.join(embed_dir(cfg), "embed.json")):
        raise UserError(f"stage=rank needs {embed_dir(cfg)}/ (the embed step's files); run stage=embed first")


def num_classes_of(tables) -> int:
    return len(tables["train"].attrs["classes"])


def model_builder(num_classes: int):
    from keras_fgvc.models import build_model

    return lambda stage_cfg: build_model(stage_cfg, num_classes)


def train(cfg, plan, stage, tables):
    """One engine stage with validation MAP@k as an epoch metric; returns (metrics, model)."""
    from keras_fgvc.config import to_dict
    from keras_fgvc.tracking.wandb_run import attach_figures, start
    from keras_fgvc.training.retrieval_validation import RetrievalValidation
    from keras_fgvc.training.stages import train_stage

    val = tables["val"]

    def epoch_metrics(network):
        return [RetrievalValidation(network, image_batches(cfg, tables["train"]), tables["train"][LABEL].to_numpy(),
                                    image_batches(cfg, val, val_boxes(cfg, val)), val[LABEL].to_numpy(),
                                    k=cfg.hotel_id.k, flip=cfg.hotel_id.flip_tta, name=map_key(cfg))]

    # The stage's W&B run (offline by default) gets each epoch's logs, val MAP@k among them, and the
    # report's figures at the end, as the classifier pipelines' stages do.
    wandb_run = start(cfg.tracking, cfg.run_dir, f"{cfg.name}-{stage.name}", {**to_dict(cfg), "stage": stage.name})
    try:
        trained = train_stage(cfg, plan, stage, model_builder(num_classes_of(tables)), tables["train"], val, LABEL,
                              num_classes_of(tables), wandb_run=wandb_run, mask_bank=mask_bank(cfg),
                              epoch_metrics=epoch_metrics)
        if wandb_run is not None:
            attach_figures(wandb_run, cfg.run_dir, stage.name)
    finally:
        if wandb_run is not None:
            wandb_run.finish()
    metrics = {key: trained.info[key] for key in ("epochs_run", "best_epoch", "monitor", "best_value")}
    metrics["params"] = int(trained.model.count_params())
    metrics[f"{map_key(cfg)}_per_epoch"] = [float(v) for v in trained.history.get(map_key(cfg), [])]
    if "stopped_on_nan" in trained.info:
        metrics["stopped_on_nan"] = trained.info["stopped_on_nan"]
    return metrics, trained.model


def map_key(cfg) -> str:
    return f"val_map{cfg.hotel_id.k}"


def metric_keys(cfg) -> tuple[str, str]:
    """The run-level metric names: val and test MAP@k (``val_map5``, ``test_map5`` for k=5)."""
    return map_key(cfg), f"test_map{cfg.hotel_id.k}"


def trained_model(cfg, tables):
    """The last training stage's model at its best weights (a step run on its own)."""
    from keras_fgvc.training.callbacks import BEST
    from keras_fgvc.training.stages import stage_config

    stage = cfg.train.stages[-1]
    model = model_builder(num_classes_of(tables))(stage_config(cfg, stage))
    model.load_weights(os.path.join(cfg.run_dir, stage.name, BEST))
    return model


def embed_dir(cfg) -> str:
    return os.path.join(cfg.run_dir, EMBED_DIR)


def recover_embed_dir(cfg) -> list[str]:
    """Undo what a killed embed step left: its half-built ``embed.tmp-<pid>`` folders are deleted,
    and an ``embed/`` that ``replace_dir`` had set aside (a kill between its two renames) is put
    back. Safe because the run lock keeps every other process out of this run folder. Returns
    the paths removed."""
    final = embed_dir(cfg)
    removed = recover_dir(final)
    for leftover in sorted(glob.glob(f"{glob.escape(final)}.tmp-*")):
        shutil.rmtree(leftover, ignore_errors=True)
        removed.append(leftover)
    for path in removed:
        print(f"embed: removed {path} (left by a killed embed step)")
    return removed


def embed(cfg, model, tables, unreadable_test=None) -> dict:
    """Write ``embed/{gallery,val_queries,test}/`` (embeddings.npy, ids.npy, labels.npy): the
    gallery is train then val rows; ``test/`` also lists the ``unreadable_test`` rows (ids and
    labels, no embedding: rank answers them with the prior). The folder appears whole (built
    beside it, then renamed)."""
    from keras_fgvc.evaluation.embed import embedding_function
    from keras_fgvc.evaluation.retrieval import extract_embeddings

    embed_fn = embedding_function(model, cfg.hotel_id.flip_tta)
    final = embed_dir(cfg)
    building = f"{final}.tmp-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    if unreadable_test is None:
        unreadable_test = tables["test"].iloc[:0]
    gallery = pd.concat([tables["train"], tables["val"]], ignore_index=True)
    # The training rows are batched on their own, exactly as the per-epoch validation batched them:
    # a batch mixing train and val rows changes the kernels' summation order, and that last-bit
    # noise flips near-tied rankings, so rank's val MAP would not reproduce the checkpoint's.
    gallery_batches = image_batches(cfg, tables["train"], with_ids=True).concatenate(
        image_batches(cfg, tables["val"], with_ids=True))
    parts = {GALLERY: (gallery, gallery_batches),
             VAL_QUERIES: (tables["val"], image_batches(cfg, tables["val"], val_boxes(cfg, tables["val"]), True)),
             TEST: (tables["test"], image_batches(cfg, tables["test"], with_ids=True))}
    for name, (rows, batches) in parts.items():
        folder = os.path.join(building, name)
        extract_embeddings(embed_fn, batches, folder)
        np.save(os.path.join(folder, LABELS_FILE), rows[LABEL].fillna(-1).to_numpy().astype(np.int64))
        hold_for_kill_test(building)
    test_folder = os.path.join(building, TEST)
    np.save(os.path.join(test_folder, UNREADABLE_IDS), np.array(unreadable_test["image_id"].astype(str).tolist(), str))
    np.save(os.path.join(test_folder, UNREADABLE_LABELS),
            unreadable_test[LABEL].fillna(-1).to_numpy().astype(np.int64))
    info = {"flip_tta": cfg.hotel_id.flip_tta, "train_rows": len(tables["train"]), "val_rows": len(tables["val"]),
            "test_rows": len(tables["test"]), "test_unreadable": len(unreadable_test),
            "dim": int(model.output["embedding"].shape[-1])}
    rundir.write_json(os.path.join(building, "embed.json"), info)
    class_mapping.save(tables["train"].attrs["classes"], building)
    replace_dir(building, final)
    print(f"embed: gallery {len(gallery)} images, {len(tables['val'])} occluded val queries, "
          f"{len(tables['test'])} test images -> {final}")
    return info


def hold_for_kill_test(building: str):
    """Test-only (``EMBED_HOLD_ENV``): announce that ``building`` holds a finished part and wait to be killed."""
    hold_dir = os.environ.get(EMBED_HOLD_ENV)
    if not hold_dir:
        return
    from keras_fgvc.tracking.run_dir import atomic_write_text

    atomic_write_text(os.path.join(hold_dir, str(os.getpid())), building)
    while True:  # the test's SIGKILL ends this
        time.sleep(1)


def load_part(folder: str, name: str):
    """``(embeddings memmap, ids, labels)`` of one embed/ part."""
    from keras_fgvc.evaluation.retrieval import load_embeddings

    embeddings, ids = load_embeddings(os.path.join(folder, name))
    return embeddings, ids, np.load(os.path.join(folder, name, LABELS_FILE))


def load_unreadable(folder: str):
    """``(ids, labels)`` of the test images embed/ could not embed (none for an embed/ written
    before these files existed)."""
    ids_path = os.path.join(folder, TEST, UNREADABLE_IDS)
    if not os.path.isfile(ids_path):
        return np.array([], dtype=str), np.array([], dtype=np.int64)
    return np.load(ids_path), np.load(os.path.join(folder, TEST, UNREADABLE_LABELS))


def prior_ranking(gallery_labels, num_classes: int, k: int) -> np.ndarray:
    """The answer for a test image that cannot be embedded: the ``k`` hotels with the most gallery
    photos, most first, equal counts in class-index order (a stable sort: the same answer every
    run); ``PAD_LABEL`` fills the row when fewer than ``k`` hotels have photos.

    Without the image, MAP@k's expectation is the sum over ranks i of P(hotel_i) / i, which is
    largest with the hotels in decreasing probability: if test photos come from the hotels as
    often as the gallery's do, that is this frequency prior.

    Example:
        >>> prior_ranking(np.array([2, 0, 2, 1, 1]), num_classes=4, k=3).tolist()
        [1, 2, 0]
    """
    from keras_fgvc.evaluation.retrieval import PAD_LABEL

    counts = np.bincount(np.asarray(gallery_labels, np.int64), minlength=num_classes)
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] > 0][:k]
    return np.concatenate([order, np.full(k - len(order), PAD_LABEL)]).astype(np.int64)


def with_unreadable(folder: str, ids, labels, ranked, scores, gallery_labels, num_classes: int, k: int):
    """Every test row: the embedded images as ranked, then the unreadable ones (embed/'s list) with
    the prior and score NaN (nothing was compared). Returns ``(ids, labels, ranked, scores, prior
    or None when every image was read)``; these rows are submission.csv's and rank/'s."""
    bad_ids, bad_labels = load_unreadable(folder)
    if not len(bad_ids):
        return ids, labels, ranked, scores, None
    prior = prior_ranking(gallery_labels, num_classes, k)
    return (np.concatenate([ids, bad_ids]), np.concatenate([labels, bad_labels]),
            np.concatenate([ranked, np.tile(prior.astype(ranked.dtype), (len(bad_ids), 1))]),
            np.concatenate([scores, np.full((len(bad_ids), scores.shape[1]), np.nan, scores.dtype)]), prior)


def rerank(cfg, queries, gallery):
    """``(queries, gallery)`` after ``hotel_id.rerank``."""
    if cfg.hotel_id.rerank == "none":
        return queries, gallery
    from keras_fgvc.evaluation.reranking import (
        alpha_query_expansion,
        database_side_augmentation,
    )

    n, alpha = cfg.hotel_id.rerank_neighbours, cfg.hotel_id.rerank_alpha
    augmented = database_side_augmentation(gallery, n=n, alpha=alpha)
    return alpha_query_expansion(queries, augmented, n=n, alpha=alpha), augmented


def rank(cfg, model, tables) -> dict:
    """Val MAP@k, the submission, test MAP@k (demo), plots and exports from ``embed/``."""
    from keras_fgvc.evaluation.metrics import map_at_k
    from keras_fgvc.evaluation.retrieval import rank_classes

    k, folder = cfg.hotel_id.k, embed_dir(cfg)
    classes = tables["train"].attrs["classes"]
    gallery, _, gallery_labels = load_part(folder, GALLERY)
    val_queries, _, val_labels = load_part(folder, VAL_QUERIES)
    test, test_ids, test_labels = load_part(folder, TEST)
    train_rows = len(tables["train"])
    # Validation: the occluded val photos against the training photos only (their clean copies are
    # in the gallery, after the training rows).
    queries, train_gallery = rerank(cfg, val_queries, gallery[:train_rows])
    # Every vector here is already unit length (embedding_function, re-ranking): normalising again
    # would move them by an ulp and could reorder near-ties against the per-epoch validation.
    val_ranked, val_scores = rank_classes(queries, train_gallery, gallery_labels[:train_rows], k=k, normalize=False)
    queries, full_gallery = rerank(cfg, test, gallery)
    test_ranked, test_scores = rank_classes(queries, full_gallery, gallery_labels, k=k, normalize=False)
    test_ids, test_labels, test_ranked, test_scores, prior = with_unreadable(
        folder, test_ids, test_labels, test_ranked, test_scores, gallery_labels, len(classes), k)
    val_key, test_key = metric_keys(cfg)
    result = {val_key: map_at_k(val_labels, val_ranked, k), "k": k,
              "flip_tta": cfg.hotel_id.flip_tta, "rerank": cfg.hotel_id.rerank, "gallery_rows": len(gallery),
              "random_val_map": random_map_at_k(len(classes), k), **unreadable_info(prior, test_ids, test, classes)}
    write_submission(cfg, test_ids, test_ranked, classes)
    if (test_labels >= 0).all():  # Kaggle's score of the submission: the prior's rows count too
        result[test_key] = map_at_k(test_labels, test_ranked, k)
    save_rankings(cfg, test_ids, val=(val_ranked, val_scores), test=(test_ranked, test_scores))
    result["plots"] = plots(cfg, tables, val_ranked, gallery, val_queries)
    if cfg.export.enabled:
        result["export"] = export(cfg, model, full_gallery, gallery_labels, classes)
    print(format_rank(result, cfg))
    return result


def unreadable_info(prior, test_ids, embedded, classes) -> dict:
    """metrics.json's ``test_unreadable`` (rows answered by the prior) and, when any, ``test_prior``
    (that answer as hotel ids)."""
    info = {"test_unreadable": len(test_ids) - len(embedded)}
    if prior is not None:
        info["test_prior"] = class_mapping.to_original([c for c in prior if c >= 0], classes)
    return info


def save_rankings(cfg, test_ids, **parts):
    """``rank/<part>_ranked.npy`` and ``<part>_scores.npy`` (class indexes and scores, best first),
    and ``rank/test_ids.npy``: the image of each test row (submission.csv's rows, in its order)."""
    out = os.path.join(cfg.run_dir, RANK_DIR)
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, TEST_IDS_FILE), test_ids)
    for name, (ranked, scores) in parts.items():
        np.save(os.path.join(out, f"{name}_ranked.npy"), ranked)
        np.save(os.path.join(out, f"{name}_scores.npy"), scores)


def write_submission(cfg, image_ids, ranked, classes):
    """``submission.csv``: each test image's ranked class indexes as hotel ids (padding dropped)."""
    from keras_fgvc.evaluation.retrieval import PAD_LABEL
    from keras_fgvc.export.submission import write_hotel_id_submission

    hotels = [[classes[c] if c != PAD_LABEL else PAD_LABEL for c in row] for row in ranked]
    write_hotel_id_submission(os.path.join(cfg.run_dir, "submission.csv"), image_ids, hotels, k=cfg.hotel_id.k)


def random_map_at_k(num_classes: int, k: int) -> float:
    """MAP@k of a uniformly random ranking of ``num_classes`` classes: each rank i <= k holds the
    true class with probability 1/K and scores 1/i, so the expectation is H_min(k,K) / K."""
    return float(sum(1.0 / i for i in range(1, min(k, num_classes) + 1)) / num_classes)


def format_rank(result: dict, cfg) -> str:
    (val_key, test_key), k = metric_keys(cfg), cfg.hotel_id.k
    parts = [f"rank: val MAP@{k} {result[val_key]:.4f} (random ranking {result['random_val_map']:.4f})"]
    if test_key in result:
        parts.append(f"test MAP@{k} {result[test_key]:.4f}")
    if result["test_unreadable"]:
        parts.append(f"{result['test_unreadable']} unreadable test images answered with the prior "
                     f"{' '.join(str(h) for h in result['test_prior'])}")
    return ", ".join(parts) + f"; flip TTA {result['flip_tta']}, re-ranking {result['rerank']}"


def plots(cfg, tables, val_ranked, gallery, val_queries) -> dict:
    """``plots/retrieval.png`` (occluded val queries and their top hotels' best photos) and the
    per-epoch val MAP curve from the last training stage's history."""
    from keras_fgvc.tracking.plots_retrieval import metric_curve, retrieval_grid
    from keras_fgvc.training.callbacks import HISTORY
    from keras_fgvc.training.resume import read_history

    plots_dir = os.path.join(cfg.run_dir, "plots")
    classes = tables["train"].attrs["classes"]
    val, train_rows = tables["val"], len(tables["train"])
    shown = min(PLOT_QUERIES, len(val))
    query_images = next(iter(image_batches(cfg, val.iloc[:shown], val_boxes(cfg, val)[:shown]))).numpy()
    similarity = np.asarray(val_queries[:shown]) @ np.asarray(gallery[:train_rows]).T
    gallery_labels = tables["train"][LABEL].to_numpy()
    best_rows = [[int(np.flatnonzero(gallery_labels == c)[np.argmax(similarity[q, gallery_labels == c])])
                  for c in val_ranked[q] if c >= 0] for q in range(shown)]
    wanted = sorted({row for rows in best_rows for row in rows})
    pictures = dict(zip(wanted, gallery_pixels(cfg, tables["train"].iloc[wanted])))
    queries = [{"image": _uint8(query_images[q]), "label": str(classes[int(val[LABEL].iloc[q])])} for q in range(shown)]
    results = [[{"image": pictures[row], "label": str(classes[int(gallery_labels[row])]),
                 "score": float(similarity[q, row])} for row in best_rows[q]] for q in range(shown)]
    written = {"retrieval": retrieval_grid(queries, results, os.path.join(plots_dir, "retrieval.png"),
                                           title=f"occluded val queries: top-{cfg.hotel_id.k} hotels (green: hit)")}
    history = read_history(os.path.join(cfg.run_dir, cfg.train.stages[-1].name, HISTORY))
    if history.get(map_key(cfg)):
        written["val_map"] = metric_curve(history, map_key(cfg), os.path.join(plots_dir, f"{map_key(cfg)}.png"),
                                          title=f"validation MAP@{cfg.hotel_id.k} per epoch")
    return written


def gallery_pixels(cfg, rows) -> list:
    batches = image_batches(cfg, rows)
    return [_uint8(image) for batch in batches for image in batch.numpy()]


def _uint8(image):
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def export(cfg, model, gallery, gallery_labels, classes) -> dict:
    """``saved_models/hotel_id/<name>/embed`` (image bytes -> embedding) and ``.../retrieval`` (image
    bytes -> top-k hotel ids and scores, the gallery inside, stored in ``export.gallery_dtype``)."""
    from keras_fgvc.export.retrieval_model import export_retrieval_model
    from keras_fgvc.export.saved_model import export_saved_model
    from keras_fgvc.export.stage import stage_export_path

    options = cfg.hotel_id
    expansion = options.rerank_neighbours if options.rerank != "none" else 0
    return {
        "embed": export_saved_model(model, stage_export_path(cfg, "embed"), cfg.data.image_size,
                                    cfg.model.img_channels, overwrite=cfg.export.overwrite, resize=cfg.data.resize),
        "retrieval": export_retrieval_model(
            model, stage_export_path(cfg, "retrieval"), cfg.data.image_size, np.asarray(gallery), gallery_labels,
            list(classes), k=options.k, channels=cfg.model.img_channels, resize=cfg.data.resize,
            flip_tta=options.flip_tta, query_expansion=expansion, query_expansion_alpha=options.rerank_alpha,
            overwrite=cfg.export.overwrite, gallery_dtype=cfg.export.gallery_dtype),
    }


def rank_ensemble(cfg) -> dict:
    """Rank with the weighted sum of several runs' cosine similarities (their embed/ files)."""
    from keras_fgvc.config import to_dict
    from keras_fgvc.evaluation.ensemble import ensemble_rank_classes
    from keras_fgvc.evaluation.metrics import map_at_k

    options, k = cfg.hotel_id, cfg.hotel_id.k
    runs = [os.path.join(run_folder, EMBED_DIR) for run_folder in options.ensemble]
    infos = [rundir.read_json(os.path.join(folder, "embed.json")) for folder in runs]
    parts = {name: [load_part(folder, name) for folder in runs] for name in (GALLERY, VAL_QUERIES, TEST)}
    unreadable = [load_unreadable(folder)[0] for folder in runs]
    for name, loaded in parts.items():
        for run_folder, (_, ids, _), bad_ids in zip(options.ensemble[1:], loaded[1:], unreadable[1:]):
            if not np.array_equal(ids, loaded[0][1]) or (name == TEST and not np.array_equal(bad_ids, unreadable[0])):
                raise DataError(f"{run_folder}: its {EMBED_DIR}/{name} rows differ from {options.ensemble[0]}'s "
                                "(an ensemble needs runs on the same data, split and seed)")
    train_rows = infos[0]["train_rows"]
    labels = parts[GALLERY][0][2]
    weights = list(options.ensemble_weights) or None
    val_ranked, val_scores = ensemble_rank_classes([q for q, _, _ in parts[VAL_QUERIES]], [g[:train_rows] for g, _, _ in
                                          parts[GALLERY]], labels[:train_rows], weights=weights, k=k)
    test_ranked, test_scores = ensemble_rank_classes([q for q, _, _ in parts[TEST]], [g for g, _, _ in parts[GALLERY]], labels,
                                           weights=weights, k=k)
    classes = class_mapping.load(runs[0])
    test, test_ids, test_labels = parts[TEST][0]
    test_ids, test_labels, test_ranked, test_scores, prior = with_unreadable(
        runs[0], test_ids, test_labels, test_ranked, test_scores, labels, len(classes), k)
    val_key, test_key = metric_keys(cfg)
    rundir.write_config(cfg.run_dir, to_dict(cfg))
    write_submission(cfg, test_ids, test_ranked, classes)
    save_rankings(cfg, test_ids, val=(val_ranked, val_scores), test=(test_ranked, test_scores))
    result = {"runs": list(options.ensemble), "weights": weights or [1.0] * len(runs), "k": k,
              val_key: map_at_k(parts[VAL_QUERIES][0][2], val_ranked, k),
              **unreadable_info(prior, test_ids, test, classes)}
    if (test_labels >= 0).all():
        result[test_key] = map_at_k(test_labels, test_ranked, k)
    rundir.write_json(os.path.join(cfg.run_dir, "metrics.json"),
                      {"ensemble": result, **{key: result[key] for key in (val_key, test_key) if key in result}})
    print(f"ensemble of {len(runs)}: val MAP@{k} {result[val_key]:.4f}"
          + (f", test MAP@{k} {result[test_key]:.4f}" if test_key in result else ""))
    return result
