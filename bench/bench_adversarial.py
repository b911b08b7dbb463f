"""``visualize --adversarial`` and ``--invert`` on Fashion-MNIST: a run trained for 2 epochs with cvkit's
defaults otherwise, attacked on a seeded sample of val images, and inverted layer by layer.

Attacks: the accuracy of the sample, clean and under FGSM and PGD (untargeted, on the true class, in
pixel space) at each eps; the perturbed images are rounded to uint8 as the PNG holds them before
they are scored. Inversion: for a few val images and each layer, the relative feature error left,
and the reconstruction's mean squared error (pixel units [0, 1]) and correlation with the image.
Only the val split is read.

Usage: python bench/bench_adversarial.py [--run DIR] [--data DIR] [--images 500] [--pgd-steps 10]
Trains the run into DIR first when it holds none. Writes bench/results/adversarial.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from common import CVKIT, WORK, run_measured, write_result

EPS = (2, 4, 8)  # in 1/255 units
LAYERS = ("features.0.0", "features.0", "features.1.0", "features.1", "head.pre.1", "head.fc")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(WORK / "fmnist"))
    parser.add_argument("--run", default=str(WORK / "runs" / "adversarial_e2"))
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--pgd-steps", type=int, default=10)
    parser.add_argument("--invert-images", type=int, default=3)
    parser.add_argument("--invert-steps", type=int, default=200)
    parser.add_argument("--layers", default=",".join(LAYERS))
    args = parser.parse_args()
    run = Path(args.run)
    if not (run / "model.safetensors").is_file():
        run_measured(CVKIT + ["-q", "train", args.data, "--out", str(run), "--epochs", "2", "--seed", "0"])

    import torch

    from cvkit.data import load_split
    from cvkit.explain.visual.adversarial import attack
    from cvkit.explain.visual.invert import invert
    from cvkit.runtime import load_run

    torch.manual_seed(0)
    loaded = load_run(run, torch.device("cpu"))
    val = load_split(Path(args.data), "val", loaded.input_size)
    rows = np.sort(np.random.default_rng(0).choice(len(val.images), args.images, replace=False))
    images, labels = np.ascontiguousarray(val.images[rows]), np.asarray(val.labels)[rows]
    probs, _ = loaded.predict(images)
    attacks = {"clean_accuracy": round(float((probs.argmax(1) == labels).mean()), 4)}
    for eps in EPS:
        for method, steps in (("fgsm", 1), ("pgd", args.pgd_steps)):
            start = time.perf_counter()
            found = attack(loaded, images, eps / 255, steps, labels=labels, batch_size=250)
            attacks[f"{method}_eps{eps}"] = {
                "accuracy": round(float((found.after.argmax(1) == labels).mean()), 4),
                "mean_prob_true_class": round(float(found.after[np.arange(len(labels)), labels].mean()), 4),
                "linf_max_255": int(np.abs(found.delta).max() * 255 + 0.5), "steps": steps,
                "seconds": round(time.perf_counter() - start, 2)}
            print(method, eps, attacks[f"{method}_eps{eps}"], flush=True)

    inversion = {}
    for layer in args.layers.split(","):
        errors, mses, corrs, noise_mses, seconds = [], [], [], [], 0.0
        for i in range(args.invert_images):
            start = time.perf_counter()
            found = invert(loaded, images[i:i + 1], layer, args.invert_steps, seed=0)
            seconds += time.perf_counter() - start
            clean, rebuilt = images[i].astype(np.float64) / 255, found.image.astype(np.float64) / 255
            errors.append(found.error_final)
            mses.append(float(((rebuilt - clean) ** 2).mean()))
            corrs.append(float(np.corrcoef(rebuilt.ravel(), clean.ravel())[0, 1]))
            noise_mses.append(float(((found.start.astype(np.float64) / 255 - clean) ** 2).mean()))
        inversion[layer] = {"relative_feature_error": round(float(np.mean(errors)), 4),
                            "pixel_mse": round(float(np.mean(mses)), 4), "pixel_corr": round(float(np.mean(corrs)), 4),
                            "seconds_per_image": round(seconds / args.invert_images, 2)}
        print(layer, inversion[layer], flush=True)

    write_result("adversarial", {
        "run": str(run), "arch": loaded.info.arch, "epochs_trained": int(loaded.info.epoch or 0),
        "val_acc_of_run": loaded.info.val_acc, "split": "val (a seeded sample; test not read)",
        "images": args.images, "eps_unit": "1/255 of the pixel range, L-inf, before normalization",
        "pgd": f"{args.pgd_steps} steps of 2.5 * eps / steps, no random start", "attacks": attacks,
        "inversion": {"images": args.invert_images, "steps": args.invert_steps,
                      "noise_start_pixel_mse": round(float(np.mean(noise_mses)), 4), "layers": inversion}})


if __name__ == "__main__":
    main()
