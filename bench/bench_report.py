"""`cvkit report`: the page of a run from scratch, against the commands it stands for.

A 1-epoch run of the default net on Fashion-MNIST (train 54,000, val 6,000, test 10,000 images at 28 px).
In the same process, rounds of, each command a fresh process as a user runs it:

- ``report``: ``cvkit report RUN`` with nothing to reuse (no RUN/eval_test, no RUN/cam): it evaluates the
  10,000 test images, draws the CAMs of the 8 worst, the curves, calibration and augmentation preview;
- ``evaluate_cam``: ``cvkit evaluate RUN --split test`` then ``cvkit cam RUN`` on the 8 worst images it
  lists: what the issue says the report should cost;
- ``report_reusing``: ``cvkit report RUN`` after ``evaluate`` (RUN/eval_test reused: only the CAMs of the
  worst images and the preview are computed).

Other jobs may load the machine: the load average before and after is recorded, and each figure is
the best of the rounds (the least disturbed).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CVKIT, WORK, fmnist_dataset, run_measured, write_result  # noqa: E402

ROUNDS = 2
TOP = 8


def main() -> None:
    import pandas as pd

    started = time.perf_counter()
    load_before = os.getloadavg()
    data = fmnist_dataset()
    run = WORK / "runs" / "report_fmnist"
    train_seconds, _, _ = run_measured(CVKIT + ["-q", "train", str(data), "--out", str(run), "--epochs", "1",
                                                "--force"])
    times: dict[str, list[float]] = {"report": [], "evaluate_cam": [], "evaluate": [], "cam": [], "report_reusing": []}
    computed: dict[str, list[str]] = {}
    peak_rss: dict[str, int] = {}
    for _ in range(ROUNDS):
        for folder in ("eval_test", "cam", "report"):
            shutil.rmtree(run / folder, ignore_errors=True)
        seconds, rss, _ = run_measured(CVKIT + ["-q", "report", str(run), "--top", str(TOP)])
        times["report"].append(seconds)
        peak_rss["report"] = max(peak_rss.get("report", 0), rss)
        computed["report"] = json.loads((run / "report" / "report.json").read_text())["computed"]

        evaluate, rss, _ = run_measured(CVKIT + ["-q", "evaluate", str(run), "--split", "test"])
        peak_rss["evaluate"] = max(peak_rss.get("evaluate", 0), rss)
        worst = pd.read_csv(run / "eval_test" / "top_losses.csv", dtype=str, keep_default_na=False)["path"][:TOP]
        files = [p if os.path.isabs(p) else str(data / p) for p in worst]
        cam, _, _ = run_measured(CVKIT + ["-q", "cam", str(run), *files])
        times["evaluate"].append(evaluate)
        times["cam"].append(cam)
        times["evaluate_cam"].append(evaluate + cam)

        shutil.rmtree(run / "cam", ignore_errors=True)  # the report's CAMs are computed again; eval_test is reused
        seconds, _, _ = run_measured(CVKIT + ["-q", "report", str(run), "--top", str(TOP)])
        times["report_reusing"].append(seconds)
        computed["report_reusing"] = json.loads((run / "report" / "report.json").read_text())["computed"]
        print({k: [round(t, 2) for t in v] for k, v in times.items()}, flush=True)
    best = {k: round(min(v), 2) for k, v in times.items()}
    metrics = json.loads((run / "eval_test" / "metrics.json").read_text())
    pictures = len(list((run / "report" / "images").iterdir()))
    write_result("report", {
        "data": "Fashion-MNIST (prepared at 28 px: train 54,000, val 6,000, test 10,000)",
        "run": "smallcnn with the defaults, --epochs 1", "train_seconds": round(train_seconds, 1),
        "test_images": int(metrics["count"]), "test_accuracy": round(float(metrics["accuracy"]), 4), "top": TOP,
        "rounds": ROUNDS, "seconds_best": best, "seconds_all": {k: [round(t, 2) for t in v] for k, v in times.items()},
        "report_over_evaluate_cam": round(best["report"] / best["evaluate_cam"], 2),
        "report_peak_rss_mib": round(peak_rss["report"] / 2**20), "evaluate_peak_rss_mib": round(peak_rss["evaluate"] / 2**20),
        "page_pictures": pictures, "computed": computed,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "bench_seconds": round(time.perf_counter() - started, 1)})


if __name__ == "__main__":
    main()
