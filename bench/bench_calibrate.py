"""``evaluate --calibrate`` (temperature scaling fit on val): test NLL and ECE before and after.

A default run (cvkit's defaults, label smoothing included) trains for a few epochs into WORK/runs;
``cvkit evaluate --calibrate`` fits the temperature on the val split and scores the test split once,
with the raw logits and with the temperature. The temperature is chosen on val only.

``--dataset fmnist``: Fashion-MNIST at 28 px (54k train / 6k val / 10k test, prepared once in WORK by common.py,
only read here). ``--dataset digits``: scikit-learn's digits at 8 px (70/15/15 split, built in WORK).
``--reuse``: keep a finished run of the same name instead of training it again.

Usage: python bench/bench_calibrate.py [--dataset fmnist|digits] [--epochs 2] [--seed 0] [--work DIR] [--reuse]
Writes bench/results/calibrate.json (one entry per dataset; the other dataset's entry is kept).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from common import CVKIT, RESULTS, WORK, run_measured, write_result
from bench_train_fmnist import dataset as fmnist


def digits(work: Path) -> Path:
    """scikit-learn's digits as 8 px PNGs, prepared (70/15/15) and normalized in WORK/digits (built once)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    out = work / "digits"
    if (out / "stats.json").is_file():
        return out
    src = work / "digits_src"
    found = load_digits()
    for i, (image, label) in enumerate(zip(found.images, found.target)):
        path = src / str(label) / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255 / 16).astype(np.uint8)).save(path)
    run_measured(CVKIT + ["-q", "prepare", str(src), "--out", str(out), "--size", "8", "--val", "0.15", "--test",
                          "0.15", "--force"])
    run_measured(CVKIT + ["-q", "normalize", str(out)])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", choices=("fmnist", "digits"), default="fmnist")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=WORK, help="where the runs go (Fashion-MNIST is only read)")
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    data = fmnist() if args.dataset == "fmnist" else digits(args.work)
    run = args.work / "runs" / f"calibrate_{args.dataset}_e{args.epochs}_seed{args.seed}"
    train_seconds = None
    if not (args.reuse and (run / "model.safetensors").is_file()):
        train_seconds, _, _ = run_measured(CVKIT + ["-q", "train", str(data), "--out", str(run), "--force",
                                                    "--epochs", str(args.epochs), "--seed", str(args.seed)])
    start = time.perf_counter()
    _, _, out = run_measured(CVKIT + ["-q", "evaluate", str(run), "--split", "test", "--calibrate", "--json"])
    seconds = time.perf_counter() - start
    metrics = json.loads(out)
    block, fit = metrics["calibration"], metrics["calibration"]["fit"]
    r = lambda v: round(float(v), 4)  # noqa: E731
    history = pd.read_csv(run / "metrics.csv")
    entry = {
        "epochs": args.epochs, "seed": args.seed, "train_wall_seconds": train_seconds and round(train_seconds, 1),
        "train_loop_seconds": round(float(history["seconds"].sum()), 1),
        "best_val_acc": r(history["val_acc"].max()),
        "calibrate_and_evaluate_wall_seconds": round(seconds, 1), "method": block["method"],
        "temperature": block["temperature"], "test_accuracy": r(metrics["accuracy"]), "tta": metrics["tta"],
        "val": {"count": fit["count"], "nll_before": r(fit["nll_before"]), "nll_after": r(fit["nll_after"]),
                "ece_before": r(fit["ece_before"]), "ece_after": r(fit["ece_after"])},
        "test": {"count": metrics["count"], "nll_before": r(block["nll_before"]), "nll_after": r(block["nll_after"]),
                 "ece_before": r(block["ece_before"]), "ece_after": r(block["ece_after"])}}
    path = RESULTS / "calibrate.json"
    kept = json.loads(path.read_text()).get("datasets", {}) if path.is_file() else {}
    write_result("calibrate", {"splits": "val fit the temperature; test read once per run",
                               "datasets": {**kept, args.dataset: entry}})


if __name__ == "__main__":
    main()
