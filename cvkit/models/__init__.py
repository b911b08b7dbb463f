"""The architecture registry: cvkit's own nets, then timm's, then torchvision's, behind one interface.

``create_model("vgg16", 10, 3, (64, 64), head="gap")`` returns a model with timm's interface
(``forward_features``, ``forward_head``, ``num_features``, ``get_classifier``,
``reset_classifier``) whatever its source, so training, evaluation, CAM and retrieval code work
with every ``--arch``. ``list_models`` is what ``cvkit models`` prints.

The segmentation nets ``unet`` and ``fcn`` (``dense = True``) offer the same interface with logits
at every pixel: ``create_model("unet", K, 3, (64, 64))`` maps (N, 3, H, W) to (N, K, H, W).
"""

import os

# A pretrained download on a machine without network should fail in seconds, not hang
# (read by huggingface_hub when timm imports it).
os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")

from cvkit.models import classic  # noqa: E402,F401  (registers cvkit's own nets)
from cvkit.models import unet, fcn  # noqa: E402,F401,I001  (then the segmentation nets, in this order)
from cvkit.models.create import arch_options, create_model, init_weights  # noqa: E402
from cvkit.models.inspection import (  # noqa: E402
    block_groups,
    check_input_size,
    count_parameters,
    head_parameter_names,
)
from cvkit.models.layers import Net  # noqa: E402
from cvkit.models.registry import list_models, register_model, resolve_arch  # noqa: E402
from cvkit.models.unet import unet_sizes  # noqa: E402
from cvkit.models.weights import load_weights  # noqa: E402

__all__ = [
    "Net",
    "arch_options",
    "block_groups",
    "check_input_size",
    "count_parameters",
    "create_model",
    "head_parameter_names",
    "init_weights",
    "list_models",
    "load_weights",
    "register_model",
    "resolve_arch",
    "unet_sizes",
]
