"""MultiWorkerMirroredStrategy (MWMS) with the training engine: two worker processes on 127.0.0.1.

Keras 3 ``fit`` fails under MWMS without ``training/multi_worker.py`` (keras#20585). Here two
workers (TF_CONFIG, gRPC collectives on CPU) train stage "s" of a tiny net through
``train_stage`` with ``runtime.distribute=multi_worker``: data.batch_size 4 per replica, so a
global batch of 8. The first round is SIGKILLed by the test once both workers wait at the engine's
test hook (HOLD_ENV) in the middle of epoch 1, after epoch 0 is committed; the second round resumes from each worker's backup
(``ResumableBackup``, Keras' BackupAndRestore) and finishes epoch 1. Each epoch must equal the
same epoch of a single process without a strategy at batch 8 (no BatchNorm, no dropout, SGD,
constant LR), and both workers must log the same numbers.
"""

import json
import os
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from keras_fgvc.training import multi_worker
from keras_fgvc.training.callbacks import BACKUP_DIR, HISTORY, HOLD_ENV, KILL_ENV, LAST
from keras_fgvc.training.stages import FINISHED
from tests.training.multi_worker_script import BATCH, make_cfg, train
from tests.training.test_resume import h5_arrays, write_table

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "tests", "training", "multi_worker_script.py")
WORKERS = 2
ROUND_TIMEOUT = 180  # seconds for one round of workers (a few seconds of training; slow imports on 2 busy cores)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def launch(processes: list, args: list[str], log_dir: str, name: str, extra_env=None,
           only: int | None = None) -> list[subprocess.Popen]:
    """Start ``WORKERS`` processes of the worker script (one cluster on fresh local ports), appended
    to ``processes`` as they start (so that a failure halfway leaves none unknown); returns them.
    ``extra_env`` goes to every worker, or to worker ``only``."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(WORKERS)]
    started = []
    for index in range(WORKERS):
        env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}  # gRPC on 127.0.0.1
        env.pop(KILL_ENV, None)
        env.update({
            "TF_CONFIG": json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}),
            "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO,
            **(extra_env or {} if only in (None, index) else {}),
        })
        worker_args = [arg.format(index=index) for arg in args]
        with open(os.path.join(log_dir, f"{name}-{index}.log"), "w") as log:
            started.append(subprocess.Popen([sys.executable, SCRIPT, *worker_args], cwd=REPO, env=env,
                                            stdout=log, stderr=subprocess.STDOUT))
            processes.append(started[-1])
    return started


def wait_all(processes: list[subprocess.Popen], deadline: float) -> list[int | None]:
    """Return codes (None: still running at the deadline)."""
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            codes.append(None)
    return codes


def kill_when_held(processes: list[subprocess.Popen], hold_dir: str, deadline: float):
    """SIGKILL ``processes`` once each has announced (``HOLD_ENV``) that it waits at the kill point;
    the last worker first, then worker 0, which hosts the coordination service: a worker still
    alive when its leader dies may exit with an error of its own before its SIGKILL lands."""
    while time.monotonic() < deadline and any(p.poll() is None for p in processes):
        if all(os.path.exists(os.path.join(hold_dir, str(p.pid))) for p in processes):
            for process in reversed(processes):
                process.kill()
            break
        time.sleep(0.2)


def kill_all(processes: list[subprocess.Popen]):
    # SIGKILL: a worker blocked in a collective or in the coordination service's shutdown barrier
    # (its peer died) does not stop on SIGTERM.
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def read_log(log_dir: str, name: str, index: int) -> str:
    with open(os.path.join(log_dir, f"{name}-{index}.log")) as f:
        return f.read()


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def worker_root(root: str, index: int) -> str:
    return os.path.join(root, f"worker{index}")


def stage_dir(root: str, index: int) -> str:
    """Worker ``index``'s folder of stage "s" (each worker has its own runs_root)."""
    return os.path.join(make_cfg(worker_root(root, index), "multi_worker").run_dir, "s")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Round 1 (killed in epoch 1) next to a cluster without the shim; round 2 (resume); references."""
    root = str(tmp_path_factory.mktemp("multi_worker"))
    write_table(root).to_csv(os.path.join(root, "table.csv"), index=False)
    engine = ["engine", root, os.path.join(root, "worker{index}"), "--epochs", "2"]
    processes = []
    try:
        hold_dir = os.path.join(root, "held")
        os.makedirs(hold_dir)
        launch(processes, ["no_shim"], root, "no_shim")
        killed = launch(processes, engine, root, "killed", {KILL_ENV: "1", HOLD_ENV: hold_dir})
        deadline = time.monotonic() + ROUND_TIMEOUT
        kill_when_held(killed, hold_dir, deadline)
        codes = wait_all(processes, deadline)
        no_shim_codes, killed_codes = codes[:WORKERS], codes[WORKERS:]
        after_kill = [{
            "history": pd.read_csv(os.path.join(stage_dir(root, i), HISTORY)),
            "weights": h5_arrays(os.path.join(stage_dir(root, i), LAST)),
        } if killed_codes[i] == -9 else None for i in range(WORKERS)]
        kill_all(processes)
        logs = [read_log(root, "killed", i)[-2000:] for i in range(WORKERS)]
        assert killed_codes == [-9] * WORKERS, (killed_codes, *logs)
        processes = []
        launch(processes, [*engine, "--resume"], root, "resumed")
        # The single-process references (no strategy, data.batch_size = the global batch) train here
        # while the workers start.
        references = {epochs: train(root, os.path.join(root, f"reference{epochs}"), "none", epochs,
                                    batch_size=BATCH * WORKERS)[1] for epochs in (1, 2)}
        resumed_codes = wait_all(processes, time.monotonic() + ROUND_TIMEOUT)
    finally:
        kill_all(processes)
    return SimpleNamespace(
        root=root, no_shim_codes=no_shim_codes, killed_codes=killed_codes, after_kill=after_kill,
        resumed_codes=resumed_codes, references=references,
        reports=[read_json(os.path.join(worker_root(root, i), "report.json")) if resumed_codes[i] == 0 else None
                 for i in range(WORKERS)],
    )


def _reference_weights(run) -> dict:
    return h5_arrays(os.path.join(run.folder, LAST))


def _assert_close_weights(got: dict, expected: dict, atol=1e-5):
    assert sorted(got) == sorted(expected) and got
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=0, atol=atol, err_msg=key)


# --- the shim, in this process ---------------------------------------------------------------------


@pytest.fixture
def unpatched_keras(monkeypatch):
    """Keras' own trainer functions for the test; whatever was there is restored afterwards."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    symbolic_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    reduce = tf_trainer.reduce_per_replica
    monkeypatch.setattr(tf_trainer.TensorFlowTrainer, "_maybe_symbolic_build",
                        getattr(symbolic_build, "__wrapped__", symbolic_build))
    monkeypatch.setattr(tf_trainer, "reduce_per_replica", getattr(reduce, "__wrapped__", reduce))
    return tf_trainer


