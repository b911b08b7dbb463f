"""Check cvkit's Fashion-MNIST defaults on the VAL split: each candidate setting trained over a few
seeds, scored by the best val accuracy of its run (the epoch choice is made on val too). The test
split is never evaluated here: defaults must not be tuned on it.

Usage: python bench/bench_defaults_val.py [--grid "translate=0,0.0625 dropout=0.25,0.5"] [--seeds 0,1]
Writes bench/results/defaults_val.json: per setting, the best val accuracy per seed, mean and std.
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import pandas as pd

from common import CVKIT, WORK, run_measured, write_result
from bench_train_fmnist import dataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", default="translate=0,0.0625 dropout=0.25,0.5")
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args()
    axes = {k: v.split(",") for k, v in (item.split("=") for item in args.grid.split())}
    seeds = [int(s) for s in args.seeds.split(",")]
    data = dataset()
    results = []
    for values in itertools.product(*axes.values()):
        setting = dict(zip(axes, values))
        flags = [x for k, v in setting.items() for x in (f"--{k.replace('_', '-')}", v)]
        per_seed = []
        for seed in seeds:
            run = WORK / "runs" / ("val_" + "_".join(f"{k}{v}" for k, v in setting.items()) + f"_s{seed}")
            seconds, _, _ = run_measured(CVKIT + ["-q", "train", str(data), "--out", str(run), "--force",
                                                  "--seed", str(seed), *flags])
            history = pd.read_csv(run / "metrics.csv")
            per_seed.append({"seed": seed, "best_val_acc": round(float(history["val_acc"].max()), 4),
                             "train_wall_seconds": round(seconds, 1)})
            print(json.dumps({**setting, **per_seed[-1]}), flush=True)
        accs = np.array([r["best_val_acc"] for r in per_seed])
        results.append({"setting": setting, "val_acc_mean": round(float(accs.mean()), 4),
                        "val_acc_std": round(float(accs.std()), 4), "runs": per_seed})
    results.sort(key=lambda r: -r["val_acc_mean"])
    write_result("defaults_val", {"split": "val (best epoch's val accuracy); test never evaluated",
                                  "seeds": seeds, "results": results})


if __name__ == "__main__":
    main()
