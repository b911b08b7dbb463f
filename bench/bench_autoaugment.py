"""``augment --preset randaugment|trivialaugment|autoaugment``: speed of cvkit's batched policies against
torchvision's per-sample transforms, and val accuracy of training with each preset against ``standard``.

Speed: images/s on a batch of 256 Fashion-MNIST training images (28 x 28, gray) and of 256 64 x 64
colour crops of sample_data/photos: cvkit's ``auto_augment`` on the whole float batch, against
torchvision's ``RandAugment()`` / ``TrivialAugmentWide()`` / ``AutoAugment()`` called on each uint8 image
(their defaults), one thread each, timed in CPU seconds of the process (best of a few repeats).

Accuracy: ``cvkit train`` with its defaults (``--epochs``, default 5 as train's own; ``--seeds``, mean and
spread over them) on the prepared, normalized Fashion-MNIST in WORK/fmnist (read only: the policy is
written into a hard-linked copy and handed to train with ``--augment FILE``). The figure is the best
epoch's val accuracy: the test split is not read.

Usage: python bench/bench_autoaugment.py [--skip-speed] [--skip-train] [--reuse] [--presets standard,...]
       [--epochs 5] [--seeds 0,1]
Writes bench/results/autoaugment.json (a skipped part keeps its figures from the previous file).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common import CVKIT, RESULTS, WORK, best_time, command, commit, run_measured, spread, write_result

PRESETS = ("standard", "randaugment", "trivialaugment", "autoaugment")
BATCH = 256
HERE = Path(__file__).resolve().parent
OWN = WORK / "autoaugment"  # this bench's own folder: runs and the hard-linked dataset copy


def photos(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` random square crops of sample_data/photos, resized to ``size``: N x size x size x 3 uint8."""
    rng = np.random.default_rng(seed)
    sources = [Image.open(p).convert("RGB") for p in sorted((HERE.parent / "sample_data" / "photos").glob("*.jpg"))]
    out = []
    for i in range(n):
        im = sources[i % len(sources)]
        side = int(rng.integers(min(im.size) // 3, min(im.size)))
        x0, y0 = int(rng.integers(0, im.width - side + 1)), int(rng.integers(0, im.height - side + 1))
        out.append(np.asarray(im.crop((x0, y0, x0 + side, y0 + side)).resize((size, size))))
    return np.stack(out)


def fmnist_batch(data: Path) -> np.ndarray:
    from cvkit.data import load_split

    return np.array(load_split(data, "train", (28, 28)).images[:BATCH])


def speed(images: np.ndarray) -> dict:
    from torchvision.transforms import AutoAugment, RandAugment, TrivialAugmentWide

    from cvkit.transforms.autoaugment import auto_augment
    from cvkit.transforms.batch import to_unit
    from cvkit.transforms.policy import make_policy

    batch = torch.from_numpy(images)
    per_image = [torch.from_numpy(im).permute(2, 0, 1).contiguous() for im in images]
    out = {}
    for name, reference in (("randaugment", RandAugment()), ("trivialaugment", TrivialAugmentWide()),
                            ("autoaugment", AutoAugment())):
        policy = make_policy({"auto": name})
        gen = torch.Generator().manual_seed(0)
        ours = best_time(lambda: auto_augment(to_unit(batch, torch.device("cpu")), policy, gen), 5, time.process_time)
        torch.manual_seed(0)
        theirs = best_time(lambda: [reference(im) for im in per_image], 3, time.process_time)
        out[name] = {"cvkit_batched_images_per_s": round(len(images) / ours),
                     "torchvision_per_sample_images_per_s": round(len(images) / theirs),
                     "speedup": round(theirs / ours, 1)}
        print(json.dumps({name: out[name]}), flush=True)
    return out


def finished(run: Path, policy: Path, epochs: int) -> bool:
    """Whether ``run`` is a complete run of ``epochs`` epochs trained with the policy in ``policy``."""
    if not (run / "metrics.csv").is_file() or not (run / "config.json").is_file():
        return False
    config = json.loads((run / "config.json").read_text())
    done = len((run / "metrics.csv").read_text().splitlines()) - 1
    return done == epochs and config["resolved"]["augment"] == json.loads(policy.read_text())["policy"]


def val_accuracy(data: Path, presets: list[str], reuse: bool, epochs: int, seeds: list[int]) -> dict:
    copy = OWN / "fmnist_links"
    OWN.mkdir(parents=True, exist_ok=True)
    if not copy.is_dir():  # hard links: augment writes its own augment.json here, never into the dataset itself
        subprocess.run(["cp", "-al", str(data), str(copy)], check=True)
    out = {}
    for preset in presets:
        policy = OWN / "policies" / f"{preset}.json"
        policy.parent.mkdir(parents=True, exist_ok=True)
        run_measured(CVKIT + ["-q", "augment", str(copy), "--preset", preset])
        shutil.copyfile(copy / "augment.json", policy)
        runs = []
        for seed in seeds:
            run = OWN / "runs" / f"{preset}_e{epochs}_seed{seed}"
            if not (reuse and finished(run, policy, epochs)):  # --reuse: runs started by hand with the same command
                run_measured([*CVKIT, "-q", "train", str(data), "--augment", str(policy), "--out", str(run), "--force",
                              "--seed", str(seed), "--epochs", str(epochs)])
            history = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()]
            accs = [float(row[history[0].index("val_acc")]) for row in history[1:]]
            seconds = sum(float(row[history[0].index("seconds")]) for row in history[1:])
            runs.append({"seed": seed, "best_val_acc": round(max(accs), 4), "val_acc_per_epoch": [round(a, 4) for a in accs],
                         "train_loop_seconds": round(seconds, 1)})
        config = json.loads((run / "config.json").read_text())
        out[preset] = {"best_val_acc": spread([r["best_val_acc"] for r in runs]),
                       "train_loop_seconds": spread([r["train_loop_seconds"] for r in runs]), "runs": runs,
                       "augment": config["resolved"]["augment"]}
        print(json.dumps({preset: out[preset]}), flush=True)
    return out


def measured() -> dict:
    """When and how a part was measured: a part skipped in a later run keeps its own."""
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": commit(), "command": command()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--reuse", action="store_true", help="read finished runs in the bench folder instead of "
                                                              "training them again")
    args = parser.parse_args()
    data = WORK / "fmnist"
    previous = json.loads((RESULTS / "autoaugment.json").read_text()) if (RESULTS / "autoaugment.json").is_file() else {}
    result = {"data": "Fashion-MNIST prepared at 28 px and normalized (54k train / 6k val / 10k test)",
              "split": f"val only (best epoch of {args.epochs}); test not read"}
    if args.skip_speed:
        result["images_per_s"] = previous.get("images_per_s")
    else:
        torch.set_num_threads(1)  # both sides on one core: the machine's other core runs other jobs
        result["images_per_s"] = {
            "batch": BATCH, "device": "cpu", "torch_threads": 1, "timing": "CPU time of the process, best of 3-5",
            "fmnist_28x28_gray": speed(fmnist_batch(data)), "photos_64x64_rgb": speed(photos(BATCH, 64)),
            "measured": measured()}
    if args.skip_train:
        result["val_accuracy"] = previous.get("val_accuracy")
    else:
        done = val_accuracy(data, args.presets.split(","), args.reuse, args.epochs, [int(s) for s in args.seeds.split(",")])
        result["val_accuracy"] = {"train": f"cvkit train DATA --augment POLICY --seed S --epochs {args.epochs} (defaults "
                                           f"otherwise), seeds {args.seeds}; train_loop_seconds: the epochs' own seconds",
                                  **{k: v for k, v in done.items() if k not in ("train", "measured")},
                                  "measured": {**measured(), "reused_runs": args.reuse}}
    write_result("autoaugment", result)


if __name__ == "__main__":
    main()
