"""Compatibility shim: ``tf.distribute.MultiWorkerMirroredStrategy`` under Keras 3 ``fit``.

Keras 3 (checked up to 3.15.1, TensorFlow 2.21) cannot ``fit``/``evaluate``/``predict`` under
MultiWorkerMirroredStrategy (MWMS) in multi-worker mode: keras-team/keras#20585,
tensorflow/tensorflow#72388. Two spots of ``keras/src/backend/tensorflow/trainer.py`` fail:

1. ``TensorFlowTrainer._maybe_symbolic_build`` builds the model from one distributed batch by
   ``strategy.reduce("MEAN", batch, axis=None)``; under MWMS that reduce is handed a ``PerReplica``
   it cannot convert ("Attempt to convert a value (PerReplica:...) ... to a Tensor"). Building
   only needs shapes and dtypes, so the patch builds from replica 0's part of the distributed
   dataset's ``element_spec`` and reads no data; only when that spec has an unknown rank does it
   read one batch and take replica 0's local value (``strategy.experimental_local_results``).
   Not reading matters: reading a batch opens an iterator of the training stream, and a seeded
   ``shuffle(reshuffle_each_iteration=True)`` gives every new iterator the next permutation, so
   training would start at the second permutation and one MWMS epoch would not equal the same
   epoch in a single process (measured in tests/training/test_multi_worker.py).
2. The multi-worker branch of ``reduce_per_replica`` (the logs of every train/test step) does
   ``strategy.reduce("MEAN", v, axis=0)`` for every value, and the logs are scalars ("Invalid
   reduction dimension 0 for input with 0 dimensions"). The patch reduces scalars with
   ``axis=None`` (the mean over replicas; metric values are already synchronised, so every worker
   logs the same numbers) and leaves every other value and reduction to Keras.

Both patched functions defer to the originals unless the strategy is MWMS in multi-worker mode,
so other strategies in the same process see Keras' own code. ``precision.make_strategy``
applies the shim when it creates an MWMS, and only then.

Delete this module (and its call in ``precision.make_strategy``) once Keras fixes #20585. The
tests say when: ``test_without_the_shim_keras_fit_fails_under_multi_worker`` (plain Keras ``fit``
on two workers) fails as soon as the installed Keras trains under MWMS by itself. On a Keras newer
than ``LAST_AFFECTED_KERAS`` the shim patches nothing (it was not checked against that code), so
the shim's tests fail there until that version is checked and the bound raised, or the shim goes.
"""

import functools

import keras
import tensorflow as tf

# The newest Keras release checked to still have the bug; newer ones are left unpatched.
LAST_AFFECTED_KERAS = (3, 15, 1)
_PATCHED_FLAG = "_keras_fgvc_multi_worker_shim"


def _version(text: str) -> tuple:
    numbers = []
    for part in text.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        numbers.append(int(digits) if digits else 0)
    return tuple(numbers)


def keras_needs_shim(version: str | None = None) -> bool:
    """True for the Keras versions that have keras#20585 (3.x up to ``LAST_AFFECTED_KERAS``)."""
    version = _version(version or keras.__version__)
    return (3, 0, 0) <= version <= LAST_AFFECTED_KERAS


