"""Screen candidate nets and recipes for the Fashion-MNIST defaults on the VAL split, fast: each
candidate trains through cvkit's Trainer (the same steps as ``cvkit train``, without the run
directory), one seed, and is scored on val with and without flip TTA. What looks better here is
then measured over seeds through the CLI with bench_defaults_val.py; the test split is never read.

A candidate is a net and options:
- the net: ``WIDTH:CONVS`` per stage, for example ``16:2,32:2`` (smallcnn's default: two stages of
  two conv3x3-BN-ReLU layers, the second with a 2x2 max-pool, then the fc head);
- options: TrainConfig fields (``optimizer=sgd lr=0.006 batch_size=256``), ``hidden=512`` (the fc
  head's width), ``whiten=1`` (the first conv's filters set to the principal components of the
  normalized train images' 3x3 patches, plus their negatives: airbench's whitening initialization;
  ``whiten=2`` also freezes them), and ``ema=0.995`` (also score an exponential moving average of the weights,
  updated every step with timm's warm-up ``min(decay, (1 + n) / (10 + n))``).

Usage: python bench/bench_recipe_screen.py --candidates "16:2,32:2" "32:1,32:2 epochs=5" ... [--seed 0]
Writes bench/results/recipe_screen.json (rows measured before stay unless measured again).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from common import RESULTS, WORK, cpu, write_result
from bench_train_fmnist import dataset

from cvkit.files.config import TrainConfig
from cvkit.models.layers import Net, conv_block, fc_head
from cvkit.models.registry import register_model
from cvkit.progress import set_quiet
from cvkit.runtime.infer import predict_batches
from cvkit.train.ema import WeightAverage
from cvkit.train.trainer import Trainer

STAGES: list[tuple[int, int]] = []  # the candidate being built: (width, convs) per stage
HIDDEN: list[int] = [256]


@register_model("screen", head="fc", activation="relu", dropout=0.1, batchnorm=True)
def screen_net(num_outputs: int, in_chans: int, input_size: tuple[int, int], o) -> Net:
    stages, cin = [], in_chans
    for width, convs in STAGES:
        stages.append(nn.Sequential(*(conv_block(cin if j == 0 else width, width, 3, o.activation, True, 1,
                                                 pool=j == convs - 1) for j in range(convs))))
        cin = width
    features = nn.Sequential(*stages)
    with torch.no_grad():
        features.eval()
        flat = features(torch.zeros(1, in_chans, *input_size))[0].numel()
        features.train()
    return Net(features, fc_head(flat, HIDDEN, num_outputs, o.activation, o.dropout), cin, num_outputs,
               fixed_input_size=tuple(input_size))


def value(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def scores(trainer: Trainer, model: nn.Module) -> dict[str, float]:
    y = trainer.val_targets()
    p, _ = predict_batches(model, trainer.val_batches.epoch(), trainer.pre, trainer.task, trainer.precision)
    f, _ = predict_batches(model, trainer.val_batches.epoch(), trainer.pre, trainer.task, trainer.precision,
                           mirrored=True)
    return {"val_acc": round(float((p.argmax(1) == y).mean()), 4),
            "val_acc_flip_tta": round(float(((p + f).argmax(1) == y).mean()), 4)}


def whiten(trainer: Trainer, freeze: bool, batches: int = 20) -> None:
    """The first conv's filters from the eigenvectors of the train patches' covariance, scaled by
    1/sqrt(eigenvalue), each with its negative (airbench); frozen with ``freeze``."""
    conv = next(m for m in trainer.model.modules() if isinstance(m, nn.Conv2d))
    out, cin, k, _ = conv.weight.shape
    gen = torch.Generator().manual_seed(0)
    patches = []
    for i, (images, _) in enumerate(trainer.batches.epoch(gen)):
        if i == batches:
            break
        x = trainer.pre(images).float()
        patches.append(nn.functional.unfold(x, k).transpose(1, 2).reshape(-1, cin * k * k))
    p = torch.cat(patches)
    p = p - p.mean(0)
    values, vectors = torch.linalg.eigh(p.T @ p / len(p))
    order = values.argsort(descending=True)[: out // 2]
    filters = (vectors[:, order] / (values[order] + 1e-2).sqrt()).T.reshape(-1, cin, k, k)
    with torch.no_grad():
        conv.weight.copy_(torch.cat([filters, -filters]).to(conv.weight))
    conv.weight.requires_grad_(not freeze)


def screen(candidate: str, seed: int) -> dict:
    net, *options = candidate.split()
    STAGES[:] = [tuple(int(v) for v in stage.split(":")) for stage in net.split(",")]
    opts = {k: value(v) for k, v in (o.split("=") for o in options)}
    HIDDEN[:] = [int(opts.pop("hidden", 256))]
    decay = opts.pop("ema", None)
    whitened = int(opts.pop("whiten", 0))
    cfg = TrainConfig(data=str(dataset()), out=str(WORK / "runs" / "screen"), seed=seed, arch="screen",
                      **{"epochs": 5, **opts})
    started = time.perf_counter()
    trainer = Trainer.build(cfg)
    if whitened:
        whiten(trainer, freeze=whitened == 2)
    average = WeightAverage(trainer.model, decay) if decay else None
    built = time.perf_counter()
    steps = 0
    for _ in range(trainer.epochs):
        for images, labels in trainer.batches.epoch(trainer.order_gen):
            trainer.step(images, labels)
            steps += 1
            if average is not None:
                average.update(trainer.model)
        trainer.recalibrate_batchnorm()
    trained = time.perf_counter() - built
    row = {"candidate": candidate, "seed": seed, "params": sum(p.numel() for p in trainer.model.parameters()),
           **scores(trainer, trainer.model), "build_seconds": round(built - started, 1),
           "train_seconds": round(trained, 1), "ms_per_step": round(1000 * trained / steps, 1),
           "precision": trainer.precision, "memory_format": trainer.memory_format,
           "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu": cpu()}
    if average is not None:
        row["ema"] = {"decay": decay, **scores(trainer, average.model)}
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candidates", nargs="+", default=["16:2,32:2"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    set_quiet(True)
    rows = []
    for candidate in args.candidates:
        rows.append(screen(candidate, args.seed))
        print(json.dumps(rows[-1]), flush=True)
    path = RESULTS / "recipe_screen.json"
    earlier = json.loads(path.read_text()).get("results", []) if path.is_file() else []
    done = {(r["candidate"], r["seed"]) for r in rows}
    rows += [r for r in earlier if (r["candidate"], r["seed"]) not in done]
    write_result("recipe_screen", {"split": "val; test never evaluated", "epochs_default": 5, "results": rows})


if __name__ == "__main__":
    main()
