"""Validation MAP@k every epoch: occluded validation queries against the training gallery.

Hotel-ID picks its best checkpoint by the metric it is scored on (SYSTEMS.md section 1): each
epoch the training images are embedded as the gallery with the test preprocessing (no
augmentation) and the validation images, each with its fixed red rectangle, are ranked against it
(top-k unique hotels by cosine similarity, Kaggle's MAP@5). The value goes into the epoch's logs,
so this callback must run before the checkpoint, CSV and W&B callbacks (``train_stage``'s
``epoch_metrics`` puts it first).
"""

import keras
import numpy as np

from keras_fgvc.evaluation.embed import embed_batches, embedding_function
from keras_fgvc.evaluation.metrics import map_at_k
from keras_fgvc.evaluation.retrieval import rank_classes


class RetrievalValidation(keras.callbacks.Callback):
    """Adds ``logs[name]`` = MAP@k of ``queries`` against ``gallery`` at every epoch end.

    Args:
        network: the inference model being trained (its ``embedding`` output is read).
        gallery: a re-iterable of image batches (e.g. a ``tf.data.Dataset``), in the order of
            ``gallery_labels``.
        gallery_labels: [G] class of each gallery image.
        queries: a re-iterable of query image batches, in the order of ``query_labels``.
        query_labels: [Q] class of each query.
        k: MAP@k cut-off and ranked classes per query.
        flip: flip TTA on both sides (``evaluation.embed``).
        name: the log key (``val_map5`` for k=5).

    Example:
        >>> callback = RetrievalValidation(model, train_images, train_labels, val_images, val_labels)  # doctest: +SKIP
    """

    def __init__(self, network, gallery, gallery_labels, queries, query_labels, k: int = 5, flip: bool = False,
                 name: str | None = None):
        super().__init__()
        self.network = network
        self.gallery, self.queries = gallery, queries
        self.gallery_labels = np.asarray(gallery_labels)
        self.query_labels = np.asarray(query_labels)
        self.k = k
        self.name = name or f"val_map{k}"
        self._embed = embedding_function(network, flip)
        self._dim = int(network.output["embedding"].shape[-1])

    def evaluate(self) -> float:
        gallery = embed_batches(self._embed, self.gallery, self._dim)
        queries = embed_batches(self._embed, self.queries, self._dim)
        ranked, _ = rank_classes(queries, gallery, self.gallery_labels, k=self.k, normalize=False, progress=False)
        return map_at_k(self.query_labels, ranked, self.k)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and len(self.query_labels) and len(self.gallery_labels):
            logs[self.name] = self.evaluate()
