"""The one training model every stage compiles: losses keyed by output, looked up by name.

``Trainer`` wraps a model's training view (``models.build.training_model``) and puts all custom
logic in ``compute_loss`` / ``compute_metrics`` (DESIGN.md convention 6), never in a hand-written
``train_step``, so ``fit``, tf.distribute, loss scaling for mixed precision and every callback keep
working unchanged:

    loss = sum over outputs k, terms t of  weight_t * loss_t(targets[k], outputs[k])  + regularisers

A term may need more than ``(y_true, y_pred)``: stateful losses (center loss) update their state
when ``training``; distillation reads the teacher's output of the same key, computed in ``call``
on the same (augmented) images in inference mode, so teacher and student see one view. Image-only
augmentation placed "in the model" runs here, in the training step, so the inference model that
is exported never carries it.

Why not ``keras.distillation.Distiller``: it takes one loss per student output and a single
``student_loss_weight``, and has no place for stateful losses; the squeeze recipe needs weighted
sums of several losses per output (CE + center + pre-logit norm + triplet) next to the KD term.
The KD term itself is Keras' ``LogitsDistillation`` formula (see ``losses/distillation.py``).
"""

from dataclasses import dataclass

import keras
from keras import ops
from keras.src.losses.loss import unscale_loss_for_distribution  # no public alias in Keras 3.15

TEACHER_PREFIX = "teacher:"


@dataclass
class LossTerm:
    """``weight * loss(targets[output], outputs[output])``, named ``<output>_<name>`` in the logs."""

    output: str
    name: str
    weight: float
    loss: object

    @property
    def log_name(self) -> str:
        return f"{self.output}_{self.name}"

    def compute(self, y, y_pred, training):
        from keras_fgvc.losses import apply_loss

        return apply_loss(self.loss, y[self.output], y_pred[self.output], training=bool(training),
                          teacher_pred=y_pred.get(TEACHER_PREFIX + self.output))


class Trainer(keras.Model):
    """Trains ``network`` (a training view) with ``terms``; holds augmentation, teacher and loss state.

    Args:
        network: the training view of a ``build_model`` model (inputs ``{"image"[, "label"]}``).
        terms: the stage's ``LossTerm`` list.
        augment: image-only augmentation layer run in the training step (None: none here).
        teacher: frozen model for distillation terms (None: no teacher); it is called on raw
            [0, 255] pixels and returns a dict of outputs or bare logits.
        metrics: ``{output: [keras.metrics.Metric]}`` updated on the targets of that output.
        **kwargs: forwarded to ``keras.Model``.

    Example:
        >>> trainer = Trainer(training_model(model), [LossTerm("logits", "sparse_ce", 1.0, loss)])
        >>> trainer.compile(optimizer="sgd")
        >>> trainer.fit(build(table, spec, training=True))  # doctest: +SKIP
    """

    def __init__(self, network, terms, augment=None, teacher=None, metrics=None, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.augment = augment
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.terms = list(terms)
        # Stateful losses' variables (center loss centres): tracked here so they live in the
        # strategy scope, appear in non_trainable_variables (the JAX trainer threads them through
        # the step) and in the trainer's weights.
        self.loss_state = [variable for term in self.terms for variable in getattr(term.loss, "variables", [])]
        self.term_trackers = [keras.metrics.Mean(name=term.log_name) for term in self.terms]
        pairs = [(output, metric) for output, items in (metrics or {}).items() for metric in items]
        self.metric_outputs = [output for output, _ in pairs]
        self.output_metrics = [metric for _, metric in pairs]  # tracked: they show in self.metrics

    def call(self, inputs, training=None):
        if self.augment is not None:
            inputs = {**inputs, "image": self.augment(inputs["image"], training=training)}
        outputs = dict(self.network(inputs, training=training))
        if self.teacher is not None:
            taught = self.teacher(inputs["image"], training=False)
            taught = taught if isinstance(taught, dict) else {"logits": taught}
            for key, value in taught.items():
                outputs[TEACHER_PREFIX + key] = ops.stop_gradient(ops.cast(value, "float32"))
        return outputs

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        total = ops.convert_to_tensor(0.0, "float32")
        # Weighted by batch size, as Keras weights its "loss" tracker, so the logged terms add up.
        batch = ops.cast(ops.shape(keras.tree.flatten(x)[0])[0], "float32") if x is not None else None
        for term, tracker in zip(self.terms, self.term_trackers):
            value = ops.cast(term.compute(y, y_pred, training), "float32")
            # Losses come scaled by 1 / replicas under tf.distribute (their sum is the gradient's
            # target); the logs show the per-sample value, as Keras logs its own "loss".
            tracker.update_state(unscale_loss_for_distribution(value), sample_weight=batch)
            total = total + term.weight * value
        if self.losses:  # kernel regularisers of the network (e.g. the 5K head's L2)
            total = total + ops.cast(ops.sum(ops.stack([ops.cast(v, "float32") for v in self.losses])), "float32")
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        for output, metric in zip(self.metric_outputs, self.output_metrics):
            metric.update_state(y[output], y_pred[output])
        return self.get_metrics_result()
