"""The run page's sections besides the run itself and the worst images: training curves, a classify run's
metrics, calibration and augmentation. Each reuses what train and evaluate wrote and draws with the plots
layer's functions what they did not."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from cvkit.files.calibration import Calibration
from cvkit.files.run import ModelInfo
from cvkit.report.html import Markup, definitions, el, figure, join, note, number, table
from cvkit.report.run_data import RunData
from cvkit.report.task_common import headline

CURVES = "curves.png"  # what train draws into the run: loss and the task's metric, the best epoch marked
CONFUSION = "confusion_matrix.png"
RELIABILITY = "reliability.png"  # evaluate's, for a calibrated run: before and after the temperature
PREVIEW_IMAGES = 4
# config.json's resolved.augment_source, in words (otherwise it is the policy file's path)
SOURCES = {"default": "train's default policy (the dataset had no augment.json)", "none": "--augment none",
           "": "the run's options"}  # train images in the augmentation preview, each with its augmented versions


def drawn(draw: Any, data: RunData, name: str) -> str:
    """The ``src`` of a picture a plots function writes to a path: drawn into a scratch file, then encoded
    by the page writer (the picture itself is not kept: nothing was computed)."""
    with tempfile.TemporaryDirectory(prefix="cvkit-report-") as tmp:
        path = Path(tmp) / f"{name}.png"
        draw(path)
        return data.ctx.writer.image(path, name)


# ----------------------------------------------------------------------------- curves


def curves_section(data: RunData) -> Markup:
    """Loss and the task's metric per epoch, train against val, the best epoch marked; the best and last
    epochs' figures in a table."""
    epochs = data.epochs
    if epochs is None:
        return note(f"No training curves: {data.no_epochs}")
    best = data.model.epoch
    saved = data.run / CURVES
    if saved.is_file() and saved.stat().st_mtime >= ModelInfo.written_at(data.run):
        src, where = data.ctx.writer.image(saved, "curves"), "as train drew it"
    else:
        from cvkit.plots import plot_curves

        src, where = drawn(lambda path: plot_curves(epochs, path, best or None), data, "curves"), "drawn from metrics.csv"
    columns = [c for c in epochs.columns if c != "epoch"]
    rows = []
    for label, epoch in (("best", best), ("last", int(epochs["epoch"].max()) if len(epochs) else 0)):
        found = epochs[epochs["epoch"] == epoch]
        if len(found) and (label == "best" or epoch != best):
            rows.append([label, int(epoch), *(_cell(found.iloc[0][c]) for c in columns)])
    return join(figure(src, f"Solid: train, dashed: val; the dotted line marks the best epoch ({best}), whose "
                            f"weights the run kept ({where})."),
                table(["", "epoch", *columns], rows, sortable=False, caption="The best epoch (and the last)"))


def _cell(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


# ----------------------------------------------------------------------------- metrics (classify)


def per_class(matrix: Any, classes: list[str]) -> list[list[Any]]:
    """Precision, recall, F1 and support of each class from the confusion matrix (rows: true class)."""
    import numpy as np

    matrix = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(matrix)
    support, predicted = matrix.sum(1), matrix.sum(0)
    precision = np.divide(tp, predicted, out=np.zeros(len(tp)), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(len(tp)), where=support > 0)
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros(len(tp)), where=support + predicted > 0)
    return [[name, float(p), float(r), float(f), int(s)] for name, p, r, f, s in zip(classes, precision, recall, f1,
                                                                                      support)]


def confusion(data: RunData) -> Any:
    """The evaluation's confusion_matrix.csv as a K x K array (rows: true class, in the run's class order)."""
    frame = data.table("confusion_matrix.csv")
    k = len(data.model.classes)
    counts = frame.iloc[:, 1:]
    if counts.shape != (k, k):
        from cvkit.errors import ManifestError

        raise ManifestError(f"{data.evaluation / 'confusion_matrix.csv'} is {counts.shape[0]} x {counts.shape[1]}, "
                            f"the run has {k} classes; {data.rerun}")
    return counts.to_numpy()


def metrics_section(data: RunData) -> Markup:
    """Headline figures, the per-class table (sortable) and the confusion matrix of a classify run."""
    matrix = confusion(data)
    body = [note(f"From {data.shown(data.evaluation)}."), headline(data.model.task, data.metrics), el("h3", "Per class"),
            table(["class", "precision", "recall", "F1", "support"], per_class(matrix, data.model.classes),
                  caption="Click a column's header to sort by it.")]
    confused = data.metrics.get("most_confused") or []
    if confused:
        body += [el("h3", "Most confused"), table(["true", "predicted as", "images"],
                                                  [[c["true"], c["predicted"], int(c["count"])] for c in confused])]
    picture = data.evaluation / CONFUSION
    if picture.is_file():
        body.append(figure(data.ctx.writer.image(picture, "confusion-matrix"),
                           "Confusion matrix: counts, and rates by true class (each row's recall)."))
    return join(*body)


