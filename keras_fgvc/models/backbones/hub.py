"""TF-Hub SavedModels as fine-tunable Keras 3 layers.

``hub.KerasLayer`` is a tf-keras (Keras 2) layer and does not work inside Keras 3 models
(tensorflow/hub#903). ``keras.layers.TFSMLayer`` does work, but it wraps each restored variable
in a *new* Keras variable initialised from it: the optimizer then updates the copies while the
restored graph keeps reading the originals, so fine-tuning silently changes nothing.

``HubBackbone`` instead hands Keras the restored ``tf.Variable`` objects themselves (see
``_BorrowedVariable``), so the variables the optimizer updates are the ones the graph reads.
It serialises by handle: loading a saved model resolves the handle again, then restores the
fine-tuned values into the borrowed variables.
"""

import keras
import tensorflow as tf

from keras_fgvc.models.registry import register_backbone


def resolve(handle: str) -> str:
    """A local directory for ``handle``: a path as is, else ``tensorflow_hub.resolve`` (download + cache)."""
    if tf.io.gfile.isdir(handle):
        return handle
    import tensorflow_hub  # lazy: only needed for remote handles

    return tensorflow_hub.resolve(handle)


class _BorrowedVariable(keras.Variable):
    """A Keras variable whose storage *is* an existing ``tf.Variable`` (no copy)."""

    def __init__(self, variable: tf.Variable, trainable: bool):
        self._borrowed = variable
        name = variable.name.split(":")[0].replace("/", "_")
        super().__init__(
            initializer=lambda shape, dtype: None,  # never called: _initialize borrows instead
            shape=tuple(variable.shape),
            dtype=variable.dtype.name,
            trainable=trainable,
            name=name,
        )

    def _initialize(self, value):
        self._value = self._borrowed


@keras.saving.register_keras_serializable(package="keras_fgvc")
class HubBackbone(keras.layers.Layer):
    """A TF2 reusable SavedModel (TF-Hub handle or local directory) as a Keras 3 layer.

    The module is called as ``module(images, training=...)`` on float32 images (in [0, 1] for
    TF-Hub image modules; ``model.input_scale`` sets another range); with ``trainable=True`` its
    trainable variables train with the rest of the model and its batch-norm statistics update in
    training mode.

    Args:
        handle: TF-Hub handle/URL or a local SavedModel directory.
        trainable: fine-tune the module's variables.
        output_key: for modules returning a dict, the entry to use.
        inference_mode: always call the module with ``training=False``, also while training: its
            BatchNorm layers normalise with (and keep) their moving statistics and its dropout is
            off, while its trainable variables still get gradients. A SavedModel offers no
            per-layer switch, so this is how the fine-tuning recipe's ``batchnorm=frozen``
            reaches a hub module (training/finetune.py); its BatchNorm scales and offsets train.

    Example:
        >>> backbone = HubBackbone("https://tfhub.dev/google/imagenet/efficientnet_v2_imagenet21k_ft1k_b3/feature_vector/2")  # doctest: +SKIP
        >>> features = backbone(images)  # [B, 1536]  # doctest: +SKIP
    """

    def __init__(self, handle, trainable=True, output_key=None, inference_mode=False, **kwargs):
        super().__init__(**kwargs)
        self.handle = handle
        self.output_key = output_key
        self.inference_mode = inference_mode
        self._module = tf.saved_model.load(resolve(handle))
        trainable_ids = {id(v) for v in getattr(self._module, "trainable_variables", [])}
        self.hub_variables = [
            _BorrowedVariable(v, trainable=id(v) in trainable_ids) for v in getattr(self._module, "variables", [])
        ]
        self.built = True
        # Set after the variables exist: Keras' setter freezes/unfreezes the module's trainable
        # variables (and only those; BN statistics stay non-trainable either way).
        self.trainable = trainable

    def call(self, inputs, training=None):
        # Hub modules are float32 graphs; under mixed precision only the outputs change dtype.
        training = bool(training) and self.trainable and not self.inference_mode
        outputs = self._module(tf.cast(inputs, tf.float32), training=training)
        if isinstance(outputs, dict):
            if self.output_key is None:
                raise ValueError(f"{self.handle} returns a dict {sorted(outputs)}: set output_key")
            outputs = outputs[self.output_key]
        return tf.cast(outputs, self.compute_dtype)

    def compute_output_spec(self, inputs, training=None):
        # Trace the restored function once on the symbolic shape to learn its output shape.
        traced = tf.function(lambda x: self.call(x, training=False)).get_concrete_function(
            tf.TensorSpec(inputs.shape, tf.float32)
        )
        return keras.KerasTensor(tuple(traced.structured_outputs.shape), dtype=self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "handle": self.handle, "output_key": self.output_key,
                "inference_mode": self.inference_mode}


@register_backbone("hub", input_scale="unit")
def build_hub_backbone(input_shape, hub_handle=None, output_key=None):
    """Registry builder: ``model.backbone=hub model.hub_handle=<handle or dir>``.

    Args:
        input_shape: ``(height, width, channels)`` of the module's images.
        hub_handle: TF-Hub handle/URL or local SavedModel directory (required; a default of None
            so that a missing handle is a one-line config error, not a TypeError).
        output_key: for modules returning a dict, the entry to use.
    """
    if not hub_handle:
        from keras_fgvc.errors import UserError

        raise UserError("model.backbone=hub needs model.hub_handle=<TF-Hub handle or local SavedModel dir>")
    inputs = keras.Input(tuple(input_shape), name="pixels")
    return keras.Model(inputs, HubBackbone(hub_handle, output_key=output_key)(inputs), name="hub_backbone")


class _ReusableSavedModel(tf.Module):
    """What a TF2 reusable SavedModel exposes: ``__call__(inputs, training)`` + variable lists."""

    def __init__(self, model):
        super().__init__(name=None)
        self._model = model
        self._all = [v.value for v in model.variables]
        self._trainable = [v.value for v in model.trainable_variables]

    @tf.function
    def __call__(self, inputs, training=False):
        return self._model(inputs, training=training)


def save_as_hub_module(model: keras.Model, path: str, input_shape):
    """Export a Keras model (images in [0, 1] -> features) in the TF2 reusable SavedModel format
    that ``HubBackbone`` and ``tensorflow_hub`` load: ``obj(images, training)``, ``obj.variables``,
    ``obj.trainable_variables``, ``obj.regularization_losses``.

    Example:
        >>> save_as_hub_module(feature_model, "/tmp/my_hub_module", (224, 224, 3))  # doctest: +SKIP
    """
    module = _ReusableSavedModel(model)
    spec = tf.TensorSpec([None, *input_shape], tf.float32)
    for training in (False, True):
        module.__call__.get_concrete_function(spec, training=training)
    saved = tf.train.Checkpoint()
    saved.__call__ = module.__call__
    saved.variables = module._all
    saved.trainable_variables = module._trainable
    saved.regularization_losses = []
    saved.model = module
    tf.saved_model.save(saved, path)
    return path
