"""``--freeze`` and ``--unfreeze-after``: which parameters train, and the BatchNorm layers that stay put.

``--freeze backbone`` trains the head only; ``--freeze N`` the head and the last N block groups (stem to
last stage; N at least the number of groups trains every group). A frozen part keeps its BatchNorm
statistics as well as its weights: those layers stay in eval mode while the rest trains.
"""

from __future__ import annotations

from torch import nn

from cvkit.models import block_groups, head_parameter_names


class Freezer:
    def __init__(self, model: nn.Module, freeze: str | None) -> None:
        self.model, self.freeze = model, freeze
        head = head_parameter_names(model)
        self.backbone = {n for n, _ in model.named_parameters() if n not in head}
        self.modules: list[nn.Module] = []  # BatchNorm layers none of whose parameters train
        self.pinned: set[str] = set()  # parameters that never train, frozen or not (--whiten's filters)
        self.set(freeze is not None)

    def pin(self, names: set[str]) -> None:
        """Keep these parameters frozen from now on, through ``--unfreeze-after`` too."""
        self.pinned |= names
        self.set(self.freeze is not None)

    def set(self, frozen: bool) -> None:
        """Freeze as ``--freeze`` says, or (False) let every parameter train."""
        trainable = {n for n, _ in self.model.named_parameters()}
        if frozen:
            trainable -= self.backbone
            if self.freeze != "backbone":
                groups = block_groups(self.model)
                for group in groups[max(0, len(groups) - int(self.freeze)):]:
                    trainable |= set(group)
        trainable -= self.pinned
        for name, p in self.model.named_parameters():
            p.requires_grad_(name in trainable)
        self.modules = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                        and not any(p.requires_grad for p in m.parameters())]

    @property
    def frozen(self) -> bool:
        return any(not p.requires_grad for p in self.model.parameters())

    def train_mode(self) -> None:
        """Training mode, except for the frozen BatchNorm layers."""
        self.model.train()
        for m in self.modules:
            m.eval()
