"""Helpers shared by the benchmarks: where the data is, timing a CLI call, writing results."""

from __future__ import annotations

import json
import os
import platform
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


def run_measured(args: list[str]) -> tuple[float, int, str]:
    """Run a command: its wall seconds, peak RSS (bytes) and stdout. Exits on failure."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"benchmark command failed ({os.waitstatus_to_exitcode(status)}): {' '.join(args)}")
    return seconds, usage.ru_maxrss * 1024, out


def cpu() -> str:
    """The CPU model and whether it has the bf16 matrix instructions cvkit's speed depends on."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    has = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model} ({', '.join(has) if has else 'no AVX-512, no bf16 matrix instructions'})"


def write_result(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    data = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.processor() or platform.machine(),
            "cpu": cpu(), "cores": os.cpu_count(), **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data))
    return path
