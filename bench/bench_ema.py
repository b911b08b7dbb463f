"""``train --ema DECAY`` against no EMA on Fashion-MNIST, with cvkit's defaults otherwise, over seeds.

Each seed trains twice through the CLI, with and without ``--ema``, into WORK/runs, and each run is
scored on val (its best epoch, and with the flip TTA training chose there) and once on test
(``cvkit evaluate`` with its defaults). The EMA run's ``live_val_acc`` column is the trained weights'
own val accuracy in the same run. The decay was chosen on val by bench_recipe_screen.py.

Usage: python bench/bench_ema.py [--decay 0.995] [--seeds 0,1,2]
Writes bench/results/ema.json.
"""

from __future__ import annotations

import argparse
import json

import pandas as pd

from common import WORK, seed_summary, train_and_evaluate, write_result
from bench_train_fmnist import dataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decay", default="0.995")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    data = dataset()
    rows: dict[str, list[dict]] = {"no_ema": [], "ema": []}
    for seed in (int(s) for s in args.seeds.split(",")):
        for key, extra in (("no_ema", []), ("ema", ["--ema", args.decay])):
            name = f"ema_{key}_seed{seed}"
            one = train_and_evaluate(data, name, ["--seed", str(seed), *extra])
            history = pd.read_csv(WORK / "runs" / name / "metrics.csv")
            one["seed"] = seed
            one["val_acc_chosen"] = max(one["tta"]["plain"], one["tta"]["flip"]) if one.get("tta") else one["best_val_acc"]
            if "live_val_acc" in history:
                one["live_best_val_acc"] = round(float(history["live_val_acc"].max()), 4)
            rows[key].append(one)
            print(json.dumps({key: one}), flush=True)


    write_result("ema", {"decay": float(args.decay), "splits": "val chose the epoch, the TTA and the decay; test read "
                                                                "once per run", **{k: seed_summary(v) for k, v in rows.items()}})


if __name__ == "__main__":
    main()
