"""Small datasets through the CLI with default options, over seeds 0, 1, 2.

Three datasets: scikit-learn's digits (1797 8x8 grayscale images, prepared at --size 8 with the
default 0.1/0.1 val/test fractions: about 1,440 train images, 11 optimizer steps per epoch at batch
128) and the demo pipeline on sample_data/fashion (200 images, --size 28 --val 0.2 --test 0.2: 120
train images, one step per epoch), and fmnist100: 100 Fashion-MNIST training images per class (1,000;
20 per class from the IDX train file as val, 100 per class from the IDX test file as test). For each seed: prepare, normalize, train (defaults, plus any
--demo-train-args for the demo), evaluate on val and on test. Recorded: val and test accuracy (mean
and population std over the seeds), the mean top probability on test (near 1/K when BatchNorm's
running statistics are not settled), train wall seconds and epochs run.

Every step runs as `python -m cvkit` in a subprocess, so PYTHONPATH selects the code measured:
  PYTHONPATH=/path/to/checkout python bench/bench_small_data.py --label before

Usage: python bench/bench_small_data.py [--label NAME] [--only digits,demo] [--demo-train-args "--epochs 15"]
Results go under bench/results/small_data.json[NAME] (other labels are kept; a partial --only run
keeps the label's other part), each stamped measured_at and the commit of the code it ran.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import CVKIT, HERE, METADATA_KEYS, RESULTS, WORK, need_fmnist, run_measured, write_result

SEEDS = (0, 1, 2)
DEMO_SRC = HERE.parent / "sample_data" / "fashion"
PARTS = ("digits", "demo", "fmnist100")
FMNIST_PER_CLASS = {"train": 100, "val": 20, "test": 100}  # fmnist100: images per class in each split
# Top-level keys write_result adds: a label may not take one of these names.
RESERVED = set(METADATA_KEYS)


def digits_source() -> Path:
    """scikit-learn's digits as class folders WORK/digits_src/<digit>/<i>.png (built once, deterministic)."""
    src = WORK / "digits_src"
    if (src / "done").is_file():
        return src
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # values 0-16 -> 0-255
    tmp = WORK / "digits_src.tmp"
    subprocess.run(["rm", "-rf", str(tmp), str(src)], check=True)
    for i, (image, label) in enumerate(zip(images, digits.target)):
        folder = tmp / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(folder / f"{i}.png")
    (tmp / "done").write_text(f"{len(images)}\n")
    tmp.rename(src)
    return src


def fmnist100_source() -> Path:
    """Fashion-MNIST with 100 training images per class: WORK/fmnist100_src/{train,val,test}/<class>/<i>.png,
    train and val from the IDX train file (distinct images), test from the IDX test file (built once)."""
    from bench_multilabel import idx_items

    src = WORK / "fmnist100_src"
    if (src / "done").is_file():
        return src
    from PIL import Image

    tmp = WORK / "fmnist100_src.tmp"
    subprocess.run(["rm", "-rf", str(tmp), str(src)], check=True)
    train = idx_items(need_fmnist(), FMNIST_PER_CLASS["train"] + FMNIST_PER_CLASS["val"], "train")
    test = idx_items(need_fmnist(), FMNIST_PER_CLASS["test"], "t10k")
    splits = {"train": {k: v[:FMNIST_PER_CLASS["train"]] for k, v in train.items()},
              "val": {k: v[FMNIST_PER_CLASS["train"]:] for k, v in train.items()}, "test": test}
    for split, items in splits.items():
        for name, images in items.items():
            folder = tmp / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(images):
                Image.fromarray(image, mode="L").save(folder / f"{i}.png")
    (tmp / "done").write_text("ok\n")
    tmp.rename(src)
    return src


