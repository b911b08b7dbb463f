"""Helpers shared by the benchmarks: where the data is, timing a CLI call, writing results."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FMNIST = Path(os.environ.get("CVKIT_FMNIST", "/usr/share/datasets/fashion-mnist"))
WORK = Path(os.environ.get("CVKIT_BENCH_DIR", "/tmp/cvkit-bench"))
CVKIT = [sys.executable, "-m", "cvkit"]


def need_fmnist() -> Path:
    if not (FMNIST / "train-images-idx3-ubyte.gz").is_file():
        sys.exit(f"Fashion-MNIST is not in {FMNIST}: apt-get install dataset-fashion-mnist (or set CVKIT_FMNIST)")
    return FMNIST


def timed(args: list[str]) -> tuple[float, str]:
    """Run a command; return its wall time in seconds and its stdout. Exits on failure."""
    start = time.perf_counter()
    proc = subprocess.run(args, stdout=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"benchmark command failed ({proc.returncode}): {' '.join(args)}")
    return seconds, proc.stdout


def peak_rss_children_mib() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def write_result(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    data = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data))
    return path
