"""Retrieval PNGs for the Hotel-ID pipeline: a query-by-query grid of the top-k gallery matches
(hits framed green, misses red) and a per-epoch curve of a validation metric with its best epoch marked."""

import numpy as np

from keras_fgvc.tracking.figures import pyplot, save_figure

# Fixed cell sizes so the PNG's pixel size is known from the grid shape (tests and HTML reports rely on it):
# at save_figure's 80 dpi a cell is 160 x 192 px, the extra height holding the label/score subtitle.
DPI = 80
CELL_WIDTH_INCHES = 2.0
CELL_HEIGHT_INCHES = 2.4
TITLE_HEIGHT_INCHES = 0.4
SUBTITLE_HEIGHT_INCHES = 0.3
CELL_PAD_INCHES = 0.06
CURVE_SIZE_INCHES = (6.0, 4.0)

# Pure-ish RGB so a hit or miss is recognisable in the PNG, by eye and by pixel tests alike.
HIT_COLOUR = (0.0, 0.6, 0.0)
MISS_COLOUR = (0.85, 0.0, 0.0)
FRAME_WIDTH_POINTS = 5.0


def retrieval_grid(queries, results, path, title=None, max_rows: int = 8):
    """Write a grid PNG at ``path``, one row per query: the query image, then its ranked gallery matches.

    A match whose label equals the query's is a hit (thick green frame), otherwise a miss (red frame);
    a query with label ``None`` (unknown truth, e.g. the Kaggle test set) gets no frames. Each match is
    subtitled with its label and score. Images may differ in size; each keeps its aspect ratio.

    Args:
        queries: list of ``{"image": uint8 [H, W, 3] (or [H, W] / [H, W, 1]), "label": str | None}``.
        results: one list per query of ``{"image": array, "label": str, "score": float}``, best first.
        path: output file; parent folders are created and the file is replaced atomically.
        title: figure title (none if ``None``).
        max_rows: only the first ``max_rows`` queries are drawn, so a whole validation set stays viewable.
    Returns:
        ``path``.

    Example:
        >>> grey = np.full((64, 48, 3), 128, np.uint8)
        >>> retrieval_grid([{"image": grey, "label": "hotel_7"}],
        ...                [[{"image": grey, "label": "hotel_7", "score": 0.91},
        ...                  {"image": grey, "label": "hotel_2", "score": 0.55}]],
        ...                "run/plots/retrieval.png")  # doctest: +SKIP
        'run/plots/retrieval.png'
    """
    figure, _ = _retrieval_figure(queries, results, title=title, max_rows=max_rows)
    return save_figure(figure, path, dpi=DPI)


def metric_curve(history, key: str, path, title=None):
    """Write the per-epoch curve of ``history[key]`` as a PNG at ``path``, marking the best (largest) epoch.

    Args:
        history: mapping of metric name to per-epoch floats, or a ``keras.callbacks.History``.
        key: the metric to draw, e.g. ``"val_map5"``; higher is taken as better.
        path: output file; parent folders are created and the file is replaced atomically.
        title: axes title (default ``key``).
    Returns:
        ``path``.
    Raises:
        ValueError: ``key`` is not in ``history`` (the message lists the keys that are), or has no finite value.

    Example:
        >>> metric_curve({"val_map5": [0.21, 0.34, 0.31]}, "val_map5", "run/plots/val_map5.png")  # doctest: +SKIP
        'run/plots/val_map5.png'
    """
    figure, _ = _metric_figure(history, key, title=title)
    return save_figure(figure, path, dpi=DPI)


