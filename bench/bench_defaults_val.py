"""Check cvkit's Fashion-MNIST defaults on the VAL split: each candidate setting trained over a few
seeds, scored by the best val accuracy of its run (the epoch choice is made on val too). The test
split is never evaluated here: defaults must not be tuned on it.

Usage: python bench/bench_defaults_val.py [--grid "translate=0,0.0625 dropout=0.25,0.5"] [--seeds 0,1]
                                         [--result defaults_val] [--add-seeds]
Writes bench/results/RESULT.json: per setting, the best val accuracy per seed, mean and std, and the
training wall time. Settings measured before (in the file) stay unless measured again, so several
grids can be compared in one table; each setting records when and on which CPU it was measured.
``--add-seeds``: the new seeds join the runs the file already holds for the same setting (a tie on
two seeds settled with more), and the means are taken over all of them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common import CVKIT, RESULTS, WORK, cpu, run_measured, write_result
from bench_train_fmnist import dataset


def val_with_tta(run: Path) -> float:
    """The run's best weights on the val split with flip test-time augmentation (evaluate --tta)."""
    _, _, out = run_measured(CVKIT + ["-q", "evaluate", str(run), "--split", "val", "--tta", "--json",
                                      "--out", str(run / "eval_val_tta")])
    return round(float(json.loads(out)["accuracy"]), 4)


def summarize(setting: dict, runs: list[dict], note: str | None = None) -> dict:
    """One setting's row: means over its runs (one per seed), when and where it was measured."""
    accs = np.array([r["best_val_acc"] for r in runs])
    tta = np.array([r["val_acc_flip_tta"] for r in runs])
    wall = np.array([r["train_wall_seconds"] for r in runs])
    row = {"setting": setting, "val_acc_mean": round(float(accs.mean()), 4), "val_acc_std": round(float(accs.std()), 4),
           "val_acc_flip_tta_mean": round(float(tta.mean()), 4), "val_acc_flip_tta_std": round(float(tta.std()), 4),
           "train_wall_seconds_mean": round(float(wall.mean()), 1),
           "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu": cpu(), "runs": runs}
    return {**row, "note": note} if note else row


def add_seeds(row: dict, earlier: list[dict]) -> dict:
    """``row`` with the earlier runs of its setting (seeds it did not measure again) joined to it."""
    before = next((r for r in earlier if r["setting"] == row["setting"]), None)
    if before is None:
        return row
    new = {r["seed"] for r in row["runs"]}
    kept = [r for r in before["runs"] if r["seed"] not in new]
    note = (f"seeds {', '.join(str(r['seed']) for r in kept)} measured {before['measured_at']}, "
            f"seeds {', '.join(str(s) for s in sorted(new))} added {row['measured_at']}")
    return summarize(row["setting"], sorted(kept + row["runs"], key=lambda r: r["seed"]), note)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", default="translate=0,0.0625 dropout=0.25,0.5")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--result", default="defaults_val")
    parser.add_argument("--add-seeds", action="store_true", help="merge into the file's runs of the same setting")
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
                             "val_acc_flip_tta": val_with_tta(run), "train_wall_seconds": round(seconds, 1)})
            print(json.dumps({**setting, **per_seed[-1]}), flush=True)
        results.append(summarize(setting, per_seed))
    path = RESULTS / f"{args.result}.json"
    earlier = json.loads(path.read_text()).get("results", []) if path.is_file() else []
    if args.add_seeds:
        results = [add_seeds(r, earlier) for r in results]
    measured = [r["setting"] for r in results]
    results += [r for r in earlier if r["setting"] not in measured]
    results.sort(key=lambda r: -r["val_acc_mean"])
    write_result(args.result, {"split": "val (best epoch's val accuracy); test never evaluated", "results": results})


if __name__ == "__main__":
    main()
