"""Pictures of dense class score maps (``cvkit convolutionalize --image``): heatmaps of the top
classes over the image, and the label map (the most likely class at every place) with a legend."""

from __future__ import annotations

import os

import numpy as np

from cvkit.plots import _figure, _save


def _show_image(ax, image: np.ndarray) -> None:  # noqa: ANN001
    ax.imshow(image[:, :, 0] if image.shape[2] == 1 else image, cmap="gray" if image.shape[2] == 1 else None)
    ax.set_axis_off()


def plot_score_maps(image: np.ndarray, scores: np.ndarray, classes: list[str], top: int,
                    path: str | os.PathLike) -> None:
    """The image, then the score maps of the ``top`` classes with the highest peak, each over the image
    (maps smaller than the image are stretched over it)."""
    order = np.argsort(-scores.reshape(len(scores), -1).max(1))[:top]
    fig = _figure(3.2 * (len(order) + 1), 3.6)
    ax = fig.add_subplot(1, len(order) + 1, 1)
    _show_image(ax, image)
    ax.set_title(f"image {image.shape[1]}x{image.shape[0]}", fontsize=9)
    h, w = image.shape[:2]
    for i, c in enumerate(order):
        ax = fig.add_subplot(1, len(order) + 1, i + 2)
        _show_image(ax, image)
        shown = ax.imshow(scores[c], cmap="jet", alpha=0.5, vmin=0, vmax=1, extent=(-0.5, w - 0.5, h - 0.5, -0.5))
        ax.set_title(f"{classes[c]} (peak {scores[c].max():.2f})", fontsize=9)
        fig.colorbar(shown, ax=ax, shrink=0.7)
    fig.suptitle(f"class probability maps, {scores.shape[1]}x{scores.shape[2]} cells", fontsize=10)
    _save(fig, path)


def plot_label_map(image: np.ndarray, labels: np.ndarray, classes: list[str], path: str | os.PathLike) -> None:
    """The most likely class at every cell, coloured, beside the image, with a legend of the classes present."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    colours = colormaps["tab20"](np.arange(len(classes)) % 20)
    fig = _figure(8, 4.2)
    ax = fig.add_subplot(1, 2, 1)
    _show_image(ax, image)
    ax.set_title("image", fontsize=9)
    ax = fig.add_subplot(1, 2, 2)
    ax.imshow(labels, cmap=ListedColormap(colours), vmin=-0.5, vmax=len(classes) - 0.5, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"label map, {labels.shape[0]}x{labels.shape[1]} cells", fontsize=9)
    present = sorted(set(labels.ravel().tolist()))
    ax.legend(handles=[Patch(color=colours[c], label=classes[c]) for c in present], fontsize=7,
              loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle("most likely class at every place", fontsize=10)
    _save(fig, path)
