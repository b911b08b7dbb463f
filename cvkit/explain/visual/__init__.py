"""``cvkit visualize``: what a trained run has learned, as pictures.

One module per kind of picture (``maps``: first-layer filters and feature maps; ``patches``: the
dataset patches that excite a unit most; ``maximize``: the input a unit or class likes best;
``saliency``: gradient and SmoothGrad maps; ``splits``: embeddings and confusion matrices of a
split), ``draw`` to name and draw each, and ``run.visualize`` to check every option first and write
them all into ``--out`` at once.
"""

from cvkit.explain.visual.run import VisualizeRequest, VisualizeResult, visualize

__all__ = ["VisualizeRequest", "VisualizeResult", "visualize"]
