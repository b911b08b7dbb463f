"""A trained run as a ready object: the model and its preprocessing, from ``model.json`` alone."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from rich.markup import escape
from torch import nn

from cvkit.data.batches import Batches
from cvkit.device import autocast, set_memory_format
from cvkit.errors import ManifestError, OptionError
from cvkit.files.calibration import CALIBRATION_JSON, Calibration, refit, weights_sha1
from cvkit.files.config import Resolved, TrainConfig
from cvkit.files.run import ModelInfo, load_model_weights
from cvkit.progress import info, progress_bar
from cvkit.runtime.features import capture
from cvkit.runtime.infer import predict_batches, view_logits
from cvkit.tasks import Task, TaskSpec, create_task
from cvkit.tasks.calibration import calibrated
from cvkit.transforms.batch import Preprocess
from cvkit.transforms.views import VIEW_NAMES, make_views, parse_views


@dataclass
class LoadedRun:
    """A run's model on a device, in eval mode, with the preprocessing it was trained with."""

    run: Path
    model: nn.Module
    info: ModelInfo
    pre: Preprocess
    precision: str
    device: torch.device

    @property
    def classes(self) -> list[str]:
        return self.info.classes

    @cached_property
    def task(self) -> Task:
        """What the run predicts, as model.json records it."""
        path = self.run / "model.json"
        try:
            task = create_task(self.info.task, TaskSpec(self.info.classes, self.info.loss, state=self.info.task_state))
        except OptionError as e:
            raise ManifestError(f"{path}: {e}; restore model.json or retrain the run") from None
        if task.num_outputs != self.info.num_outputs:
            raise ManifestError(f"{path}: 'num_outputs' {self.info.num_outputs} does not fit {self.info.num_classes} "
                                f"classes of task {task.name} with loss {self.info.loss} (expected {task.num_outputs}); "
                                f"restore model.json or retrain the run")
        return task

    @property
    def input_size(self) -> tuple[int, int]:
        return int(self.info.input_size[0]), int(self.info.input_size[1])

    @property
    def data_size(self) -> tuple[int, int] | None:
        """The size a dataset is read at to score this run: its input size; None (the dataset's own size)
        for a convolutionalized classifier turned segmenter, whose maps take images of any size."""
        return None if self.info.score_maps else self.input_size

    @property
    def in_chans(self) -> int:
        return self.info.in_chans

    @property
    def data(self) -> str | None:
        """The dataset the run was trained on, from config.json (None when the run has none)."""
        cfg = TrainConfig.read_if_present(self.run)
        return cfg.data if cfg is not None else None

    def batches(self, images: np.ndarray, batch_size: int = 256, labels: np.ndarray | None = None) -> Iterable:
        """(uint8 batch, labels or None) on this run's device, in order."""
        fake = np.zeros(len(images), np.int64) if labels is None else labels
        for x, y in Batches(images, fake, batch_size, self.device, shuffle=False).epoch():
            yield x, (None if labels is None else y)

    def tta_views(self, tta: bool | str | Sequence[str] | None) -> tuple[str, ...]:
        """``--tta VIEWS``/``--no-tta`` as given (True: flip, the old flag), or (None) what training chose on
        val for these weights, said when it is flip (each command resolves it once, before it predicts).
        A view the run's task cannot move its predictions back from is refused."""
        if tta is not None:
            views = parse_views(tta)
            for name in views:
                if not self.task.undoes(name):
                    raise OptionError(f"--tta {name}: a {self.task.name} run cannot move its predictions back from "
                                      f"a {name} view (only {', '.join(v for v in VIEW_NAMES if self.task.undoes(v))}"
                                      f"); leave {name} out of --tta")
            return views
        if self.info.flip_tta:
            chosen = self.info.tta
            info(f"{self.run}: averaging each image with its mirror (flip TTA), as chosen on val when it was trained "
                 f"({chosen.get('metric')} {chosen.get('flip', float('nan')):.4f} with it, "
                 f"{chosen.get('plain', float('nan')):.4f} without); --no-tta turns it off")
            return ("flip",)
        return ()

    def uses_tta(self, tta: bool | str | Sequence[str] | None) -> bool:
        """Whether :meth:`tta_views` chooses any view."""
        return bool(self.tta_views(tta))

    def predict(self, images: np.ndarray, labels: np.ndarray | None = None, batch_size: int = 256,
                tta: bool | Sequence[str] = False) -> tuple[np.ndarray, float | None]:
        """Class probabilities (N x K) of N x H x W x C uint8 images, and the mean loss when labels are given
        (not for a calibrated run: its probabilities are scaled from the logits).

        ``tta``: test-time views (:meth:`tta_views`), averaged with each image; a forward pass holds
        about ``batch_size`` images, every view of fewer of them."""
        if len(images) == 0:
            return np.zeros((0, len(self.classes))), None
        if self.task.temperature is not None:  # calibrated (uses_calibration): from the logits, in float64
            return calibrated(self.task, self.logits(images, batch_size, tta)), None
        views = parse_views(tta)
        with torch.inference_mode():
            probs, loss = predict_batches(self.model, self.batches(images, self._per_pass(batch_size, views), labels),
                                          self.pre, self.task, self.precision, tta=views)
        self._check_finite(probs)
        return probs, loss

    def _per_pass(self, batch_size: int, views: Sequence[str]) -> int:
        """Images per batch when each comes with its ``views`` in the same forward pass."""
        return max(1, batch_size // (len(make_views(views, self.input_size)) + 1))

    def logits(self, images: np.ndarray, batch_size: int = 256, tta: bool | Sequence[str] = False) -> list[np.ndarray]:
        """The model's outputs (N x outputs, float32) of N uint8 images, then of each test-time view (``tta``):
        what temperature scaling is fit on, and what gives the probabilities before and after it."""
        views = parse_views(tta)
        with torch.inference_mode():
            outputs = view_logits(self.model, self.batches(images, self._per_pass(batch_size, views)), self.pre,
                                  self.precision, views)
        return [self._check_finite(out) for out in outputs]

    def _check_finite(self, values: np.ndarray) -> np.ndarray:
        bad = int((~np.isfinite(values).all(axis=1)).sum()) if len(values) else 0
        if bad:  # argmax over NaN is class 0: scoring it would report a made-up accuracy
            raise ManifestError(f"the model of {self.run} gives NaN or infinite outputs for {bad:,} of {len(values):,} "
                                f"images (at {self.precision}): its weights are broken or overflow; retrain it (a lower "
                                f"--lr{'' if self.precision == 'fp32' else ', --precision fp32'})")
        return values

    def uses_calibration(self, use: bool = True) -> Calibration | None:
        """RUN/calibration.json (``evaluate --calibrate``) applied to the task's probabilities from here on, said
        in one line; None where the run has none, or ``use`` is False (``--no-calibration``: the raw logits)."""
        found = Calibration.read_if_present(self.run) if use else None
        if found is None:
            self.task.set_temperature(None)
            return None
        path, task = self.run / CALIBRATION_JSON, self.task
        if task.scaling is None:
            raise ManifestError(f"{path}: a {task.name} run takes no temperature scaling; delete the file")
        if found.method != task.scaling or len(found.temperature) != task.temperature_size():
            raise ManifestError(f"{path} holds a {found.method} of {len(found.temperature)} value(s), this {task.name} "
                                f"run takes a {task.scaling} of {task.temperature_size()}; {refit(self.run)}")
        if found.weights_sha1 != weights_sha1(self.run):
            raise ManifestError(f"{path} was fit on other weights than the ones now in {self.run} (trained "
                                f"further since); {refit(self.run)}")
        task.set_temperature(found.temperature)
        info(f"{escape(str(self.run))}: probabilities calibrated by temperature scaling fit on {found.split} "
             f"({found.describe()}; {found.split} NLL {found.nll_before:.4f} -> {found.nll_after:.4f}); "
             f"--no-calibration turns it off")
        return found

    def penultimate(self, images: np.ndarray, batch_size: int = 256, description: str = "Features") -> torch.Tensor:
        """The features the classifier's last layer reads (timm's ``pre_logits``), N x D float32 on the CPU:
        what ``visualize --embedding`` projects and ``retrieve`` indexes."""
        model, parts = self.model, []
        with progress_bar(description, len(images)) as bar, torch.inference_mode():
            for batch, _ in self.batches(images, batch_size):
                with autocast(self.device, self.precision):
                    f = model.forward_head(model.forward_features(self.pre(batch)), pre_logits=True)
                parts.append(f.float().flatten(1).cpu())
                bar.advance(len(batch))
        return torch.cat(parts) if parts else torch.zeros(0, 0)

    def features(self, images: np.ndarray, layers: list[str], batch_size: int = 256) -> dict[str, torch.Tensor]:
        """The outputs of the named modules (``cvkit inspect`` lists the names) for uint8 images, on the CPU."""
        out: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
        with torch.inference_mode():
            for x, _ in self.batches(images, batch_size):
                with capture(self.model, layers) as seen:
                    self.model(self.pre(x))
                for name in layers:
                    out[name].append(seen[name].float().cpu())
        return {name: torch.cat(parts) for name, parts in out.items()}


def load_run(run: str | os.PathLike, device: torch.device, precision: str = "auto") -> LoadedRun:
    """Rebuild the model of ``run`` from model.json alone and load its best weights (safetensors).

    ``precision="auto"`` reuses what training chose when this is the same kind of device, else fp32.
    """
    from cvkit.models import create_model

    run = Path(run)
    info = ModelInfo.read(run)
    try:
        model = create_model(info.arch, info.num_outputs, info.in_chans, (info.input_size[0], info.input_size[1]),
                             check_size=False, **info.build_options())
    except OptionError as e:  # the options came from the file, not from the command line
        raise ManifestError(f"{run / 'model.json'} describes a model cvkit cannot build ({e}); restore model.json "
                            f"or retrain the run") from None
    if info.convolutional:  # written by 'cvkit convolutionalize': the same net with its head made convolutional
        from cvkit.models.convolutional import to_convolutional

        model = to_convolutional(model, info.in_chans, (info.input_size[0], info.input_size[1]))
    state = load_model_weights(run)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ManifestError(f"{run}/model.safetensors does not fit the model of model.json "
                            f"({str(e).splitlines()[0][:200]}); restore model.json or retrain the run") from None
    if info.score_maps:  # 'convolutionalize --segmenter': its score maps upsampled to the image
        from cvkit.models.scoremaps import ScoreMapSegmenter

        maps = info.score_maps
        try:
            model = ScoreMapSegmenter(model, str(maps["mode"]), tuple(maps["stride"]), tuple(maps["centre"]),
                                      tuple(maps["min_size"]), maps.get("order"))
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"{run / 'model.json'}: 'score_maps' is not what 'cvkit convolutionalize "
                                f"--segmenter' writes ({e}); convert the run again") from None
    model.to(device).eval()
    memory_format = "contiguous"
    cfg = TrainConfig.read_if_present(run)
    resolved = cfg.resolved if cfg is not None else Resolved()
    if precision == "auto":
        same_device = str(resolved.device or "cpu").split(":")[0] == device.type
        precision = (resolved.precision or "fp32") if same_device else "fp32"
        memory_format = (resolved.memory_format or "contiguous") if same_device else "contiguous"
    set_memory_format(model, memory_format)
    mean_image = np.load(run / info.mean_image) if info.mean_image else None
    pre = Preprocess(info.mean, info.std, device, mean_image, channels_last=memory_format == "channels_last")
    loaded = LoadedRun(run, model, info, pre, precision, device)
    loaded.task  # noqa: B018  (a task model.json names wrongly fails here, before any work)
    return loaded
