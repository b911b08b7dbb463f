"""Pictures of a whole dataset split: the penultimate features in 2-D, and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cvkit.errors import OptionError
from cvkit.runtime import LoadedRun

PROJECTIONS = ("pca", "tsne", "umap")
UMAP_MISSING = ("--projection umap needs umap-learn, which is not installed: pip install umap-learn "
                "(or use --projection pca or tsne)")
EXACT_SVD = 512  # PCA by a full SVD up to this many points or features, a randomized one beyond
MAX_POINTS = 5000  # t-SNE on more takes minutes on a CPU, and a scatter of more is a blot


@dataclass
class Embedding:
    """2-D points (n x 2) of a seeded sample of the split (``rows``: their indices in it), their
    labels, and how they were made (``note``: the variance PCA's two axes explain)."""

    points: np.ndarray
    rows: np.ndarray
    labels: np.ndarray
    projection: str
    total: int
    note: str


def project(features: torch.Tensor, projection: str, seed: int) -> tuple[np.ndarray, str]:
    """N x D features to N x 2 points with PCA (torch), t-SNE (scikit-learn) or UMAP (umap-learn)."""
    if projection == "pca":
        x = features.double() - features.double().mean(0)
        if min(x.shape) > EXACT_SVD:  # randomized SVD: seconds instead of minutes for 5000 x 4096
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                _, s, v = torch.pca_lowrank(x, q=min(8, *x.shape), center=False, niter=4)
            axes = v[:, :2].T
        else:
            _, s, axes = torch.linalg.svd(x, full_matrices=False)
            axes = axes[:2]
        share = float((s[:2] ** 2).sum() / x.pow(2).sum().clamp_min(1e-300))
        points = x @ axes.T
        signs = torch.sign(points[points.abs().argmax(0), torch.arange(points.shape[1])])  # a fixed orientation
        return (points * torch.where(signs == 0, 1.0, signs)).numpy(), f"{share:.0%} of the variance"
    if projection == "tsne":
        from sklearn.manifold import TSNE

        n = len(features)
        tsne = TSNE(2, perplexity=min(30.0, max(1.0, (n - 1) / 3)), init="pca", random_state=seed)
        return tsne.fit_transform(features.numpy()), f"perplexity {tsne.perplexity:g}"
    try:
        import umap
    except ImportError:
        raise OptionError(UMAP_MISSING) from None
    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(features) - 1), random_state=seed)
    return np.asarray(reducer.fit_transform(features.numpy())), "UMAP"


def check_projection(projection: str) -> None:
    """Refuse an unknown projection, or one whose library is not installed, before any work."""
    if projection not in PROJECTIONS:
        raise OptionError(f"--projection {projection} must be one of {', '.join(PROJECTIONS)}")
    if projection == "umap":
        import importlib.util

        if importlib.util.find_spec("umap") is None:
            raise OptionError(UMAP_MISSING)


def embedding(loaded: LoadedRun, images: np.ndarray, labels: np.ndarray, projection: str = "pca",
              max_points: int = MAX_POINTS, seed: int = 0, batch_size: int = 256) -> Embedding:
    """The penultimate features of ``images`` (at most ``max_points``, a seeded sample) in 2-D."""
    from cvkit.data.cache import take

    check_projection(projection)
    if max_points < 3:
        raise OptionError(f"--points {max_points} must be at least 3")
    n = len(images)
    if n < 3:
        raise OptionError(f"the split has {n} image(s); a 2-D embedding needs at least 3, choose another --split")
    rows = np.arange(n)
    if n > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
    features = loaded.penultimate(take(images, rows) if len(rows) < n else images, batch_size)
    points, note = project(features, projection, seed)
    points = np.asarray(points, dtype=np.float64).reshape(len(rows), -1)
    if points.shape[1] < 2:  # one feature: a line, drawn on the first axis
        points = np.hstack([points, np.zeros((len(points), 2 - points.shape[1]))])
    return Embedding(points, rows, np.asarray(labels)[rows], projection, n, note)


def confusion(loaded: LoadedRun, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Counts of (true, predicted) pairs (K x K int64, rows: the true class), as ``evaluate`` counts them."""
    if loaded.task.outputs_are != "classes":
        raise OptionError(f"--confusion counts classes, and {loaded.run} predicts {loaded.task.outputs_are} "
                          f"({loaded.task.name}); leave --confusion out")
    probs, _ = loaded.predict(images, None, batch_size)
    k = len(loaded.classes)
    predicted = probs[:, :k].argmax(1)  # the class scores (a localize run's box follows them)
    return np.bincount(np.asarray(labels) * k + predicted, minlength=k * k).reshape(k, k).astype(np.int64)