def test_make_strategy_applies_the_shim_for_multi_worker_only(unpatched_keras, monkeypatch):
    from keras_fgvc.training.precision import make_strategy

    # A stand-in for the strategy: a real one in this process would configure collective ops here.
    created = []
    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy", lambda: created.append(1) or "mwms")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert not multi_worker.is_patched()
    make_strategy("none", "cpu")
    make_strategy("auto", "cpu")
    assert not multi_worker.is_patched() and not created
    assert make_strategy("multi_worker", "cpu") == "mwms"
    assert multi_worker.is_patched()
    patched = (unpatched_keras.TensorFlowTrainer._maybe_symbolic_build, unpatched_keras.reduce_per_replica)
    assert multi_worker.patch_keras_for_multi_worker()  # idempotent: the same functions, not wrapped twice
    assert (unpatched_keras.TensorFlowTrainer._maybe_symbolic_build, unpatched_keras.reduce_per_replica) == patched
    assert patched[0].__wrapped__.__module__ == patched[1].__wrapped__.__module__ == unpatched_keras.__name__


def test_auto_picks_multi_worker_from_tf_config(unpatched_keras, monkeypatch):
    from keras_fgvc.training.precision import make_strategy

    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy", lambda: "mwms")
    cluster_spec = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster_spec))
    assert make_strategy("auto", "cpu") == "mwms" and multi_worker.is_patched()


def test_the_shim_is_limited_to_the_affected_keras_versions(unpatched_keras, monkeypatch):
    assert multi_worker.keras_needs_shim("3.15.1") and multi_worker.keras_needs_shim("3.14.0")
    assert not multi_worker.keras_needs_shim("3.16.0") and not multi_worker.keras_needs_shim("2.15.0")
    monkeypatch.setattr(keras, "__version__", "3.16.0")
    assert multi_worker.patch_keras_for_multi_worker() is False
    assert not multi_worker.is_patched()


