"""One compiled model call for repeated calls on batches, under either Keras backend.

Calling a model eagerly once per batch is several times slower than a compiled call on small
models: TensorFlow gets ``tf.function`` (no XLA: on CPU it is slower here, see
``training.precision``), JAX gets ``jax.jit`` (JAX runs op by op otherwise). A jitted JAX function
would bake the weights it reads in as constants at its first trace; here they are arguments
(Keras' ``StatelessScope``, the way Keras' own JAX export binds them), so a function compiled once,
e.g. for validation at every epoch end, always sees the current weights.
"""

import keras
import numpy as np


def compiled(fn, model: keras.Model):
    """``fn`` (which calls ``model``) compiled for the current backend; inputs may be NumPy arrays
    or tf.data's tensors; retraces only on new shapes."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, reduce_retracing=True)
    if keras.backend.backend() != "jax":
        return fn
    import jax

    variables = model.variables

    def stateless(values, *args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return fn(*args)

    jitted = jax.jit(stateless)

    def call(*args):
        return jitted([variable.value for variable in variables], *keras.tree.map_structure(np.asarray, args))

    return call
