"""``cvkit train``: train a classifier on a prepared dataset into a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cvkit.cli.common import emit, handle_errors, seed_or_global, state
from cvkit.errors import OptionError
from cvkit.progress import console

MODEL = "Model"
OPTIM = "Optimization"
SPEED = "Speed"


@handle_errors
def train_command(
    data: Annotated[Optional[Path], typer.Argument(help="A dataset directory written by 'cvkit prepare'.")] = None,
    arch: Annotated[str, typer.Option(help="Architecture: see 'cvkit models'.", rich_help_panel=MODEL)] = "smallcnn",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The run directory (default: runs/ARCH).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs to train [default: 5; with --resume, the run's, "
                                                       "or more to extend it].", rich_help_panel=OPTIM)] = None,
    batch_size: Annotated[int, typer.Option(help="Images per step.", rich_help_panel=OPTIM)] = 128,
    optimizer: Annotated[str, typer.Option(help="sgd, adam or adamw.", rich_help_panel=OPTIM)] = "adam",
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate (default: sgd 0.1, adam/adamw 3e-3, "
                                                     "times batch size / 128).", rich_help_panel=OPTIM)] = None,
    momentum: Annotated[float, typer.Option(help="SGD momentum.", rich_help_panel=OPTIM)] = 0.9,
    nesterov: Annotated[bool, typer.Option(help="Nesterov momentum for SGD.", rich_help_panel=OPTIM)] = True,
    weight_decay: Annotated[Optional[float], typer.Option(help="Weight decay, not on biases and norm layers "
                                                          "(default: sgd 5e-4, adam 0, adamw 0.05).",
                                                          rich_help_panel=OPTIM)] = None,
    schedule: Annotated[str, typer.Option(help="onecycle, cosine, step or none.", rich_help_panel=OPTIM)] = "onecycle",
    warmup: Annotated[float, typer.Option(help="Warm-up epochs (linear).", rich_help_panel=OPTIM)] = 0.0,
    step_size: Annotated[int, typer.Option(help="'step' schedule: epochs between lr drops.", rich_help_panel=OPTIM)] = 30,
    gamma: Annotated[float, typer.Option(help="'step' schedule: lr factor at each drop.", rich_help_panel=OPTIM)] = 0.1,
    label_smoothing: Annotated[float, typer.Option(help="Label smoothing.", rich_help_panel=OPTIM)] = 0.0,
    loss: Annotated[str, typer.Option(help="ce, bce (two classes: one sigmoid output) or mse.",
                                      rich_help_panel=OPTIM)] = "ce",
    class_weights: Annotated[Optional[str], typer.Option(help="'auto': weight classes by inverse frequency.",
                                                         rich_help_panel=OPTIM)] = None,
    patience: Annotated[Optional[int], typer.Option(help="Early stopping: epochs without improvement of --monitor.",
                                                    rich_help_panel=OPTIM)] = None,
    monitor: Annotated[str, typer.Option(help="val_acc or val_loss: picks the best epoch.", rich_help_panel=OPTIM)] = "val_acc",
    lr_find: Annotated[bool, typer.Option("--lr-find", help="Run the learning-rate range test (plot + suggestion) "
                                                             "instead of training.", rich_help_panel=OPTIM)] = False,
    head: Annotated[str, typer.Option(help="auto (the architecture's own), fc (classic fully connected) or gap "
                                           "(global average pooling + one linear layer).", rich_help_panel=MODEL)] = "auto",
    activation: Annotated[Optional[str], typer.Option(help="relu, leaky_relu, elu, tanh, sigmoid, gelu.",
                                                      rich_help_panel=MODEL)] = None,
    dropout: Annotated[Optional[float], typer.Option(help="Dropout probability.", rich_help_panel=MODEL)] = None,
    batchnorm: Annotated[Optional[bool], typer.Option("--batchnorm/--no-batchnorm", help="Batch normalization "
                                                      "(cvkit's own nets).", rich_help_panel=MODEL)] = None,
    hidden: Annotated[Optional[str], typer.Option(help="mlp: hidden layer widths, e.g. 512,256.",
                                                  rich_help_panel=MODEL)] = None,
    init: Annotated[str, typer.Option(help="default, xavier, he or normal.", rich_help_panel=MODEL)] = "default",
    pretrained: Annotated[bool, typer.Option("--pretrained", help="Start from timm/torchvision pretrained weights "
                                                                  "(needs the network).", rich_help_panel=MODEL)] = False,
    weights: Annotated[Optional[Path], typer.Option(help="Start from a local safetensors file or state dict.",
                                                    rich_help_panel=MODEL)] = None,
    freeze: Annotated[Optional[str], typer.Option(help="'backbone' (train the head only) or N (the head and the "
                                                       "last N blocks).", rich_help_panel=MODEL)] = None,
    unfreeze_after: Annotated[Optional[int], typer.Option(help="Unfreeze everything after this many epochs.",
                                                          rich_help_panel=MODEL)] = None,
    backbone_lr_scale: Annotated[float, typer.Option(help="Backbone lr as a fraction of the head's once unfrozen.",
                                                     rich_help_panel=MODEL)] = 0.1,
    hflip: Annotated[float, typer.Option(help="Probability of a horizontal flip (0 for digits or text).")] = 0.5,
    translate: Annotated[float, typer.Option(help="Random shift up to this fraction of the size (pad-and-crop; 0.0625 is 2 px at 28 px, worth it for runs of 15+ epochs).")] = 0.0,
    precision: Annotated[str, typer.Option(help="auto (time the candidates), fp32, bf16 or fp16.",
                                           rich_help_panel=SPEED)] = "auto",
    memory_format: Annotated[str, typer.Option(help="auto, channels_last or contiguous.", rich_help_panel=SPEED)] = "auto",
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model (slow to start).",
                                          rich_help_panel=SPEED)] = False,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the run in this directory from its last.ckpt.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed (default: the global --seed).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it already holds a run.")] = False,
) -> None:
    """Train --arch on DATA's train split, pick the best epoch on val, and write a run directory.

    The run holds model.safetensors (best epoch), model.json, last.ckpt, metrics.csv, config.json and curves.png.

    Example: cvkit train data/fmnist --arch smallcnn --epochs 5 --out runs/fmnist
    """
    from cvkit.train import TrainConfig, fit, load_config
    from cvkit.train import lr_find as run_lr_find

    if resume is not None:
        cfg = load_config(resume)
        cfg.out = str(resume)
        if epochs is not None:
            cfg.epochs = epochs
        result = fit(cfg, resume=resume)
    else:
        if data is None:
            raise OptionError("give DATA, a dataset directory (or --resume RUN)")
        hidden_list = [int(h) for h in hidden.split(",")] if hidden else None
        cfg = TrainConfig(
            data=str(data), out=str(out or Path("runs") / arch), arch=arch, head=head, activation=activation,
            dropout=dropout, batchnorm=batchnorm, hidden=hidden_list, init=init, pretrained=pretrained,
            weights=str(weights) if weights else None, freeze=freeze, unfreeze_after=unfreeze_after,
            backbone_lr_scale=backbone_lr_scale, epochs=epochs or 5, batch_size=batch_size, optimizer=optimizer, lr=lr,
            momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, schedule=schedule, warmup=warmup,
            step_size=step_size, gamma=gamma, label_smoothing=label_smoothing, loss=loss, class_weights=class_weights,
            patience=patience, monitor=monitor, hflip=hflip, translate=translate, precision=precision,
            memory_format=memory_format, compile=compile, seed=seed_or_global(seed), device=state.device)
        if lr_find:
            found = run_lr_find(cfg)
            if not state.quiet:
                hint = f"suggested --lr {found.suggestion:.3g}" if found.suggestion else "no suggestion (too few steps)"
                console.print(f"lr range test: {hint}; plot in {found.png}")
            emit(str(found.png))
            return
        result = fit(cfg, force=force)
    if not state.quiet:
        _summary(result)
    emit(str(result.run))


def _summary(result) -> None:
    from rich.table import Table

    table = Table(title=f"{result.run}")
    for col in ("best epoch", result.monitor, "epochs run", "seconds", "images/s (last)"):
        table.add_column(col, justify="right")
    last = result.history[-1] if result.history else {}
    table.add_row(str(result.best_epoch), f"{result.best_metric:.4f}" if result.best_metric is not None else "-",
                  str(result.epochs_run) + (" (early stop)" if result.stopped_early else ""), f"{result.seconds:.1f}",
                  f"{last.get('images_per_s', 0):,.0f}")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
