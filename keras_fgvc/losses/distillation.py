"""Knowledge distillation loss (teacher -> student on logits); ``needs_teacher`` in the registry protocol.

Source: Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", arXiv:1503.02531
(2015), Sec. 2: the student matches the teacher's softmax at temperature T, the soft term is
multiplied by T^2 so its gradients keep their scale when T changes, and it is mixed with the
ordinary cross-entropy on the true labels (T = 1), which the paper found works best with a
considerably lower weight:

    loss = alpha * CE(y, softmax(s)) + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(s / T))

(KL and the soft cross-entropy differ by the teacher's entropy, a constant for the student.)
Per sample, then the batch mean. Defaults: alpha = 0.1 (the hard term gets the low weight, as in
the paper and the keras.io "Knowledge Distillation" example), T = 4 (the paper reports
temperatures from 2 to 20 working; 4 is a common middle choice for classification students).

Why not ``keras.distillation.LogitsDistillation`` (Keras 3.15.1): its default
``loss="kl_divergence"`` resolves to the *function* ``keras.losses.kl_divergence``, which fails
its ``isinstance(loss_fn, KLDivergence)`` check, so it computes KL on the raw scaled logits, with
no softmax and no T^2. Given ``loss=keras.losses.KLDivergence()`` it matches Hinton's soft term
(tests pin this), but it clips probabilities to [1e-7, 1] (a student probability below 1e-7 gets
no gradient) and returns only a batch scalar (no per-sample values for ``reduction`` or
``sample_weight``). We use log-softmax and the ``keras.losses.Loss`` reductions.
"""

import keras
from keras import ops

from keras_fgvc.losses.registry import register_loss


@register_loss("distillation")
@keras.saving.register_keras_serializable(package="keras_fgvc")
class KnowledgeDistillationLoss(keras.losses.Loss):
    """Hinton et al. (2015) distillation: hard-label CE mixed with the T^2-scaled soft KL.

    Args:
        temperature: softmax temperature T > 0 for both teacher and student in the soft term.
        alpha: weight of the hard-label cross-entropy, in [0, 1]; the soft (teacher) term gets
            ``1 - alpha``. ``alpha=0`` is pure distillation (labels unused).
        **kwargs: ``reduction``, ``name``, ``dtype`` for ``keras.losses.Loss``.

    Call it as ``loss.call_with_teacher(y_true, student_logits, teacher_logits)``: ``y_true`` int
    labels ``(batch,)``, logits ``(batch, num_classes)`` for both models. No gradient reaches the
    teacher. A plain ``loss(y_true, y_pred)`` raises: the teacher is required.

    Example:
        >>> loss = KnowledgeDistillationLoss(temperature=4.0, alpha=0.1)
        >>> value = loss.call_with_teacher(labels, student(x), teacher(x, training=False))
    """

    needs_teacher = True  # registry protocol: the engine calls call_with_teacher

    def __init__(self, temperature=4.0, alpha=0.1, name="distillation", **kwargs):
        super().__init__(name=name, **kwargs)
        if float(temperature) <= 0.0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.temperature = float(temperature)
        self.alpha = float(alpha)

    def __call__(self, y_true, y_pred, sample_weight=None):
        raise TypeError(
            f"{type(self).__name__} needs the teacher's logits: call "
            "call_with_teacher(y_true, student_logits, teacher_logits)"
        )

    def call_with_teacher(self, y_true, y_pred, teacher_pred, sample_weight=None):
        """The distillation loss of student logits ``y_pred`` against ``teacher_pred`` and labels."""
        if y_pred.shape[-1] != teacher_pred.shape[-1]:
            raise ValueError(f"student and teacher logits differ in size: {y_pred.shape} vs {teacher_pred.shape}")
        # One tensor through keras.losses.Loss.__call__ keeps its dtype handling, reductions and
        # distribution scaling; ``call`` splits it again.
        both = ops.concatenate(
            [ops.cast(y_pred, self.dtype), ops.stop_gradient(ops.cast(teacher_pred, self.dtype))], axis=-1
        )
        return keras.losses.Loss.__call__(self, y_true, both, sample_weight)

    def call(self, y_true, y_pred):
        classes = y_pred.shape[-1] // 2
        student, teacher = y_pred[..., :classes], y_pred[..., classes:]
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        hard = keras.losses.sparse_categorical_crossentropy(labels, student, from_logits=True)
        teacher_log_probs = ops.log_softmax(teacher / self.temperature, axis=-1)
        student_log_probs = ops.log_softmax(student / self.temperature, axis=-1)
        kl = ops.sum(ops.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs), axis=-1)
        return self.alpha * hard + (1.0 - self.alpha) * self.temperature**2 * kl

    def get_config(self):
        config = super().get_config()
        config.update({"temperature": self.temperature, "alpha": self.alpha})
        return config
