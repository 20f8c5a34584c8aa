"""A PNG grid of augmented training images (``python run.py pipeline=<name> task=preview_augment``)."""

import math

import numpy as np

from keras_fgvc.tracking.figures import pyplot, save_figure


def augmentation_grid(images: np.ndarray, path, columns: int = 8):
    """Write ``images`` (uint8 [N, H, W, C], C in {1, 3}) as a grid PNG at ``path`` and return ``path``.

    Args:
        images: the augmented images, in display order (row-major).
        path: output file; parent folders are created.
        columns: images per row (fewer if there are fewer images).

    Example:
        >>> augmentation_grid(np.zeros((16, 64, 64, 3), np.uint8), "run/plots/augment.png")
        'run/plots/augment.png'
    """
    plt = pyplot()

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"expected uint8 images [N, H, W, 1|3] with N > 0, got shape {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    columns = max(1, min(columns, len(images)))
    rows = math.ceil(len(images) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2 * columns, 2 * rows), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < len(images):
            image = images[index]
            axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None,
                        vmin=0, vmax=255)
    figure.tight_layout(pad=0.2)
    save_figure(figure, path)
    return path
