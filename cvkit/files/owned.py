"""What cvkit writes, at every depth: the ``own`` tests ``--force`` consults before it replaces a folder.

A run folder holds train's files and the folders other commands write into it (``RUN/eval_val``,
``RUN/predict``, ...); a crossval folder holds fold runs. Each command's names are defined here,
below the commands, so that ``train --force`` can tell a user's ``RUN/eval_val/notes.txt`` from
evaluate's own files without importing evaluate.
"""

from __future__ import annotations

from pathlib import Path

from cvkit.files.cams import CAM_FILES
from cvkit.files.crossval import CROSSVAL_FILES
from cvkit.files.dataset import DATASET_FILES
from cvkit.files.export import EXPORT_FILES
from cvkit.files.logs import LOG_FOLDERS
from cvkit.files.report import own_report
from cvkit.files.outputs import Own, holds_only
from cvkit.files.retrieve import INDEX_FILES, QUERY_FILES
from cvkit.files.run import RUN_FILES

SHARDS = "shard-*-of-*"
EVALUATE_FILES = ("metrics.json", "predictions.csv", "confusion_matrix.csv", "confusion_matrix.png",
                  "top_losses.csv", "top_losses.png", "shard.json", "probabilities.npy", "per_class.csv",
                  "precision_recall.png", "boxes.png", "per_target.csv", "regression.png", "worst.png",
                  "reliability.png")
OVERLAYS = "overlays"  # predict: a picture per image of what a localize, keypoint or segment run predicts
MASKS = "masks"  # predict, segment runs: a label map per image (a palette PNG of class indices)
PROBS = "probs"  # predict --probs, segment runs: a K x H x W float16 .npy of probabilities per image
PREDICT_FILES = ("predictions.csv", "rejected.csv")
# Every file `visualize` writes (shell patterns): what its --out may hold and be rewritten over.
VISUALIZE_FILES = ("curves.png", "filters.png", "templates.png", "activations_*.png", "max_patches_*.png", "max_patches_*.csv",
                   "maximize_*.png", "saliency_*.png", "embedding_*.png", "embedding_*.csv", "confusion_*.png",
                   "adversarial_*.png", "adversarial_*.csv", "invert_*.png")
CONVOLUTIONAL_JSON = "convolutional.json"
CONVOLUTIONAL_FILES = (CONVOLUTIONAL_JSON, "*_scores.npy", "*_heatmap.png", "*_labels.png", "rejected.csv")

own_evaluate: Own = holds_only(EVALUATE_FILES, {SHARDS: holds_only(EVALUATE_FILES)})
own_predict: Own = holds_only(PREDICT_FILES, {OVERLAYS: holds_only(("*.png",)), MASKS: holds_only(("*.png",)),
                                              PROBS: holds_only(("*.npy",))})
own_visualize: Own = holds_only(VISUALIZE_FILES)
own_export: Own = holds_only(EXPORT_FILES)
_CAM: Own = holds_only(CAM_FILES, {SHARDS: holds_only(CAM_FILES)})
_OUTPUTS: dict[str, Own] = {"eval_*": own_evaluate, "ensemble_eval_*": own_evaluate, "predict": own_predict,
                            "cam": _CAM, "visualize": own_visualize, "export_*": own_export, "report": own_report,
                            **{folder: holds_only(files) for folder, files in LOG_FOLDERS.items()}}  # train --log's
_RUN_ONLY = tuple(name for name in RUN_FILES if name not in ("convolutional", *_OUTPUTS))
# A converted run (``cvkit convolutionalize``) is a run with a few files more, and is never converted again.
own_converted: Own = holds_only((*_RUN_ONLY, *CONVOLUTIONAL_FILES), _OUTPUTS)
own_run: Own = holds_only(_RUN_ONLY, {**_OUTPUTS, "convolutional": own_converted})
own_crossval: Own = holds_only(tuple(n for n in CROSSVAL_FILES if n not in ("folds", "final")),
                               {"folds": holds_only((), {"*": holds_only((), {"*": own_run})}), "final": own_run,
                                "report": own_report})
_INDEX_ONLY = tuple(name for name in INDEX_FILES if name not in ("query", SHARDS))
own_query: Own = holds_only(QUERY_FILES)
own_index: Own = holds_only(_INDEX_ONLY, {"query": own_query, SHARDS: holds_only(_INDEX_ONLY)})


def _pictures(folder: Path) -> Path | None:
    """A folder of PNGs cvkit wrote (``DATA/images/``, ``DATA/augmented/``), in sub-folders of any depth."""
    return holds_only(("*.png",), {"*": _pictures})(folder)


_DATASET_ONLY = tuple(name for name in DATASET_FILES if name not in ("cache", "images", "augmented"))
# The packed cache: cache/{split}_{H}x{W}.npy and .json, and the decoded images kept while it is built.
own_dataset: Own = holds_only(_DATASET_ONLY, {"cache": holds_only(("*_*x*.npy", "*_*x*.json", ".decoded.npy")),
                                              "images": _pictures, "augmented": _pictures})
