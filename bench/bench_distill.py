"""``train --teacher RUN`` against the same student alone on Fashion-MNIST, over seeds.

The teacher is a wider cvkit net (smallcnn --base 32) trained once for --teacher-epochs on the train split
(its epoch chosen on val). Each seed then trains the default student twice through the CLI, alone and with
``--teacher`` (default --kd-weight and --kd-temperature), into WORK/runs; each run is scored on val (its
best epoch, and with the flip TTA training chose there) and once on test (``cvkit evaluate`` with its
defaults).

Usage: python bench/bench_distill.py [--seeds 0,1,2] [--teacher-epochs 12]
Writes bench/results/distill.json.
"""

from __future__ import annotations

import argparse
import json

from common import WORK, seed_summary, train_and_evaluate, write_result
from cvkit.train.distill import DEFAULT_TEMPERATURE, DEFAULT_WEIGHT
from bench_train_fmnist import dataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--teacher-epochs", default="12")
    args = parser.parse_args()
    data = dataset()
    teacher = train_and_evaluate(data, "distill_teacher", ["--base", "32", "--epochs", args.teacher_epochs])
    print(json.dumps({"teacher": teacher}), flush=True)
    rows: dict[str, list[dict]] = {"alone": [], "teacher": []}
    for seed in (int(s) for s in args.seeds.split(",")):
        for key, extra in (("alone", []), ("teacher", ["--teacher", str(WORK / "runs" / "distill_teacher")])):
            one = train_and_evaluate(data, f"distill_{key}_seed{seed}", ["--seed", str(seed), *extra])
            one["seed"] = seed
            one["val_acc_chosen"] = max(one["tta"]["plain"], one["tta"]["flip"]) if one.get("tta") else one["best_val_acc"]
            rows[key].append(one)
            print(json.dumps({key: one}), flush=True)


    write_result("distill", {"splits": "val chose each run's epoch and TTA; test read once per run",
                             "kd_weight": DEFAULT_WEIGHT, "kd_temperature": DEFAULT_TEMPERATURE, "teacher_run": teacher,
                             **{k: seed_summary(v) for k, v in rows.items()}})


if __name__ == "__main__":
    main()
