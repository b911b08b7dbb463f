"""Helpers shared by the benchmarks: where the data is, timing a CLI call, writing results."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FMNIST = Path(os.environ.get("CVKIT_FMNIST", "/usr/share/datasets/fashion-mnist"))
WORK = Path(os.environ.get("CVKIT_BENCH_DIR", "/tmp/cvkit-bench"))
CVKIT = [sys.executable, "-m", "cvkit"]


def best_time(fn, repeats: int, clock=time.perf_counter) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn`` (this machine's speed drifts: the best is the
    least disturbed). ``clock=time.process_time``: CPU seconds of this process, for one-thread timings on a
    CPU that other jobs use too (wall time then mostly measures the waits for a core)."""
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best


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


# The top-level keys write_result adds to every result file (bench/report.py reads them; a benchmark's own keys
# must not take these names).
METADATA_KEYS = ("benchmark", "date", "commit", "command", "versions", "machine", "cpu", "cores")
# The packages whose versions decide the figures; a missing one is left out.
PACKAGES = ("cvkit", "torch", "torchvision", "timm", "numpy", "pillow", "onnxruntime", "faiss-cpu", "kornia", "grad-cam")


def commit() -> str | None:
    """The repository's commit, with ``-dirty`` when code differs from it: what the figures were measured on.
    Changed files under bench/results/ do not count (a bench that writes its results would mark the next
    one dirty)."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(HERE.parent), *args], capture_output=True, text=True)

    described = git("describe", "--always")
    if described.returncode != 0 or not described.stdout.strip():
        return None
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results")
    return described.stdout.strip() + ("-dirty" if changed.stdout.strip() else "")


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def command() -> str:
    """The exact command that ran this benchmark, as typed from the repository root."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(HERE.parent) if script.is_relative_to(HERE.parent) else script
    return shlex.join(["python", str(shown), *sys.argv[1:]])


def write_result(name: str, data: dict) -> Path:
    """bench/results/NAME.json: DATA under the metadata every result records (when, on which commit, CPU and
    package versions, and the command that measured it)."""
    if clash := set(data) & (set(METADATA_KEYS) - {"versions"}):
        raise ValueError(f"result keys {sorted(clash)} are reserved for write_result's metadata")
    RESULTS.mkdir(exist_ok=True)
    data = dict(data)
    meta = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": commit(), "command": command(),
            "versions": {**package_versions(), **data.pop("versions", {})},
            "machine": platform.processor() or platform.machine(), "cpu": cpu(), "cores": os.cpu_count()}
    data = {**meta, **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data))
    return path


def fmnist_dataset(name: str = "fmnist") -> Path:
    """Fashion-MNIST prepared at 28 px and normalized in WORK/name (made once, reused by later runs)."""
    out = WORK / name
    if not (out / "stats.json").is_file():
        run_measured(CVKIT + ["-q", "prepare", str(need_fmnist()), "--out", str(out), "--size", "28", "--force"])
        run_measured(CVKIT + ["-q", "normalize", str(out)])
    return out


def train_and_evaluate(data: Path, name: str, extra: list[str]) -> dict:
    """`cvkit train` into WORK/runs/name, then `cvkit evaluate --split test` once (with its defaults: flip
    TTA where training chose it on val): what it chose and scored."""
    import pandas as pd

    run = WORK / "runs" / name
    seconds, rss, _ = run_measured(CVKIT + ["-q", "train", str(data), "--out", str(run), "--force", *extra])
    _, _, out = run_measured(CVKIT + ["-q", "evaluate", str(run), "--split", "test", "--json"])
    history = pd.read_csv(run / "metrics.csv")
    config = json.loads((run / "config.json").read_text())
    model = json.loads((run / "model.json").read_text())
    resolved = config["resolved"]
    return {"arch": config["arch"], "epochs": int(history["epoch"].max()), "train_wall_seconds": round(seconds, 1),
            "train_loop_seconds": round(float(history["seconds"].sum()), 1),
            "epoch_seconds_mean": round(float(history["seconds"].mean()), 1),
            "images_per_s": round(float(history["images_per_s"].mean()), 1), "test_acc": json.loads(out)["accuracy"],
            "best_val_acc": round(float(history["val_acc"].max()), 4), "peak_rss_mib": round(rss / 2**20),
            "precision": resolved["precision"], "memory_format": resolved["memory_format"],
            "speed_probe_ms_per_step": resolved.get("speed_probe_ms_per_step"),
            "augment": {k: v for k, v in resolved["augment"].items() if v not in (0, 0.0, [1.0, 1.0])},
            "epochs_reason": resolved.get("epochs_reason"), "budget_replans": resolved.get("budget_replans"),
            "arch_options": model["arch_options"], "label_smoothing": resolved.get("label_smoothing"),
            "tta": model.get("tta"), "test_tta": json.loads(out).get("tta"),
            "budget_wider_net": (resolved.get("budget") or {}).get("wider_net")}


def seed_summary(runs: list[dict]) -> dict:
    """Mean and spread over seeded CLI runs (train_and_evaluate's rows, with ``val_acc_chosen``: val with the
    TTA training chose there) of their test, best val and chosen-TTA val accuracy and training time."""
    return {"test_acc": spread([r["test_acc"] for r in runs]), "best_val_acc": spread([r["best_val_acc"] for r in runs]),
            "val_acc_with_chosen_tta": spread([r["val_acc_chosen"] for r in runs]),
            "train_wall_seconds": spread([r["train_wall_seconds"] for r in runs]), "runs": runs}


def spread(values: list[float]) -> dict:
    """Mean, population standard deviation, min and max, rounded to 4 places."""
    a = [float(v) for v in values]
    mean = sum(a) / len(a)
    std = (sum((v - mean) ** 2 for v in a) / len(a)) ** 0.5
    return {"mean": round(mean, 4), "std": round(std, 4), "min": round(min(a), 4), "max": round(max(a), 4)}
