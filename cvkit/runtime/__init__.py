"""Layer 4: a trained run as a ready object, for every command that uses a model.

``load_run(RUN, device)`` rebuilds the model from ``model.json`` alone; ``read_images`` decodes new
images exactly as ``prepare`` does; ``LoadedRun.predict`` runs batches at the run's precision and
memory format and returns probabilities; ``LoadedRun.features`` / ``capture`` give the outputs of
named layers through hooks removed after use. Nothing here imports ``cvkit.train``.
"""

from cvkit.runtime.features import capture, layer_names
from cvkit.runtime.images import NewImages, collect_inputs, read_images
from cvkit.runtime.infer import predict_batches
from cvkit.runtime.run import LoadedRun, load_run

__all__ = ["LoadedRun", "NewImages", "capture", "collect_inputs", "layer_names", "load_run", "predict_batches",
           "read_images"]
