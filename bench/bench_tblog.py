"""``train --log tensorboard``: what it costs, and that ``--log none`` leaves the training step as it was.

On the prepared Fashion-MNIST (28 px, the default smallcnn, batch 128, fp32 contiguous, one thread):
- the default training step (``Trainer.step`` on one real batch; median of alternating rounds), in
  this tree and, with ``--baseline DIR`` (a checkout of the commit before ``--log``), in that one, each
  in its own process, in rounds where each goes first in turn, so that the machine's drift falls on both alike;
- the step that keeps the epoch's first batch (once an epoch with ``--log tensorboard``);
- opening the TensorBoard writer (the import included) and an epoch's logging: the scalars of a
  metrics.csv row, the augmented batch's grid and the val confusion matrix picture (on the val split's
  real probabilities), against the epoch's training steps.

Usage: python bench/bench_tblog.py [--data /tmp/cvkit-bench/fmnist] [--baseline DIR] [--rounds 3] [--steps 40]
Writes bench/results/tblog.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import HERE, WORK, write_result

STEP_TIMER = r"""
import json, sys, time
import torch
from cvkit.files.config import TrainConfig
from cvkit.train.trainer import Trainer

torch.set_num_threads(1)
cfg = TrainConfig(data=sys.argv[1], out=sys.argv[2], epochs=1, batch_size=128, precision="fp32",
                  memory_format="contiguous", seed=0)
trainer = Trainer.build(cfg)
images, labels = next(trainer.batches.epoch(torch.Generator().manual_seed(0)))
for _ in range(5):
    trainer.step(images, labels)
times = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    trainer.step(images, labels)
    times.append(time.perf_counter() - start)
print(json.dumps({"step_ms": sorted(times)[len(times) // 2] * 1000, "steps_per_epoch": len(trainer.batches)}))
"""


def step_ms(tree: Path, data: Path, steps: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(dir=WORK) as out:
        done = subprocess.run([sys.executable, "-c", STEP_TIMER, str(data), out, str(steps)], env=env,
                              capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def logging_costs(data: Path, steps: int) -> dict:
    """In this process (this tree): the writer's opening, the step that keeps the batch, an epoch's logging."""
    import torch

    from cvkit.files.config import TrainConfig
    from cvkit.train.logbook import EpochLog
    from cvkit.train.trainer import Trainer

    torch.set_num_threads(1)
    cfg = TrainConfig(data=str(data), out="unused", epochs=1, batch_size=128, precision="fp32",
                      memory_format="contiguous", seed=0, log="tensorboard")
    trainer = Trainer.build(cfg)
    images, labels = next(trainer.batches.epoch(torch.Generator().manual_seed(0)))
    for _ in range(5):
        trainer.step(images, labels)
    with tempfile.TemporaryDirectory(dir=WORK) as run:
        start = time.perf_counter()
        log = EpochLog(trainer, Path(run), 1)
        open_s = time.perf_counter() - start
        keep = []
        for _ in range(steps):
            log.start_epoch()
            start = time.perf_counter()
            trainer.step(images, labels)
            keep.append(time.perf_counter() - start)
        val_loss, val_acc, probs = trainer.validate()
        row = {"epoch": 1, "train_loss": 0.5, "train_acc": 0.8, "val_loss": val_loss, "val_acc": val_acc,
               "lr": 1e-3, "seconds": 10.0, "images_per_s": 5000.0}
        ends = []
        for epoch in range(1, 6):
            log.start_epoch()
            trainer.step(images, labels)
            start = time.perf_counter()
            log.end_epoch(epoch, {**row, "epoch": epoch}, probs)
            ends.append(time.perf_counter() - start)
        log.close()
        event_bytes = sum(p.stat().st_size for p in (Path(run) / "tensorboard").iterdir())
    return {"writer_open_seconds": round(open_s, 2), "step_keeping_the_batch_ms": round(statistics.median(keep) * 1000, 2),
            "end_epoch_ms_median_of_5": round(statistics.median(ends) * 1000, 1),
            "end_epoch_ms_first": round(ends[0] * 1000, 1), "event_bytes_per_epoch": event_bytes // 5,
            "val_images": int(len(probs))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=WORK / "fmnist")
    parser.add_argument("--baseline", type=Path, help="a checkout of cvkit before --log (its repository root)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    trees = {"this": HERE.parent, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    rounds: dict[str, list[float]] = {name: [] for name in trees}
    steps_per_epoch = 0
    for i in range(args.rounds):
        for name, tree in (list(trees.items()) if i % 2 == 0 else list(trees.items())[::-1]):  # each goes first in turn
            one = step_ms(tree, args.data, args.steps)
            rounds[name].append(round(one["step_ms"], 2))
            steps_per_epoch = one["steps_per_epoch"]
            print(json.dumps({name: one}), flush=True)
    costs = logging_costs(args.data, args.steps)
    default_step = statistics.median(rounds["this"])
    epoch_ms = default_step * steps_per_epoch
    result = {
        "data": str(args.data), "setting": "smallcnn defaults, batch 128, fp32 contiguous, 1 thread",
        "default_step_ms": {name: {"median": round(statistics.median(v), 2), "rounds": v} for name, v in rounds.items()},
        "steps_per_epoch": steps_per_epoch, **costs,
        "end_epoch_share_of_epoch_steps": round(costs["end_epoch_ms_median_of_5"] / epoch_ms, 4),
    }
    if "baseline" in rounds:
        result["default_step_ratio_this_over_baseline"] = round(default_step / statistics.median(rounds["baseline"]), 3)
    write_result("tblog", result)


if __name__ == "__main__":
    main()