def is_patched() -> bool:
    """True when both trainer functions are this module's patched versions."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    return all(getattr(f, _PATCHED_FLAG, False)
               for f in (tf_trainer.TensorFlowTrainer._maybe_symbolic_build, tf_trainer.reduce_per_replica))


def _in_multi_worker_mode(strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


def _first_local_value(strategy, value):
    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value


def _first_replica_spec(spec):
    """Replica 0's TypeSpec of a distributed dataset's element (a ``PerReplicaSpec`` holds one per local replica)."""
    value_specs = getattr(spec, "_value_specs", None)  # tf.distribute's PerReplicaSpec
    return value_specs[0] if value_specs else spec


def _known_rank(spec) -> bool:
    return spec is None or getattr(spec, "shape", None) is None or spec.shape.rank is not None


def _patch_symbolic_build(original):
    @functools.wraps(original)
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or strategy is None or not _in_multi_worker_mode(strategy):
            return original(self, iterator=iterator, data_batch=data_batch)
        # Keras: `data_batch = strategy.reduce("MEAN", next(it), axis=None)`, which fails under MWMS.
        data_batch = keras.tree.map_structure(_first_replica_spec, iterator._get_iterator().element_spec)
        if not all(_known_rank(spec) for spec in keras.tree.flatten(data_batch)):
            for _, _, it in iterator:
                data_batch = keras.tree.map_structure(lambda v: _first_local_value(strategy, v), next(it))
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    setattr(_maybe_symbolic_build, _PATCHED_FLAG, True)
    return _maybe_symbolic_build


def _is_scalar(strategy, value) -> bool:
    local = _first_local_value(strategy, value)
    return isinstance(local, (tf.Tensor, tf.Variable)) and local.shape.rank == 0


def _patch_reduce_per_replica(original):
    @functools.wraps(original)
    def reduce_per_replica(values, strategy, reduction):
        # "auto" is "mean" for every strategy but TPUStrategy (not MWMS).
        if reduction not in ("auto", "mean") or not _in_multi_worker_mode(strategy):
            return original(values, strategy, reduction)

        def reduce(value):
            if _is_scalar(strategy, value):
                # Keras: `strategy.reduce("MEAN", v, axis=0)`, which fails on a scalar.
                return strategy.reduce("MEAN", value, axis=None)
            return original(value, strategy, "mean")

        return keras.tree.map_structure(reduce, values)

    setattr(reduce_per_replica, _PATCHED_FLAG, True)
    return reduce_per_replica


def patch_keras_for_multi_worker() -> bool:
    """Patch Keras' TensorFlow trainer for MultiWorkerMirroredStrategy (see the module docstring).

    Idempotent; does nothing on Keras versions without the bug (``keras_needs_shim``).

    Returns:
        True when the patches are in place after the call.

    Example:
        >>> strategy = tf.distribute.MultiWorkerMirroredStrategy()  # doctest: +SKIP
        >>> patch_keras_for_multi_worker()  # doctest: +SKIP
        True
    """
    if not keras_needs_shim() or keras.backend.backend() != "tensorflow":
        return False
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if not is_patched():
        trainer_class = tf_trainer.TensorFlowTrainer
        if not getattr(trainer_class._maybe_symbolic_build, _PATCHED_FLAG, False):
            trainer_class._maybe_symbolic_build = _patch_symbolic_build(trainer_class._maybe_symbolic_build)
        if not getattr(tf_trainer.reduce_per_replica, _PATCHED_FLAG, False):
            # The step functions look the name up in the module when they run, so this reaches them.
            tf_trainer.reduce_per_replica = _patch_reduce_per_replica(tf_trainer.reduce_per_replica)
    return True


def peer_failure(error: Exception, strategy, stage: str):
    """The one-line UserError for a worker that stopped mid-training, else None.

    When a worker dies (SIGKILL, preemption, OOM), the others do not hang: the collective's gRPC
    connection is reset (1-2 s after the kill on 127.0.0.1, worker or chief killed), or, when a
    host vanishes without closing its sockets, TensorFlow's coordination service misses its
    heartbeats (10 s timeout; 11 s measured); the collectives abort and the step raises
    ``UnavailableError``. That is an event of the cluster, not a bug, so every surviving worker
    stops with one line that says what happened and how to continue.
    """
    if not (isinstance(error, tf.errors.UnavailableError) and _in_multi_worker_mode(strategy)):
        return None
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # "Collective ops is aborted by: recvmsg:Connection reset by peer" (or "Socket closed"), or "...: The following tasks
    # are unhealthy (stopped sending heartbeats):" followed by the task's name on the next line
    at = next((i for i, line in enumerate(lines) if "aborted by:" in line), None)
    if at is None:
        detail = lines[-1] if lines else type(error).__name__
    else:
        detail = lines[at].split("aborted by:", 1)[1].strip()
        if detail.endswith(":") and at + 1 < len(lines):
            detail = f"{detail} {lines[at + 1]}"
    from keras_fgvc.errors import UserError

    return UserError(f"stage '{stage}': a worker of the multi-worker job stopped ({detail[:300]}); start every "
                     "worker again with resume=true to continue from the last completed epoch")
