"""``--optimizer perceptron``: Rosenblatt's learning rule for ``--arch perceptron``, not gradient descent.

The rule reads each image of a batch in the shuffled order and changes the weights only when the
current weights misclassify it (bias included, eta = ``--lr``):

- two classes, one weight vector w, labels y = +-1, output sign(w.x + b): on a mistake (y (w.x + b) <= 0)
  w += eta y x and b += eta y. A net with two outputs (``--loss ce``) holds w as the difference of its two
  rows, w1 - w0: each row takes half the step, so w1 - w0 moves by exactly eta y x;
- more classes, one weight vector per class, prediction the argmax (the first on a tie): on a mistake the
  true class's vector gains eta x and the predicted one's loses it.

It is an optimizer (its ``lr`` is a param group's, saved in ``last.ckpt`` with the rest) whose ``step``
takes the batch instead of gradients; the trainer chooses its step once (``Trainer.learn``). Within a
batch the scores of all the images still to read are computed at once and the weights change at the
first mistake among them, so the result is the sequential rule's, image by image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from cvkit.errors import OptionError

NAME = "perceptron"
ARCH = "perceptron"  # the only net the rule trains: one linear layer over the pixels
DEFAULT_LR = 1.0  # eta; from zero weights the decisions do not depend on it (the weights are eta times sums of images)

# Options the rule has no use for: refused when given (``given``), or when set away from their no-op value.
NO_OP = {"momentum": None, "nesterov": None, "weight_decay": 0.0, "accumulate": 1, "clip_grad": None, "warmup": 0.0,
         "ema": None, "label_smoothing": None, "class_weights": None, "freeze": None, "unfreeze_after": None,
         "dropout": 0.0, "teacher": None}
# A schedule would change eta from step to step; the rule's eta is constant (the default onecycle is not applied).
SCHEDULES = ("onecycle", "none")
PRECISIONS = ("auto", "fp32")


def check_options(cfg: Any, given: Callable[[str], bool] | None = None) -> None:
    """Refuse what the rule cannot take with ``--optimizer perceptron``: another ``--arch``, and the options
    of gradient descent (``given(name)``: whether the command line named the option)."""
    if cfg.optimizer != NAME:
        return
    if cfg.arch != ARCH:
        raise OptionError(f"--optimizer perceptron is the perceptron learning rule, for --arch perceptron (one linear "
                          f"layer); --arch {cfg.arch} trains with sgd, adam or adamw")
    from cvkit.files.config import flag

    for name, no_op in NO_OP.items():
        value = getattr(cfg, name)
        if (given is not None and given(name)) or (no_op is not None and value not in (None, no_op)):
            raise OptionError(f"{flag(name)} does not apply to --optimizer perceptron (the rule adds or subtracts "
                              f"misclassified images, with no gradient); leave it out")
    if cfg.schedule not in SCHEDULES or (given is not None and given("schedule") and cfg.schedule != "none"):
        raise OptionError(f"--schedule {cfg.schedule}: the perceptron rule keeps eta (--lr) constant; leave "
                          f"--schedule out")
    if cfg.precision not in PRECISIONS:
        raise OptionError(f"--precision {cfg.precision}: the perceptron rule runs in fp32; leave --precision out")


def check_task(task: Any) -> None:
    """The rule learns one class per image (before the data is read)."""
    if not task.one_class:
        raise OptionError(f"--optimizer perceptron learns one class per image; this run's task is {task.name} "
                          f"(train it with sgd, adam or adamw)")


def check_run(mixes: bool, distributed: bool) -> None:
    """What only the built run tells: its augmentation policy, its processes."""
    if mixes:
        raise OptionError("--optimizer perceptron learns from each image and its own label; the augmentation policy "
                          "mixes images (mixup/cutmix): give --augment none, or a policy without them")
    if distributed:
        raise OptionError("--optimizer perceptron is sequential, image after image: run it without torchrun")


class PerceptronRule(torch.optim.Optimizer):
    """The perceptron learning rule on the last linear layer of ``model``, as an optimizer:
    ``step(images=x, labels=y)`` learns from a batch and returns the number of mistakes (a tensor)."""

    def __init__(self, model: nn.Module, lr: float, zero: bool = True) -> None:
        self.model = model
        self.layer = model.get_classifier()
        if not isinstance(self.layer, nn.Linear) or self.layer.bias is None:
            raise OptionError("--optimizer perceptron needs a linear layer with a bias (--arch perceptron)")
        super().__init__([self.layer.weight, self.layer.bias], {"lr": lr, "weight_decay": 0.0})
        if zero:  # the classic start, w = 0
            with torch.no_grad():
                self.layer.weight.zero_()
                self.layer.bias.zero_()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, *, images: torch.Tensor | None = None,
             labels: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if images is None or labels is None:
            raise TypeError("PerceptronRule.step takes the batch: step(images=..., labels=...)")
        eta = float(self.param_groups[0]["lr"])
        # The rule reads what the linear layer reads: the flattened image (a perceptron has no hidden layer).
        x = self.model.forward_head(self.model.forward_features(images), pre_logits=True).float()
        return learn(self.layer.weight, self.layer.bias, x, labels, eta)


def learn(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, labels: torch.Tensor, eta: float) -> torch.Tensor:
    """The sequential rule over the rows of ``x`` in order, in place on ``weight`` (K x D) and ``bias`` (K);
    returns the number of mistakes. K is 1 (one vector, labels 0/1 read as -1/+1), 2 (the vector w1 - w0) or
    the number of classes."""
    k = weight.shape[0]
    n = len(labels)
    mistakes = torch.zeros((), dtype=torch.int64, device=x.device)
    start = 0
    while start < n:
        rest = x[start:]
        scores = rest @ weight.T + bias
        wrong = _mistakes(scores, labels[start:], k)
        found = torch.nonzero(wrong)
        if len(found) == 0:
            break
        i = start + int(found[0, 0])
        y = int(labels[i])
        if k <= 2:  # the binary rule: w += eta y x
            sign = 1.0 if y == 1 else -1.0
            if k == 1:
                weight[0].add_(x[i], alpha=eta * sign)
                bias[0] += eta * sign
            else:
                for row, half in ((1, 0.5), (0, -0.5)):
                    weight[row].add_(x[i], alpha=eta * sign * half)
                    bias[row] += eta * sign * half
        else:
            p = int(scores[i - start].argmax())
            weight[y].add_(x[i], alpha=eta)
            bias[y] += eta
            weight[p].add_(x[i], alpha=-eta)
            bias[p] -= eta
        mistakes += 1
        start = i + 1
    return mistakes


def _mistakes(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 2:
        margin = scores[:, 0] if k == 1 else scores[:, 1] - scores[:, 0]
        return (labels * 2 - 1).to(margin.dtype) * margin <= 0
    return scores.argmax(1) != labels