# ----------------------------------------------------------------------------- calibration


def calibration_section(data: RunData) -> Markup:
    """The reliability diagram with ECE: evaluate's own (a calibrated run's, before and after) or drawn from
    the evaluation's probabilities with tasks/calibration.py's bins."""
    task, metrics = data.task, data.metrics
    fitted = Calibration.read_if_present(data.run)
    block = metrics.get("calibration")
    if fitted is not None:
        said = (f"A temperature was fitted on the {fitted.split} split ({fitted.method}, {fitted.describe()}; "
                f"{fitted.split} ECE {number(fitted.ece_before)} before, {number(fitted.ece_after)} after) and "
                f"applies to the probabilities below.")
    else:
        said = (f"No temperature was fitted: the probabilities are the model's own ('cvkit evaluate {data.run} "
                f"--calibrate' fits one on the val split).")
    if task.scaling is None:
        return join(note(f"A {task.name} run's outputs are not class scores: no reliability diagram."))
    body = [note(said)]
    pairs = []
    if isinstance(block, dict) and "ece_before" in block:
        pairs += [(f"ECE on {data.ctx.split}, raw", number(block["ece_before"])),
                  (f"ECE on {data.ctx.split}, calibrated", number(block["ece_after"]))]
    picture = data.evaluation / RELIABILITY
    if picture.is_file():
        if "ece" in metrics:
            pairs.insert(0, ("ECE", number(metrics["ece"])))
        body += [definitions(pairs), figure(data.ctx.writer.image(picture, "reliability"),
                                            "Reliability diagram (evaluate's): how often predictions of each "
                                            "confidence were right.")]
        return join(*body)
    from cvkit.plots.calibration import plot_reliability
    from cvkit.tasks.calibration import ECE_BINS, calibration_error, reliability_bins

    confidence, outcome = task.reliability(data.probabilities, task.targets(data.split()))
    ece = calibration_error(confidence, outcome)
    bins = reliability_bins(confidence, outcome)
    xlabel = "confidence" if task.temperature_size() == 1 else "predicted probability"
    src = drawn(lambda path: plot_reliability({f"{data.ctx.split} split, ECE {ece:.4f}": bins}, path, xlabel),
                data, "reliability")
    pairs.insert(0, ("ECE", number(ece)))
    body += [definitions(pairs), figure(src, f"Reliability diagram over {ECE_BINS} equal-width bins of {xlabel}: the "
                                             f"rate right against the diagonal of a perfectly calibrated model.")]
    return join(*body)


# ----------------------------------------------------------------------------- augmentation


def augmentation_section(data: RunData) -> Markup:
    """The policy the run trained with (config.json's resolved policy, else the dataset's augment.json) and
    a preview strip drawn by ``cvkit augment --preview``'s function on a few train images."""
    from dataclasses import fields

    from cvkit.transforms.policy import AugmentPolicy, make_policy, read_augment

    resolved = data.config.resolved if data.config is not None else None
    if resolved is not None and resolved.augment is not None:
        policy, source = make_policy(resolved.augment), SOURCES.get(resolved.augment_source or "", resolved.augment_source)
    elif data.dataset is not None and (found := read_augment(data.dataset)) is not None:
        policy, source = found, f"{data.dataset}'s augment.json (the run does not record its own)"
    else:
        return note("The run records no augmentation policy, and its dataset has none.")
    helps = {f.name: f.metadata.get("help", "") for f in fields(AugmentPolicy)}
    active = policy.active
    pairs = [(name, join(text_of(value), " ", el("span", helps.get(name, ""), class_="note")))
             for name, value in active.items()]
    body = [note(f"From {source}: {policy.describe()}."),
            definitions(pairs) if pairs else note("No augmentation: every field is off.")]
    if active and data.dataset is not None:
        from cvkit.augment.preview import preview
        from cvkit.device import resolve_device

        seed = data.config.seed if data.config is not None else 0
        path = data.ctx.writer.computed / "augment_preview.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        preview(data.dataset, policy, PREVIEW_IMAGES, seed, resolve_device(data.ctx.device), data.split("train"), path)
        data.ctx.note(f"drew the augmentation preview of {data.run} on {PREVIEW_IMAGES} train images")
        body.append(figure(data.ctx.writer.image(path, "augment-preview"),
                           "Train images (left) and augmented versions of each, as training drew them."))
    return join(*body)


def text_of(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(number(float(v)) for v in value)
    return number(value) if isinstance(value, float) else str(value)
