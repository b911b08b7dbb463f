"""Fashion-MNIST import: `cvkit prepare` of the 70,000 IDX images (PNG files written, 28x28 cache
built) and `cvkit normalize` on the result. Targets: prepare under 60 s, normalize under 5 s on a
2-core machine; the train mean/std should be near 0.2860 / 0.3530."""

from __future__ import annotations

import json
import shutil

from common import CVKIT, WORK, need_fmnist, run_measured, write_result


def main() -> None:
    src = need_fmnist()
    out = WORK / "fmnist"
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    prepare_s, _, _ = run_measured(CVKIT + ["-q", "prepare", str(src), "--out", str(out), "--size", "28", "--force"])
    normalize_s, _, stdout = run_measured(CVKIT + ["-q", "normalize", str(out), "--json"])
    stats = json.loads(stdout)
    counts = json.loads((out / "dataset.json").read_text())["counts"]
    write_result("prepare_fmnist", {
        "images": sum(counts.values()), "counts": counts,
        "prepare_seconds": round(prepare_s, 2), "prepare_images_per_s": round(sum(counts.values()) / prepare_s, 1),
        "prepare_target_seconds": 60, "normalize_seconds": round(normalize_s, 2), "normalize_target_seconds": 5,
        "mean": stats["mean"], "std": stats["std"], "expected_mean_std": [0.2860, 0.3530],
    })


if __name__ == "__main__":
    main()
