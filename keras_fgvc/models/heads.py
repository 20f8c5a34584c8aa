"""Classification heads on the embedding. Logits are float32 under any precision policy."""

import keras


def softmax_head(embedding, num_classes, dropout=0.0, l2=0.0, name="logits"):
    """Dropout -> Dense(num_classes) logits (softmax lives in the loss / export, from_logits=True).

    This is the 5K head of SYSTEMS.md section 5 ("Dropout -> Dense softmax with L2"); emitting
    logits and folding the softmax into the loss is the numerically stable form of the same model.
    """
    x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(embedding) if dropout else embedding
    regularizer = keras.regularizers.L2(l2) if l2 else None
    return keras.layers.Dense(num_classes, kernel_regularizer=regularizer, dtype="float32", name=name)(x)
