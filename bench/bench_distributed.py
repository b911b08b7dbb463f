"""One process against two (torchrun, Gloo on the CPU) on the same global batch: accuracy and time.

Two datasets, each over seeds 0, 1, 2 with train's defaults (global batch 128):
- scikit-learn's digits (prepared at 8 px: about 1,440 train images, --epochs auto);
- Fashion-MNIST (60,000 images at 28 px; --epochs 2 to bound the time), unless --only digits.
For each run: val accuracy (chose the epoch) and test accuracy (evaluate --split test, read once per run),
the train command's wall seconds. Two processes on 2 cores run one thread each (torchrun's default);
one process runs two. Usage: python bench/bench_distributed.py [--only digits|fmnist]
Results: bench/results/distributed.json.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from bench_small_data import digits_source
from common import CVKIT, RESULTS, WORK, fmnist_dataset, run_measured, write_result

SEEDS = (0, 1, 2)
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "cvkit"]


def digits_dataset() -> str:
    data = WORK / "digits_dist"
    if not (data / "stats.json").is_file():
        run_measured(CVKIT + ["-q", "prepare", str(digits_source()), "--out", str(data), "--size", "8", "--force"])
        run_measured(CVKIT + ["-q", "normalize", str(data)])
    return str(data)


def one(data: str, name: str, processes: int, seed: int, extra: list[str]) -> dict:
    run = WORK / "runs" / f"dist_{name}_{processes}p_{seed}"
    launcher = CVKIT if processes == 1 else TORCHRUN
    seconds, _, _ = run_measured(launcher + ["-q", "train", data, "--out", str(run), "--force", "--seed", str(seed),
                                             *extra])
    test = json.loads(run_measured(CVKIT + ["-q", "evaluate", str(run), "--split", "test", "--json"])[2])
    model = json.loads((run / "model.json").read_text())
    return {"seed": seed, "val_acc": round(model["val_acc"], 4), "test_acc": round(test["accuracy"], 4),
            "train_wall_seconds": round(seconds, 1), "best_epoch": model["epoch"]}


def spread(runs: list[dict], key: str) -> dict:
    values = np.array([r[key] for r in runs], dtype=float)
    return {"mean": round(float(values.mean()), 4), "std": round(float(values.std()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=("digits", "fmnist"))
    args = parser.parse_args()
    plans: dict = {"digits": (digits_dataset, []), "fmnist": (lambda: str(fmnist_dataset()), ["--epochs", "2"])}
    result = {"seeds": list(SEEDS), "global_batch": 128}
    old = RESULTS / "distributed.json"
    if args.only and old.is_file():  # keep the other dataset's figures
        result.update({k: v for k, v in json.loads(old.read_text()).items() if k in plans and k != args.only})
    for name, (make, extra) in plans.items():
        if args.only and name != args.only:
            continue
        data = make()
        result[name] = {"train_args": extra}
        for processes in (1, 2):
            runs = [one(data, name, processes, seed, extra) for seed in SEEDS]
            result[name][f"{processes}_process"] = {"runs": runs, **{k: spread(runs, k) for k in
                                                                      ("val_acc", "test_acc", "train_wall_seconds")}}
    write_result("distributed", result)


if __name__ == "__main__":
    main()