def test_other_strategies_still_run_keras_code(unpatched_keras):
    """Patched, a fit without MWMS (here the default strategy) trains as before."""
    assert multi_worker.patch_keras_for_multi_worker()
    x = np.arange(16, dtype="float32").reshape(8, 2) / 16
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():  # a strategy: Keras' symbolic build runs
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile("sgd", "mse")
    history = model.fit(tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(4), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# --- two workers ---------------------------------------------------------------------------------


def test_without_the_shim_keras_fit_fails_under_multi_worker(cluster):
    """The bug the shim works around (keras#20585). When this fails, Keras fixed it: delete the shim."""
    assert cluster.no_shim_codes == [0, 0]
    for index in range(WORKERS):
        log = read_log(cluster.root, "no_shim", index)
        assert "FAILED ValueError: Attempt to convert a value (PerReplica" in log, log[-2000:]


def test_both_workers_train_with_two_replicas_and_exit_cleanly(cluster):
    assert cluster.killed_codes == [-9, -9]  # the test hook, in epoch 1
    assert cluster.resumed_codes == [0, 0], read_log(cluster.root, "resumed", 0)[-3000:]
    for index, report in enumerate(cluster.reports):
        assert report["strategy"] == "CollectiveAllReduceStrategy" and report["replicas"] == WORKERS
        assert report["patched"] is True
        assert report["info"]["global_batch"] == BATCH * WORKERS
        assert "resuming" in read_log(cluster.root, "resumed", index)


def test_both_workers_log_identical_metrics(cluster):
    histories = [pd.read_csv(os.path.join(stage_dir(cluster.root, i), HISTORY)) for i in range(WORKERS)]
    assert histories[0]["epoch"].tolist() == [0, 1]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(histories[0].columns)
    pd.testing.assert_frame_equal(histories[0], histories[1], check_exact=True)
    first_epoch = [state["history"] for state in cluster.after_kill]
    pd.testing.assert_frame_equal(first_epoch[0], first_epoch[1], check_exact=True)
    assert cluster.reports[0]["history"] == cluster.reports[1]["history"]


def test_an_epoch_on_two_workers_equals_the_epoch_of_one_process(cluster):
    reference = cluster.references[1]
    assert reference.info["global_batch"] == BATCH * WORKERS
    for state in cluster.after_kill:
        _assert_close_weights(state["weights"], _reference_weights(reference))
        for column in ("loss", "accuracy", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(state["history"][column].tolist(), reference.history[column],
                                       rtol=0, atol=1e-5, err_msg=column)


def test_the_resumed_workers_equal_an_uninterrupted_single_process(cluster):
    """BackupAndRestore (the engine's ResumableBackup) under MWMS: epoch 1 after the restart."""
    reference = cluster.references[2]
    for index, report in enumerate(cluster.reports):
        folder = stage_dir(cluster.root, index)
        _assert_close_weights(h5_arrays(os.path.join(folder, LAST)), _reference_weights(reference))
        assert report["info"]["resumed_from_epoch"] == 1 and report["info"]["epochs_run"] == 2
        history = pd.read_csv(os.path.join(folder, HISTORY))
        for column in ("loss", "accuracy", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(history[column].tolist(), reference.history[column], rtol=0, atol=1e-5,
                                       err_msg=column)
        assert os.path.isfile(os.path.join(folder, FINISHED)) and not os.path.exists(os.path.join(folder, BACKUP_DIR))


def test_per_term_loss_logs_are_not_scaled_by_the_replica_count(cluster):
    history = cluster.reports[0]["history"]
    np.testing.assert_allclose(history["logits_sparse_ce"], history["loss"], rtol=1e-6)


@pytest.mark.parametrize("victim", [1, 0])  # a worker, then the chief (it hosts the coordination service)
def test_a_killed_worker_makes_the_other_exit_with_one_line_within_seconds(tmp_path, victim):
    root = str(tmp_path)
    write_table(root).to_csv(os.path.join(root, "table.csv"), index=False)
    processes = []
    try:  # the victim SIGKILLs itself after the first batch of epoch 1; the survivor trains on
        launch(processes, ["engine", root, os.path.join(root, "worker{index}"), "--epochs", "3"], root, "lost",
               {KILL_ENV: "1"}, only=victim)
        survivor = processes[1 - victim]
        assert processes[victim].wait(timeout=ROUND_TIMEOUT) == -9
        died = time.monotonic()
        code = survivor.wait(timeout=120)
        waited = time.monotonic() - died
    finally:
        kill_all(processes)
    log = read_log(root, "lost", 1 - victim)
    errors = [line for line in log.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1, log[-3000:]
    assert errors[0].startswith("error: stage 's': a worker of the multi-worker job stopped (")
    assert errors[0].endswith("); start every worker again with resume=true to continue from the last completed epoch")
    # gRPC names the lost peer as the timing falls: reset, refused, or closed (seen in CI with the chief
    # killed); heartbeats when a host vanishes without closing its sockets.
    reasons = ("Connection reset", "Connection refused", "Socket closed", "heartbeats")
    assert any(reason in errors[0] for reason in reasons), errors[0]
    assert waited < 60, waited  # measured 1-2 s (the connection resets); TensorFlow's heartbeat timeout is 10 s
    print(f"victim {victim}: the survivor exited {waited:.1f} s after it: {errors[0]}")
