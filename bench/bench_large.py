"""A large dataset of small images through the pipeline: time and peak memory per stage.

N generated 8x8 grayscale images (10 classes: a fixed pattern per class plus noise) written as an
MNIST-style IDX pair, then `prepare --size 8` (val 0.1 of it), `normalize`, `train
--epochs 1` (defaults otherwise) and `evaluate --split val` (an IDX train part has no test split),
each a `python -m cvkit` child whose wall time and peak RSS (its own ru_maxrss, from wait4) are
recorded. Run for several N to see how memory grows with the image count. Usage: python bench/bench_large.py [--n 100000 1000000]
Results: bench/results/large.json (sizes run earlier are kept).
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct

import numpy as np

from common import CVKIT, RESULTS, WORK, run_measured, write_result


def write_idx(path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 8, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape))
        f.write(array.tobytes())


def generate(n: int):
    src = WORK / f"large_src_{n}"
    if not (src / "train-labels-idx1-ubyte").is_file():
        src.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        base = rng.integers(0, 256, (10, 8, 8)).astype(np.int16)
        images = np.clip(base[labels] + rng.integers(-40, 41, (n, 8, 8)), 0, 255).astype(np.uint8)
        write_idx(src / "train-images-idx3-ubyte", images)
        write_idx(src / "train-labels-idx1-ubyte", labels)
    return src


def one(n: int) -> dict:
    src, data, run = generate(n), WORK / f"large_data_{n}", WORK / f"large_run_{n}"
    stages = {"prepare": ["prepare", str(src), "--out", str(data), "--size", "8", "--force"],
              "normalize": ["normalize", str(data)],
              "train_1_epoch": ["train", str(data), "--out", str(run), "--epochs", "1", "--force"],
              "evaluate_val": ["evaluate", str(run), "--split", "val", "--json"]}
    row: dict = {"images": n}
    for name, args in stages.items():
        seconds, rss, out = run_measured(CVKIT + ["-q", *args])
        row[name] = {"seconds": round(seconds, 1), "peak_rss_mb": round(rss / 2**20)}
        if name == "evaluate_val":
            row["val_accuracy"] = round(json.loads(out)["accuracy"], 4)
    row["dataset_mb"] = round(sum(p.stat().st_size for p in data.rglob("*") if p.is_file()) / 2**20)
    row["files_in_dataset"] = sum(1 for _ in data.rglob("*"))
    shutil.rmtree(data)
    shutil.rmtree(run)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    old = RESULTS / "large.json"
    runs = {r["images"]: r for r in json.loads(old.read_text()).get("runs", [])} if old.is_file() else {}
    for n in args.n:
        runs[n] = one(n)
        print(json.dumps(runs[n]), flush=True)
    write_result("large", {"runs": [runs[n] for n in sorted(runs)]})


if __name__ == "__main__":
    main()