def code_version() -> dict:
    """Where the cvkit that `python -m cvkit` imports lives, and its git commit."""
    out = subprocess.run([sys.executable, "-c", "import cvkit, os; print(os.path.dirname(cvkit.__file__)); "
                          "print(cvkit.__version__)"], capture_output=True, text=True, check=True).stdout.split()
    package, version = out[0], out[1]
    root = str(Path(package).parent)

    def git(*args: str) -> str | None:
        proc = subprocess.run(["git", "-C", root, *args], capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else None

    return {"package": package, "cvkit_version": version, "commit": git("rev-parse", "--short", "HEAD"),
            "describe": git("describe", "--always", "--dirty"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def top_probability(predictions: Path) -> float:
    import pandas as pd

    frame = pd.read_csv(predictions)
    probs = frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy()
    return float(probs.max(axis=1).mean())


def one_seed(name: str, source: Path, seed: int, label: str, prepare_args: list[str], train_args: list[str]) -> dict:
    import pandas as pd

    base = WORK / "small_data" / label
    data, run = base / f"{name}_s{seed}", base / "runs" / f"{name}_s{seed}"
    cli = CVKIT + ["-q", "--seed", str(seed)]
    run_measured(cli + ["prepare", str(source), "--out", str(data), *prepare_args, "--force"])
    run_measured(cli + ["normalize", str(data)])
    seconds, rss, _ = run_measured(cli + ["train", str(data), "--out", str(run), "--force", *train_args])
    metrics = {split: json.loads(run_measured(cli + ["evaluate", str(run), "--split", split, "--json"])[2])
               for split in ("val", "test")}
    history = pd.read_csv(run / "metrics.csv")
    counts = json.loads((data / "dataset.json").read_text())["counts"]
    model = json.loads((run / "model.json").read_text())
    resolved = json.loads((run / "config.json").read_text())["resolved"]
    return {"seed": seed, "val_acc": round(metrics["val"]["accuracy"], 4),
            "test_acc": round(metrics["test"]["accuracy"], 4),
            "test_mean_top_prob": round(top_probability(run / "eval_test" / "predictions.csv"), 4),
            "train_wall_seconds": round(seconds, 1), "train_loop_seconds": round(float(history["seconds"].sum()), 1),
            "epochs_run": int(len(history)), "best_epoch": int(model["epoch"]),
            "last_train_acc": round(float(history["train_acc"].iloc[-1]), 4),
            "last_epoch_val_acc": round(float(history["val_acc"].iloc[-1]), 4),
            "peak_rss_mib": round(rss / 2**20), "precision": resolved.get("precision"),
            "memory_format": resolved.get("memory_format"), "counts": counts}


def dataset_result(name: str, source: Path, label: str, prepare_args: list[str], train_args: list[str]) -> dict:
    runs = []
    for seed in SEEDS:
        runs.append(one_seed(name, source, seed, label, prepare_args, train_args))
        print(json.dumps({name: runs[-1]}), flush=True)

    def spread(key: str) -> dict:
        values = np.array([r[key] for r in runs], dtype=np.float64)
        return {"mean": round(float(values.mean()), 4), "std": round(float(values.std()), 4)}  # population std

    return {"prepare_args": prepare_args, "train_args": train_args, "seeds": list(SEEDS),
            "val_acc": spread("val_acc"), "test_acc": spread("test_acc"),
            "test_mean_top_prob": spread("test_mean_top_prob"), "train_wall_seconds": spread("train_wall_seconds"),
            "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--label", default="current", help="key of this run in bench/results/small_data.json")
    parser.add_argument("--only", default=",".join(PARTS), help=",".join(PARTS))
    parser.add_argument("--demo-train-args", default="", help='extra `cvkit train` options for the demo, e.g. "--epochs 15"')
    args = parser.parse_args()
    parts = [p for p in args.only.split(",") if p]
    if unknown := set(parts) - set(PARTS):
        sys.exit(f"--only: unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    if args.label in RESERVED:
        sys.exit(f"--label {args.label}: reserved name; choose another")
    code = code_version()
    entry: dict = {}
    if "digits" in parts:
        entry["digits"] = dataset_result("digits", digits_source(), args.label, ["--size", "8"], [])
    if "demo" in parts:
        entry["demo"] = dataset_result("demo", DEMO_SRC, args.label, ["--size", "28", "--val", "0.2", "--test", "0.2"],
                                       shlex.split(args.demo_train_args))
    if "fmnist100" in parts:
        entry["fmnist100"] = dataset_result("fmnist100", fmnist100_source(), args.label, ["--size", "28"], [])
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    for part in entry.values():  # each part says when, and on which code, it was measured
        part.update({"measured_at": now, "code": code})
    result: dict = {}
    path = RESULTS / "small_data.json"
    if path.is_file():  # keep the other labels, and this label's parts not measured now
        previous = json.loads(path.read_text())
        result = {k: v for k, v in previous.items() if k not in RESERVED and isinstance(v, dict)}
    result[args.label] = {**result.get(args.label, {}), **entry}
    summary = {part: {"val_acc": entry[part]["val_acc"], "test_acc": entry[part]["test_acc"],
                      "test_mean_top_prob": entry[part]["test_mean_top_prob"]["mean"],
                      "epochs_run": [r["epochs_run"] for r in entry[part]["runs"]]} for part in parts}
    print(json.dumps({"label": args.label, "commit": code["describe"], **summary}), flush=True)
    write_result("small_data", result)


if __name__ == "__main__":
    main()
