"""``evaluate --calibrate`` (temperature scaling fit on val) on Fashion-MNIST: NLL and ECE before and after.

A default run trains for a few epochs (cvkit's defaults otherwise, label smoothing included) into
WORK/runs; ``cvkit evaluate --calibrate`` fits the temperature on the val split (6k images) and scores the
test split once, reporting its NLL and ECE with the raw logits and with the temperature. The temperature
is chosen on val only.

Usage: python bench/bench_calibrate.py [--epochs 2] [--seed 0] [--work DIR]
Writes bench/results/calibrate.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import CVKIT, WORK, run_measured, write_result
from bench_train_fmnist import dataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=WORK, help="where the run goes (the dataset is only read)")
    args = parser.parse_args()
    data = dataset()
    run = args.work / "runs" / f"calibrate_seed{args.seed}"
    train_seconds, _, _ = run_measured(CVKIT + ["-q", "train", str(data), "--out", str(run), "--force", "--epochs",
                                                str(args.epochs), "--seed", str(args.seed)])
    start = time.perf_counter()
    _, _, out = run_measured(CVKIT + ["-q", "evaluate", str(run), "--split", "test", "--calibrate", "--json"])
    seconds = time.perf_counter() - start
    metrics = json.loads(out)
    block = metrics["calibration"]
    fit = block["fit"]
    r = lambda v: round(float(v), 4)  # noqa: E731
    write_result("calibrate", {
        "dataset": "Fashion-MNIST, 28 px (54k train / 6k val / 10k test)", "epochs": args.epochs, "seed": args.seed,
        "splits": "val fit the temperature; test read once", "train_wall_seconds": round(train_seconds, 1),
        "calibrate_and_evaluate_wall_seconds": round(seconds, 1), "method": block["method"],
        "temperature": block["temperature"], "test_accuracy": r(metrics["accuracy"]), "tta": metrics["tta"],
        "val": {"count": fit["count"], "nll_before": r(fit["nll_before"]), "nll_after": r(fit["nll_after"]),
                "ece_before": r(fit["ece_before"]), "ece_after": r(fit["ece_after"])},
        "test": {"count": metrics["count"], "nll_before": r(block["nll_before"]), "nll_after": r(block["nll_after"]),
                 "ece_before": r(block["ece_before"]), "ece_after": r(block["ece_after"])}})


if __name__ == "__main__":
    main()