def _retrieval_figure(queries, results, title=None, max_rows: int = 8):
    """Draw the retrieval grid; returns ``(figure, outcomes)``, ``outcomes[row][rank]`` being "hit", "miss" or None."""
    plt = pyplot()

    if len(queries) != len(results):
        raise ValueError(f"{len(queries)} queries but {len(results)} result lists")
    if len(queries) == 0:
        raise ValueError("no queries to draw")
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    queries, results = list(queries)[:max_rows], list(results)[:max_rows]
    rows = len(queries)
    columns = 1 + max(len(matches) for matches in results)
    title_height = TITLE_HEIGHT_INCHES if title else 0.0
    width, height = CELL_WIDTH_INCHES * columns, CELL_HEIGHT_INCHES * rows + title_height
    figure = plt.figure(figsize=(width, height))
    # Axes placed by hand in inches instead of tight_layout: cell (row, column) is always the same pixel
    # rectangle whatever the label lengths, so frames land where tests and readers expect them.
    axes = np.empty((rows, columns), dtype=object)
    for row in range(rows):
        for column in range(columns):
            left = column * CELL_WIDTH_INCHES + CELL_PAD_INCHES
            bottom = height - title_height - (row + 1) * CELL_HEIGHT_INCHES + CELL_PAD_INCHES
            axes[row, column] = figure.add_axes((
                left / width, bottom / height,
                (CELL_WIDTH_INCHES - 2 * CELL_PAD_INCHES) / width,
                (CELL_HEIGHT_INCHES - CELL_PAD_INCHES - SUBTITLE_HEIGHT_INCHES) / height))
    if title:
        figure.suptitle(title, y=1.0 - 0.5 * title_height / height, va="center")

    outcomes = []
    for row, (query, matches) in enumerate(zip(queries, results)):
        query_label = query.get("label")
        _show(axes[row, 0], query["image"], None)
        axes[row, 0].set_title("query" if query_label is None else f"query: {query_label}", fontsize=9,
                               fontweight="bold")
        row_outcomes = []
        for rank, match in enumerate(matches):
            outcome = None if query_label is None else ("hit" if match["label"] == query_label else "miss")
            colour = {"hit": HIT_COLOUR, "miss": MISS_COLOUR, None: None}[outcome]
            _show(axes[row, 1 + rank], match["image"], colour)
            axes[row, 1 + rank].set_title(f"{match['label']}  {float(match['score']):.2f}", fontsize=8)
            row_outcomes.append(outcome)
        for column in range(1 + len(matches), columns):
            axes[row, column].axis("off")
        outcomes.append(row_outcomes)
    return figure, outcomes


def _show(axis, image, frame_colour):
    """Show one image without ticks; frame it in ``frame_colour`` (no frame if ``None``)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (1, 3))):
        raise ValueError(f"expected a uint8 image [H, W], [H, W, 1] or [H, W, 3], got {image.dtype} {image.shape}")
    grey = image.ndim == 2 or image.shape[-1] == 1
    axis.imshow(image.reshape(image.shape[:2]) if grey else image, cmap="gray" if grey else None, vmin=0, vmax=255)
    # Spines rather than axis("off") + a patch: imshow's equal aspect shrinks the axes box to the image,
    # so the spines hug the picture whatever its size.
    axis.set_xticks([])
    axis.set_yticks([])
    for spine in axis.spines.values():
        if frame_colour is None:
            spine.set_visible(False)
        else:
            spine.set_edgecolor(frame_colour)
            spine.set_linewidth(FRAME_WIDTH_POINTS)


def _metric_figure(history, key: str, title=None):
    """Draw the metric curve; returns ``(figure, best)`` with ``best = {"epoch": 1-based, "value": float}``."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    # A keras History keeps the per-epoch logs in .history; plain dicts (e.g. read back from JSON) are used as is.
    history = getattr(history, "history", history)
    if key not in history:
        raise ValueError(f"history has no {key!r}; available keys: {sorted(history)}")
    values = np.asarray(history[key], dtype=np.float64)
    if values.ndim != 1 or not np.isfinite(values).any():
        raise ValueError(f"history[{key!r}] needs at least one finite per-epoch value, got {history[key]!r}")
    epochs = np.arange(1, len(values) + 1)
    # A diverged (NaN) epoch must not hide the best one, hence the NaN-aware argmax.
    best_index = int(np.nanargmax(np.where(np.isfinite(values), values, np.nan)))
    best = {"epoch": int(epochs[best_index]), "value": float(values[best_index])}

    figure, axis = plt.subplots(figsize=CURVE_SIZE_INCHES)
    axis.plot(epochs, values, marker="o" if len(values) <= 30 else None, markersize=3, label=key)
    axis.scatter([best["epoch"]], [best["value"]], s=60, color="tab:red", zorder=3, label="best")
    axis.annotate(f"best {best['value']:.4f} @ epoch {best['epoch']}", (best["epoch"], best["value"]),
                  textcoords="offset points", xytext=(0, 8), ha="center", fontsize=9)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlim(0.5, len(values) + 0.5)
    axis.margins(y=0.15)  # headroom so the best-value label above the dot stays inside the axes
    axis.set_xlabel("epoch")
    axis.set_ylabel(key)
    axis.set_title(key if title is None else title)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure, best
