"""Loss registry: config names -> loss builders, plus the protocol the training engine follows.

A stage config names its losses as ``losses: {output_key: [{name, weight, kwargs}]}``. The engine:

1. validates every entry before writing anything: ``check_loss(name, kwargs)`` raises
   ``ConfigError`` for an unknown name or kwarg, a missing required kwarg, or (per loss) a bad
   nested value;
2. builds each one: ``build_loss(name, kwargs, context)`` where ``context`` is
   ``{"num_classes": int, "dim": int, "output": str, "class_counts": list | None}``: ``dim`` is
   the last dimension of the model output the loss is attached to, ``output`` its key,
   ``class_counts`` the training rows per class of the output's target (None when unknown). A
   builder receives only the context keys its signature names (center loss takes ``num_classes`` and ``dim``); the user never sets them.
   Build losses inside the distribution scope (``strategy.scope()``): stateful losses create
   their variables in ``__init__``;
3. evaluates each loss object in ``compute_loss`` with :func:`apply_loss`, which dispatches on
   the protocol below, and adds ``weight * value``.

Protocol of a loss object (every one is a ``keras.losses.Loss``, float32, default reduction
``"sum_over_batch_size"``, so a call returns a scalar already scaled by ``1 / num_replicas``):

- plain: ``loss(y_true, y_pred) -> scalar``.
- ``needs_teacher = True`` (class attribute; distillation): the engine calls
  ``loss.call_with_teacher(y_true, y_pred, teacher_pred) -> scalar`` with the frozen teacher's
  output for the same key (``teacher(x, training=False)[output]``).
- ``stateful = True`` (class attribute; center loss): ``loss.variables`` is a list of
  non-trainable ``keras.Variable`` created in ``__init__``; the engine calls
  ``loss.compute(y_true, y_pred, training) -> scalar`` (``training`` a Python bool), which
  updates the state only when ``training`` is true; plain ``loss(y_true, y_pred)`` never
  updates. The engine must also track ``loss.variables`` on the model (e.g. assign the list to an
  attribute of the ``keras.Model`` subclass) so they are checkpointed, mirrored under
  ``tf.distribute``, and, under JAX, carried as ``non_trainable_variables`` through the stateless
  train step (Keras collects their new values after ``compute_loss``).

Example:
    >>> check_loss("center", {"alpha": 0.5})
    >>> loss = build_loss("center", {"alpha": 0.5}, {"num_classes": 196, "dim": 512, "output": "embedding"})
    >>> value = apply_loss(loss, labels, embedding, training=True)
"""

import difflib
import inspect
from dataclasses import dataclass
from typing import Callable, Optional

# What the engine supplies; never accepted from the user.
CONTEXT_KEYS = ("num_classes", "dim", "output", "class_counts")
# Set by the engine or the registry (hard mining builds its base with reduction="none").
_ENGINE_KEYS = ("reduction", "name", "dtype")


@dataclass(frozen=True)
class LossEntry:
    name: str
    builder: Callable
    context_keys: tuple  # context keys the builder's signature names
    kwargs: tuple  # user kwargs the builder accepts
    required: tuple  # user kwargs without a default
    validate: Optional[Callable]  # validate(kwargs) -> None, raises ConfigError; for nested values


LOSSES: dict[str, LossEntry] = {}


def register_loss(name: str, validate: Optional[Callable] = None):
    """Decorator: ``@register_loss("center")`` above a loss class or a builder function.

    The builder's named parameters are its interface: those in ``CONTEXT_KEYS`` come from the
    engine, ``reduction``/``name``/``dtype`` are not user kwargs, the rest are user kwargs
    (required when they have no default). ``validate(kwargs)`` is an optional extra check that
    ``check_loss`` runs after the name checks.

    Example:
        >>> @register_loss("my_loss")
        ... class MyLoss(keras.losses.Loss):
        ...     def __init__(self, scale=1.0, **kwargs): ...
    """

    def decorate(builder):
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is registered twice")
        params = inspect.signature(builder).parameters.values()
        named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        takes_var_kwargs = any(p.kind == p.VAR_KEYWORD for p in params)
        if not takes_var_kwargs and "reduction" not in [p.name for p in named]:
            raise ValueError(f"loss builder {name!r} must accept `reduction` (hard mining sets it)")
        user = [p for p in named if p.name not in CONTEXT_KEYS + _ENGINE_KEYS]
        LOSSES[name] = LossEntry(
            name=name,
            builder=builder,
            context_keys=tuple(p.name for p in named if p.name in CONTEXT_KEYS),
            kwargs=tuple(p.name for p in user),
            required=tuple(p.name for p in user if p.default is p.empty),
            validate=validate,
        )
        return builder

    return decorate


