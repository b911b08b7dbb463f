"""Fashion-MNIST on one CUDA GPU through the CLI: `cvkit train`'s defaults and the fastest recipe, with
the share of the GPU's peak each reaches.

Each recipe is `cvkit --device cuda train DATA ...` and then, once, after training,
`cvkit --device cuda evaluate RUN --split test --json` (the epoch was chosen on val). The training set
sits on the GPU (config.json's resolved.resident is recorded). The recipes:

- defaults: no option (smallcnn, batch 128; --precision/--memory-format auto: bf16, or fp16 with loss
  scaling, and channels-last on CUDA);
- fast: a larger batch (--batch 512) at bf16 and channels-last, spelled out;
- fast_compile: the same with --compile.

Training FLOPs per image are 3 x 2 x the forward multiply-accumulates `cvkit inspect` counts for the run
(the forward pass, and the backward pass's two products of the same size). The GPU's peak is measured
here with large matmuls (bf16, fp16, TF32 and fp32); a recipe's share of peak is its FLOP rate after the
first epoch (which pays for start-up and compilation) over the peak at its precision, TF32 for fp32
because cuDNN's convolutions run in TF32 by default.

Without a CUDA GPU it prints one line and exits 0, writing nothing (`make bench` on a CPU machine).

Usage: python bench/bench_gpu.py [--only defaults,fast,fast_compile] [--batch 512] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from common import CVKIT, WORK, fmnist_dataset, run_measured, write_result

DEVICE = "cuda"  # every command's --device
MATMUL_SIZE = 8192  # n x n x n: large enough that every kind of GPU runs the matmul at its peak
MATMUL_REPEATS = 20
PEAK_FOR = {"bf16": "bf16", "fp16": "fp16", "fp32": "tf32"}  # the matmul peak that bounds a recipe's precision


def recipes(batch: int, half: str) -> dict[str, list[str]]:
    fast = ["--batch-size", str(batch), "--precision", half, "--memory-format", "channels_last"]
    return {"defaults": [], "fast": fast, "fast_compile": [*fast, "--compile"]}


def matmul_tflops(dtype: torch.dtype, tf32: bool = False) -> float:
    """TFLOP/s of an n x n matmul on the GPU, best of 3 rounds (fp32 with ``tf32``: TF32 tensor cores)."""
    n = MATMUL_SIZE
    gen = torch.Generator(device="cuda").manual_seed(0)
    a, b = (torch.randn(n, n, device="cuda", dtype=dtype, generator=gen) for _ in range(2))
    c = torch.empty(n, n, device="cuda", dtype=dtype)
    was = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        torch.matmul(a, b, out=c)  # warm-up: cuBLAS picks its kernel
        best = float("inf")
        for _ in range(3):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(MATMUL_REPEATS):
                torch.matmul(a, b, out=c)
            end.record()
            torch.cuda.synchronize()
            best = min(best, start.elapsed_time(end) / 1000)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = was
    del a, b, c
    torch.cuda.empty_cache()
    return round(2 * n**3 * MATMUL_REPEATS / best / 1e12, 1)


def peaks() -> dict[str, float]:
    found = {"fp16": matmul_tflops(torch.float16), "tf32": matmul_tflops(torch.float32, tf32=True),
             "fp32": matmul_tflops(torch.float32)}
    if torch.cuda.is_bf16_supported():
        found["bf16"] = matmul_tflops(torch.bfloat16)
    return found


def training_flops_per_image(run) -> int:
    """3 x 2 x the forward multiply-accumulates of the run's model, as `cvkit inspect RUN` counts them."""
    from cvkit.inspect import inspect_run

    return 6 * int(inspect_run(run, torch.device("cpu")).totals["macs"])


def train_and_test(data, name: str, extra: list[str], seed: int, peak: dict[str, float]) -> dict:
    import pandas as pd

    run = WORK / "runs" / f"gpu_{name}"
    cuda = [*CVKIT, "--device", DEVICE, "-q"]
    seconds, rss, _ = run_measured([*cuda, "train", str(data), "--out", str(run), "--force", "--seed", str(seed),
                                    *extra])
    _, _, out = run_measured([*cuda, "evaluate", str(run), "--split", "test", "--json"])
    history = pd.read_csv(run / "metrics.csv")
    config = json.loads((run / "config.json").read_text())
    resolved = config["resolved"]
    after_first = history["images_per_s"].iloc[1:] if len(history) > 1 else history["images_per_s"]
    images_per_s = float(after_first.mean())
    flops = training_flops_per_image(run)
    bound = PEAK_FOR[resolved["precision"]]
    achieved = images_per_s * flops / 1e12
    return {"args": extra, "arch": config["arch"], "batch_size": resolved["batch_size"],
            "precision": resolved["precision"], "memory_format": resolved["memory_format"],
            "compile": config["compile"], "device": resolved["device"], "resident": resolved["resident"],
            "epochs": int(history["epoch"].max()), "train_wall_seconds": round(seconds, 1),
            "train_loop_seconds": round(float(history["seconds"].sum()), 1),
            "first_epoch_seconds": round(float(history["seconds"].iloc[0]), 2),
            "images_per_s_after_first_epoch": round(images_per_s), "images_per_s_mean": round(float(
                history["images_per_s"].mean())),
            "training_flops_per_image": flops, "achieved_tflops": round(achieved, 2), "peak_used": bound,
            "share_of_peak": round(achieved / peak[bound], 4) if bound in peak else None,
            "test_acc": json.loads(out)["accuracy"], "best_val_acc": round(float(history["val_acc"].max()), 4),
            "peak_rss_mib": round(rss / 2**20)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="defaults,fast,fast_compile", help="recipes to run, comma-separated")
    parser.add_argument("--batch", type=int, default=512, help="the fast recipes' --batch-size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA GPU here; skipped, nothing written")
        return 0
    half = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    chosen = recipes(args.batch, half)
    unknown = set(args.only.split(",")) - set(chosen)
    if unknown:
        sys.exit(f"--only {','.join(sorted(unknown))}: not a recipe; choose from {','.join(chosen)}")
    data = fmnist_dataset("fmnist")
    started = time.perf_counter()
    peak = peaks()
    print(json.dumps({"peak_tflops": peak}), flush=True)
    results = {}
    for name, extra in chosen.items():
        if name in args.only.split(","):
            results[name] = train_and_test(data, name, extra, args.seed, peak)
            print(json.dumps({name: results[name]}), flush=True)
    props = torch.cuda.get_device_properties(0)
    write_result("gpu", {
        "gpu": {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                "capability": f"{props.major}.{props.minor}", "count": torch.cuda.device_count()},
        "versions": {"cuda": torch.version.cuda, "cudnn": str(torch.backends.cudnn.version())},
        "seed": args.seed, "peak_tflops": peak,
        "peak_method": f"{MATMUL_SIZE}x{MATMUL_SIZE} matmuls, best of 3 rounds of {MATMUL_REPEATS}",
        "flops_method": "training FLOPs per image = 3 x 2 x the forward MACs of cvkit inspect; share of peak from "
                        "the images/s after the first epoch, over the matmul peak at the run's precision (TF32 "
                        "for fp32)",
        "splits": "test_acc: test split, read once per run after training; best_val_acc: val split (what chose "
                  "the epoch)",
        "recipes": results, "bench_seconds": round(time.perf_counter() - started)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
