"""``cvkit convolutionalize``: a run's classifier as a fully convolutional net, written as a run, and
its class score maps on images of any size at least the training size."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from cvkit.convolutionalize.dense import stitch, upsample
from cvkit.errors import OptionError, SourceError
from cvkit.files.images import BadImage, read_image_file
from cvkit.files.jsonio import write_json
from cvkit.files.outputs import check_out, holds_only, replacing
from cvkit.files.run import RUN_FILES, save_model_weights
from cvkit.models.convolutional import to_convolutional
from cvkit.models.losses import outputs_to_probs
from cvkit.models.receptive import ReceptiveField, receptive_field
from cvkit.runtime import load_run

TOLERANCE = 1e-4  # largest |converted - original| logit allowed at the training size, float32
CONVOLUTIONAL_JSON = "convolutional.json"
OWN = (*RUN_FILES, CONVOLUTIONAL_JSON, "*_scores.npy", "*_heatmap.png", "*_labels.png")


@dataclass
class ConvResult:
    out: Path
    max_difference: float
    rf: ReceptiveField
    maps: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)  # (image, shape of its score maps)


def convolutionalize(run: str | os.PathLike, out: str | os.PathLike | None = None, images: list[str] | None = None,
                     dense_stitch: bool = False, dense_upsample: bool = False, top: int = 3,
                     force: bool = False) -> ConvResult:
    """Convert RUN's head, check it on an input of the training size, write the converted run to ``out``
    (default RUN/convolutional), and score maps for ``images``."""
    from cvkit.plots.dense import plot_label_map, plot_score_maps

    loaded = load_run(run, torch.device("cpu"), precision="fp32")
    info = loaded.info
    if info.convolutional:
        raise OptionError(f"{run} is already convolutional; give the run it was converted from")
    if info.mean_image:
        raise OptionError(f"{run} was normalized with a per-pixel mean image (normalize --mode pixel), which has "
                          "the training size only; normalize per channel and retrain to make score maps")
    size = loaded.input_size
    out = check_out(out or loaded.run / "convolutional", reads=[loaded.run, *(images or [])], own=holds_only(OWN),
                    force=force or out is None)
    x = torch.randn(4, info.in_chans, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        original = loaded.model(x)  # before the conversion, which moves the head's layers into the new net
    dense = to_convolutional(loaded.model, info.in_chans, size).eval()
    with torch.no_grad():
        difference = float((dense(x) - original).abs().max())
    if not difference < TOLERANCE:
        raise OptionError(f"the converted net's logits differ from {run}'s by {difference:.2e} (over {TOLERANCE}); "
                          "this head cannot be made convolutional exactly")
    rf = receptive_field(dense, f"head.{len(dense.head) - 1}", info.in_chans)
    result = ConvResult(out, difference, rf)
    with replacing(out) as stage:
        save_model_weights(stage, dense.state_dict(), info.epoch)
        replace(info, convolutional=True).write(stage)
        write_json(stage / CONVOLUTIONAL_JSON, {
            "format": 1, "source_run": str(loaded.run), "output_stride": list(rf.stride),
            "receptive_field": list(rf.size), "cell_00_centre": list(rf.centre),
            "max_abs_difference": difference, "stitch": dense_stitch, "upsample": dense_upsample})
        for path in images or []:
            try:
                decoded, _ = read_image_file(path, info.in_chans)
            except BadImage as e:
                raise SourceError(f"--image {path} cannot be read ({e}); give a readable image") from None
            image = decoded.array
            if image.shape[0] < size[0] or image.shape[1] < size[1]:
                raise SourceError(f"--image {path} is {image.shape[0]}x{image.shape[1]}, smaller than the training "
                                  f"size {size[0]}x{size[1]}; give a larger image")
            with torch.no_grad():
                batch = loaded.pre(torch.from_numpy(np.array(image[None])))  # a writable copy
                maps = stitch(dense, batch, rf.stride) if dense_stitch else dense.score_maps(batch)[0]
            k, h, w = maps.shape
            probs = outputs_to_probs(maps.permute(1, 2, 0).reshape(h * w, k), info.loss).T.reshape(-1, h, w)
            scores = probs.double().numpy()
            if dense_upsample:  # stitched maps have a cell per input pixel: stride 1
                scores = upsample(scores, rf, image.shape[:2], (1.0, 1.0) if dense_stitch else None)
            stem = Path(path).stem
            np.save(stage / f"{stem}_scores.npy", scores.astype(np.float32))
            plot_score_maps(image, scores, info.classes, top, stage / f"{stem}_heatmap.png")
            plot_label_map(image, scores.argmax(0), info.classes, stage / f"{stem}_labels.png")
            result.maps.append((str(path), tuple(scores.shape)))
    return result