def loss_names() -> list:
    """Sorted names of every registered loss."""
    return sorted(LOSSES)


def _config_error(message):
    # Imported here: keras_fgvc.config may itself look up loss names.
    from keras_fgvc.config.validate import ConfigError

    return ConfigError(message)


def _did_you_mean(word, choices):
    hint = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" Did you mean '{hint[0]}'?" if hint else ""


def get_loss_entry(name: str) -> LossEntry:
    """The registry entry for ``name``; ConfigError naming the known losses otherwise."""
    if name not in LOSSES:
        raise _config_error(
            f"unknown loss '{name}'; known losses: {', '.join(loss_names())}.{_did_you_mean(name, LOSSES)}"
        )
    return LOSSES[name]


def check_loss(name: str, kwargs: Optional[dict] = None) -> None:
    """Raise ConfigError unless ``name`` is registered and ``kwargs`` are ones it accepts.

    Builds nothing, so a config can be checked before any file is written.

    Example:
        >>> check_loss("batch_hard_triplet", {"margn": 0.3})
        ConfigError: loss 'batch_hard_triplet' got unknown kwarg 'margn'; accepted: margin, soft_margin,
        squared. Did you mean 'margin'?
    """
    entry = get_loss_entry(name)
    kwargs = dict(kwargs or {})
    accepted = ", ".join(sorted(entry.kwargs)) or "none"
    for key in kwargs:
        if key in CONTEXT_KEYS:
            raise _config_error(
                f"loss '{name}' got kwarg '{key}', which the engine sets from the model; accepted: {accepted}."
            )
        if key not in entry.kwargs:
            raise _config_error(
                f"loss '{name}' got unknown kwarg '{key}'; accepted: {accepted}.{_did_you_mean(key, entry.kwargs)}"
            )
    missing = [key for key in entry.required if key not in kwargs]
    if missing:
        raise _config_error(f"loss '{name}' needs kwarg(s) {', '.join(missing)}; accepted: {accepted}.")
    if entry.validate is not None:
        entry.validate(kwargs)


def build_loss(name: str, kwargs: Optional[dict] = None, context: Optional[dict] = None, *, reduction=None):
    """Check, then build the loss object for a config entry.

    Args:
        name: a registered loss name (see :func:`loss_names`).
        kwargs: the user's kwargs from the config.
        context: ``{"num_classes", "dim", "output", "class_counts"}`` from the engine; a builder gets only the
            keys its signature names.
        reduction: override the loss's reduction (hard mining builds its base with ``"none"``);
            ``None`` keeps the loss's default ``"sum_over_batch_size"``.

    Returns:
        a ``keras.losses.Loss`` following the protocol in this module's docstring.

    Example:
        >>> build_loss("label_smoothing_ce", {"epsilon": 0.1}, {"num_classes": 196, "dim": 196})
    """
    check_loss(name, kwargs)
    entry = LOSSES[name]
    context = dict(context or {})
    args = dict(kwargs or {})
    for key in entry.context_keys:
        if key in context:
            args[key] = context[key]
        elif inspect.signature(entry.builder).parameters[key].default is inspect.Parameter.empty:
            raise ValueError(f"loss '{name}' needs context key '{key}' from the engine; got {sorted(context)}")
    if reduction is not None:
        args["reduction"] = reduction
    return entry.builder(**args)


def apply_loss(loss, y_true, y_pred, *, training=False, teacher_pred=None):
    """Evaluate any registered loss object by its protocol (see the module docstring).

    Args:
        loss: an object from :func:`build_loss`.
        y_true: targets for the loss's output key.
        y_pred: the model's output for that key.
        training: Python bool, whether this is a training step (stateful losses update only then).
        teacher_pred: the teacher's output for the same key; required when ``loss.needs_teacher``.

    Returns:
        a float32 scalar.

    Example:
        >>> apply_loss(build_loss("sparse_ce"), labels, logits)
    """
    if getattr(loss, "needs_teacher", False):
        if teacher_pred is None:
            raise ValueError(f"loss {loss.name!r} needs the teacher's prediction (teacher_pred)")
        return loss.call_with_teacher(y_true, y_pred, teacher_pred)
    if getattr(loss, "stateful", False):
        return loss.compute(y_true, y_pred, bool(training))
    return loss(y_true, y_pred)
