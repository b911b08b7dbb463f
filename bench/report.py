"""Write bench/README.md from bench/README.template.md and bench/results/*.json.

The template holds the prose; each `<!-- results: NAME -->` line in it becomes the table of
results/NAME.json (for the benchmarks that have one) and a line saying how that file was measured:
date, commit, CPU, package versions and the exact command, or "not recorded" where an older file
lacks them (no value is ever guessed). `<!-- index -->` becomes the list of every results file.
tests/app/test_docs.py fails when bench/README.md is out of date.

Usage: .venv/bin/python bench/report.py [--check]   (or: make docs)
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TEMPLATE = HERE / "README.template.md"
README = HERE / "README.md"
REGENERATE = ".venv/bin/python bench/report.py (or: make docs)"
NOT_RECORDED = "not recorded"
MARKER = re.compile(r"^(?P<indent>[ \t]*)<!-- (?:results: (?P<name>[\w-]+)|(?P<index>index)) -->[ \t]*$", re.M)


def load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


def _pm(stats: dict, places: int = 4) -> str:
    return f"{stats['mean']:.{places}f} ± {stats['std']:.{places}f}"


def _seconds(runs: list[dict], key: str = "train_wall_seconds") -> str:
    values = [r[key] for r in runs]
    low, high = min(values), max(values)
    return f"{low:.0f}" if round(low) == round(high) else f"{low:.0f}-{high:.0f}"


def metadata(data: dict) -> str:
    """How a results file was measured; every field it lacks says so."""
    def field(key: str) -> str:
        return str(data[key]) if data.get(key) not in (None, "", {}) else NOT_RECORDED

    versions = data.get("versions")
    shown = ", ".join(f"{k} {v}" for k, v in versions.items()) if versions else NOT_RECORDED
    cores = f", {data['cores']} cores" if data.get("cores") else ""
    command = f"`{data['command']}`" if data.get("command") else NOT_RECORDED
    return (f"measured {field('date')}; CPU: {field('cpu')}{cores}; commit: {field('commit')}; command: {command}; "
            f"versions: {shown}.")


def train_fmnist(data: dict) -> list[str]:
    default, base = data["cvkit_default"], data["baseline"]
    loops = [r["train_loop_seconds"] for r in default.get("runs", []) if r.get("train_loop_seconds")]
    extra = " ".join(default.get("train_args") or [])
    label = f"`cvkit train` defaults{f' + `{extra}`' if extra else ''} ({len(default['seeds'])} seeds)"
    rows = [[label, _pm(default["test_acc"]),
             _pm(default["best_val_acc"]), f"{default['train_wall_seconds']['mean']:.0f} (the whole command)",
             f"{sum(loops) / len(loops):.0f}" if loops else NOT_RECORDED],
            ["`baseline_fmnist.py --epochs 5` (1 run)", f"{base['test_acc']:.4f}", "", "",
             f"{base['train_seconds_5_epochs']:.0f}"]]
    lines = _table(["", "test acc", "best val acc", "wall seconds", "training epochs' seconds"], rows)
    targets = data.get("targets", {})
    if speedup := targets.get("speedup_vs_baseline_mean"):
        lines += ["", f"cvkit's defaults trained {speedup}x faster than the baseline in the same run."]
    if "met_accuracy" in targets:
        met = {True: "met", False: "not met"}
        lines[-1] += (f" Target: mean test accuracy >= {targets['test_acc_mean_min']} "
                      f"({met[targets['met_accuracy']]}) in at most {targets['train_seconds_max']:.0f} s "
                      f"({met[targets['met_time_every_seed']]} by every seed).")
    return lines


def budget_fmnist(data: dict) -> list[str]:
    def net(r: dict) -> str:
        base = (r.get("arch_options") or {}).get("base")
        return f"{r.get('arch', 'smallcnn')} --base {base}" if base else NOT_RECORDED

    rows = [[f"{r['budget_minutes']:g}m", net(r), str(r["epochs"]), f"{r['train_wall_seconds']:.0f} s",
             f"{r['best_val_acc']:.4f}", f"{r['test_acc']:.4f}",
             {True: "flip", False: "none", None: NOT_RECORDED}[r.get("test_tta")]] for r in data["budget"]["runs"]]
    data_name = {"plain": "train's default augmentation", "standard": "the standard preset"}
    return [*_table(["`--budget`", "net chosen", "epochs", "command wall time", "best val acc", "test acc",
                     "test TTA"], rows), "",
            f"Dataset: {data_name.get(data['budget'].get('data', 'standard'))}; seed {data['budget']['seed']}."]


def large(data: dict) -> list[str]:
    def stage(s: dict) -> str:
        seconds = f"{s['seconds']:.1f}" if s["seconds"] < 20 else f"{s['seconds']:.0f}"
        return f"{seconds} s, {s['peak_rss_mb']:,} MB"

    rows = [[f"{r['images']:,}", stage(r["prepare"]), stage(r["normalize"]), stage(r["train_1_epoch"]),
             stage(r["evaluate_val"])] for r in data["runs"]]
    return _table(["images", "prepare", "normalize", "train, 1 epoch", "evaluate"], rows)


def distributed(data: dict) -> list[str]:
    names = {"digits": "digits (8 px)", "fmnist": "Fashion-MNIST (28 px)"}
    rows = []
    for key in ("digits", "fmnist"):
        if key not in data:
            continue
        part = data[key]
        setting = names[key] + (f", `{' '.join(part['train_args'])}`" if part.get("train_args") else ", epochs auto")
        for procs in ("1_process", "2_process"):
            if procs in part:
                r = part[procs]
                rows.append([setting, procs[0], _pm(r["val_acc"]), _pm(r["test_acc"]), _seconds(r["runs"])])
    return _table(["dataset", "processes", "val acc", "test acc", "train wall s"], rows)


def export(data: dict) -> list[str]:
    kinds = ["eager", "eager_fused", "torchscript_fused", "onnxruntime_fused"]
    rows = []
    for net in ("smallcnn", "resnet18"):
        if net not in data:
            continue
        c, h, w = data[net]["input"]
        for batch in (256, 1):
            speed, ratio = data[net][f"batch_{batch}_images_per_s"], data[net][f"batch_{batch}_speedup_vs_eager"]
            cells = [f"{speed[k]:,.0f}" + ("" if k == "eager" else f" ({ratio[k]:.2f}x)") for k in kinds]
            rows.append([f"{net} {h}x{w}x{c}", str(batch), *cells])
    return _table(["network", "batch", "eager", "eager, BN folded", "TorchScript, folded", "ONNX Runtime, folded"], rows)


def int8(data: dict) -> list[str]:
    rows = []
    for key, runtime in (("onnxruntime", "onnxruntime"), ("pytorch", "pytorch")):
        c = data[key]
        size, acc, ms = c["size_bytes"], c["val_acc"], data["latency_ms_by_batch"]
        rows.append([c["quantizer"].split(" (")[0], f"{size['fp32'] / 1e6:.2f} -> {size['int8'] / 1e6:.2f}",
                     f"{acc['fp32']:.4f} -> {acc['int8']:.4f}", f"{c['top1_agreement_fp32']:.2%}",
                     *(f"{ms[b][runtime + '_fp32']:.3g} -> {ms[b][runtime + '_int8']:.3g}" for b in ("1", "64"))])
    return _table(["quantizer", "file MB", "val acc", "top-1 agreement", "batch 1 ms", "batch 64 ms"], rows)


def multilabel(data: dict) -> list[str]:
    runs = data["runs"]
    return _table(["mosaics", "seeds", "test mAP", "micro F1", "macro F1", "exact match", "train wall s"],
                  [[f"{data['images']:,}", ",".join(str(r["seed"]) for r in runs), _pm(data["map"]),
                    _pm(data["micro_f1"]), _pm(data["macro_f1"]), _pm(data["exact_match"]), _seconds(runs)]])


def localize(data: dict) -> list[str]:
    runs = data["runs"]
    keys = ("accuracy", "mean_iou", "iou50", "loc_accuracy")
    rows = [["supervised: localize run", *(_pm(data[k]) for k in keys)],
            [f"weak: classifier + cam --boxes ({runs[0].get('cam_method', '?')})", *(_pm(data[f"cam_{k}"]) for k in keys)]]
    return _table([f"{data['images']:,} canvases, seeds {','.join(str(r['seed']) for r in runs)}, test split",
                   "accuracy", "mean IoU", "IoU >= 0.5", "loc accuracy"], rows)


def localize_choose(data: dict) -> list[str]:
    groups: dict[tuple, list[dict]] = {}
    for r in data["runs"]:
        groups.setdefault((r["alpha"], r["box_loss"]), []).append(r)
    keys = ("accuracy", "mean_iou", "iou50", "loc_accuracy")

    def cell(runs: list[dict], key: str) -> str:
        values = [r[key] for r in runs]
        mean = sum(values) / len(values)
        return f"{mean:.4f}" + (f" ({min(values):.3f}-{max(values):.3f})" if len(values) > 1 else "")

    rows = [[f"{alpha:g}", loss, str(len(runs)), *(cell(runs, k) for k in keys)]
            for (alpha, loss), runs in sorted(groups.items())]
    return _table(["--alpha", "--box-loss", "seeds", "val accuracy", "val mean IoU", "val IoU >= 0.5",
                   "val loc accuracy"], rows)


def regress(data: dict) -> list[str]:
    runs = data["runs"]
    return _table(["canvases", "seeds", "test PCK@0.1", "MAE px", "RMSE px", "R²", "mean-point PCK", "train wall s"],
                  [[f"{data['images']:,}", ",".join(str(r["seed"]) for r in runs), _pm(data["pck"]), _pm(data["mae"]),
                    _pm(data["rmse"]), _pm(data["r2"]), _pm(data["mean_point_pck"]), _seconds(runs)]])


def segment(data: dict) -> list[str]:
    runs = data["runs"]

    def rate(stats: dict) -> str:
        return f"{stats['mean']:,.0f} ± {stats['std']:,.0f}"

    def wall(side: str) -> str:
        return _seconds([r[side] for r in runs], "wall_seconds")

    ours, theirs = data["cvkit"], data["baseline"]
    rows = [["`cvkit train --arch unet --padding same`", rate(ours["pixels_per_s"]), _pm(ours["val_miou"]),
             wall("cvkit")],
            ["`baseline_unet.py`", rate(theirs["pixels_per_s"]),
             f"{_pm(theirs['val_miou'])} (best epoch {theirs['best_val_miou']['mean']:.4f})", wall("baseline")]]
    speedup = data["speedup"]
    return [*_table([f"{data['images']:,} scenes, seeds {','.join(str(r['seed']) for r in runs)}", "train pixels/s",
                     "val mIoU", "train wall s"], rows), "",
            f"U-Net `--base {data['base']} --depth {data['depth']}`, {data['epochs']} epochs, batch {data['batch']}, "
            f"{data['size']} px, {data['classes']} classes: cvkit's training loop moved {speedup['mean']:.2f}x the "
            f"baseline's pixels per second ({speedup['min']:.2f}-{speedup['max']:.2f}x over the seeds)."]


def segment_models(data: dict) -> list[str]:
    runs, names = data["runs"], {"unet": "`train --arch unet` (defaults)",
                                 "fcn": "`train --arch fcn --encoder smallcnn --weights CLASSIFIER`",
                                 "convolutionalized": "`convolutionalize CLASSIFIER --segmenter upsample`"}
    rows = [[label, _pm(data["models"][m]["miou"]), _pm(data["models"][m]["pixel_accuracy"]),
             _seconds([r[m] for r in runs], "train_seconds")] for m, label in names.items()]
    return _table([f"{data['test_scenes']:,} held-out test scenes, seeds {','.join(str(r['seed']) for r in runs)}",
                   "test mIoU (11 classes)", "test pixel accuracy", "training s"], rows)


def segment_choose(data: dict) -> list[str]:
    rows = [[f"`--padding {name}`", str(len(data["runs"])), _pm(data["val_miou"][name]),
             ", ".join(str(r[name]["epochs"]) for r in data["runs"])] for name in data["candidates"]]
    return _table([f"unet, `--budget {data['budget']}`", "seeds", "val mIoU", "epochs in the budget"], rows)


def gpu(data: dict) -> list[str]:
    rows = [[f"{name}: `{' '.join(r['args'])}`" if r["args"] else f"{name} (no option)",
             f"{r['precision']}, {r['memory_format']}", str(r["epochs"]), f"{r['train_wall_seconds']:.0f}", f"{r['images_per_s_after_first_epoch']:,}",
             f"{r['share_of_peak']:.1%} of {r['peak_used']}" if r.get("share_of_peak") is not None else "",
             f"{r['test_acc']:.4f}"] for name, r in data["recipes"].items()]
    peak = ", ".join(f"{k} {v:,.0f}" for k, v in data["peak_tflops"].items())
    flops = {r["training_flops_per_image"] for r in data["recipes"].values()}
    return [*_table([f"{data['gpu']['name']}, seed {data['seed']}", "precision", "epochs", "train wall s",
                     "train images/s", "share of peak", "test acc"], rows), "",
            f"Matmul peak measured in the same run, TFLOP/s: {peak}. Training FLOPs per image: "
            f"{', '.join(f'{f / 1e6:,.0f} M' for f in sorted(flops))} (3 x 2 x `cvkit inspect`'s MACs)."]


def recipe_val(data: dict) -> list[str]:
    rows = [[" ".join(f"`--{k.replace('_', '-')} {v}`" for k, v in r["setting"].items()), str(len(r["runs"])),
             f"{r['val_acc_mean']:.4f} ± {r['val_acc_std']:.4f}", f"{r['val_acc_flip_tta_mean']:.4f}"
             if r.get("val_acc_flip_tta_mean") is not None else "", f"{r['train_wall_seconds_mean']:.0f}",
             r.get("cpu", NOT_RECORDED)] for r in data["results"]]
    return _table(["Fashion-MNIST setting", "seeds", "best val acc", "val acc, flip TTA", "train wall s", "CPU"], rows)


def recipe_screen(data: dict) -> list[str]:
    def ema(r: dict) -> str:
        e = r.get("ema")
        return f"{e['val_acc']:.4f} / {e['val_acc_flip_tta']:.4f} (decay {e['decay']})" if e else ""

    rows = [[f"`{r['candidate']}`", str(r["seed"]), f"{r['val_acc']:.4f}", f"{r['val_acc_flip_tta']:.4f}", ema(r),
             f"{r['ms_per_step']:.0f}" if r.get("ms_per_step") else ""]
            for r in sorted(data["results"], key=lambda r: -r["val_acc_flip_tta"])]
    return _table(["net (width:convs per stage) and options", "seed", "val acc", "flip TTA",
                   "weight EMA: val / TTA", "ms/step"], rows)


def ema(data: dict) -> list[str]:
    def cells(part: dict) -> list[str]:
        return [f"{part[k]['mean']:.4f} ± {part[k]['std']:.4f}" for k in ("best_val_acc", "val_acc_with_chosen_tta",
                                                                          "test_acc")] + \
               [f"{part['train_wall_seconds']['mean']:.0f}"]

    rows = [["no EMA", str(len(data["no_ema"]["runs"])), *cells(data["no_ema"])],
            [f"`--ema {data['decay']}`", str(len(data["ema"]["runs"])), *cells(data["ema"])]]
    return _table(["Fashion-MNIST defaults", "seeds", "best val acc", "val acc, chosen TTA", "test acc",
                   "train wall s"], rows)


def distill(data: dict) -> list[str]:
    def cells(part: dict) -> list[str]:
        return [f"{part[k]['mean']:.4f} ± {part[k]['std']:.4f}" for k in ("best_val_acc", "val_acc_with_chosen_tta",
                                                                          "test_acc")] + \
               [f"{part['train_wall_seconds']['mean']:.0f}"]

    t = data["teacher_run"]
    rows = [["student alone", str(len(data["alone"]["runs"])), *cells(data["alone"])],
            [f"student, `--teacher` (W {data['kd_weight']}, T {data['kd_temperature']})", str(len(data["teacher"]["runs"])),
             *cells(data["teacher"])],
            [f"the teacher: smallcnn `--base {t['arch_options']['base']}`, {t['epochs']} epochs", "1",
             f"{t['best_val_acc']:.4f}", "", f"{t['test_acc']:.4f}", f"{t['train_wall_seconds']:.0f}"]]
    return _table(["Fashion-MNIST defaults", "seeds", "best val acc", "val acc, chosen TTA", "test acc",
                   "train wall s"], rows)


def sampler(data: dict) -> list[str]:
    rows = [[f"`--sampler {name}`", str(len(data[name]["runs"])),
             *(f"{data[name][k]['mean']:.3f} ± {data[name][k]['std']:.3f}" for k in ("rare_recall", "common_recall",
                                                                                     "macro_f1"))]
            for name in ("none", "balanced", "sqrt")]
    return _table(["digits, 5 classes cut to a tenth", "seeds", "rare classes' recall", "common classes' recall",
                   "macro F1"], rows)


def tblog(data: dict) -> list[str]:
    steps = data["default_step_ms"]
    rows = [[f"default step, {name} tree", f"{steps[name]['median']:.0f}",
             ", ".join(f"{v:.0f}" for v in steps[name]["rounds"])] for name in steps]
    rows += [["step keeping the epoch's first batch (`--log tensorboard`)",
              f"{data['step_keeping_the_batch_ms']:.0f}", ""],
             ["an epoch's logging: scalars, batch grid, confusion picture", f"{data['end_epoch_ms_median_of_5']:.0f}",
              f"{data['end_epoch_share_of_epoch_steps']:.2%} of the epoch's {data['steps_per_epoch']} steps"],
             ["opening the TensorBoard writer (import included)", f"{data['writer_open_seconds'] * 1000:.0f}", "once a run"]]
    return _table([data["setting"], "ms (median)", "rounds"], rows)


def subject(data: dict) -> list[str]:
    names = {"perceptron_rule": "perceptron, `--optimizer perceptron`", "perceptron_sgd": "perceptron, `--optimizer sgd`",
             "mlp_relu": "mlp, `--activation relu`", "mlp_maxout2": "mlp, `--activation maxout:2`"}
    rows = [[label, str(len(data[key]["runs"])), str(data[key]["runs"][0]["epochs"]), _pm(data[key]["best_val_acc"]),
             _pm(data[key]["last_val_acc"]), f"{data[key]['last_epoch_train_errors']['mean']:.0f}",
             _seconds(data[key]["runs"])] for key, label in names.items() if key in data]
    first = data["perceptron_rule"]["runs"][0]
    return [*_table(["digits, 8 px", "seeds", "epochs", "best val acc", "last val acc", "train errors, last epoch",
                     "train wall s"], rows), "",
            f"The rule's training mistakes per epoch (seed {first['seed']}, of {first['train_images']} images): "
            + ", ".join(map(str, first["train_errors_per_epoch"])) + "."]


def tta(data: dict) -> list[str]:
    rows = [[f"{name}: `--tta {r['tta']}`" if r["tta"] != "none" else f"{name}: `--no-tta`",
             str(r["forward_passes_per_image"]), f"{r['val_accuracy']:.4f}", f"{r['val_log_loss']:.4f}",
             f"{r['val_seconds']:.1f}", f"{r['cost_vs_none']:.1f}x", f"{r['test_accuracy']:.4f}"]
            for name, run in data["runs"].items() for r in run["views"]]
    return _table([f"Fashion-MNIST, {data['epochs']} epochs", "passes per image", "val accuracy", "val log loss",
                   "val seconds", "cost", "test accuracy"], rows)


def adversarial(data: dict) -> list[str]:
    attacks = data["attacks"]
    eps = sorted({int(k.split("eps")[1]) for k in attacks if "_eps" in k})
    rows = [[name, *(f"{attacks[f'{key}_eps{e}']['accuracy']:.3f}" for e in eps)]
            for name, key in (("FGSM", "fgsm"), (f"PGD, {attacks[f'pgd_eps{eps[0]}']['steps']} steps", "pgd"))]
    layers = data["inversion"]["layers"]
    inverted = [[f"`{name}`", f"{v['relative_feature_error']:.3f}", f"{v['pixel_mse']:.4f}", f"{v['pixel_corr']:.3f}"]
                for name, v in layers.items()]
    return [*_table([f"val accuracy of {data['images']} images (clean {attacks['clean_accuracy']:.3f})",
                     *(f"eps {e}/255" for e in eps)], rows), "",
            *_table([f"layer inverted ({data['inversion']['images']} images, {data['inversion']['steps']} steps; "
                     f"the noise start: MSE {data['inversion']['noise_start_pixel_mse']:.4f})",
                     "relative feature error", "pixel MSE", "pixel correlation"], inverted)]


def calibrate(data: dict) -> list[str]:
    names = {"fmnist": "Fashion-MNIST", "digits": "digits"}
    rows = [[names.get(key, key), str(e["epochs"]), f"{e['test_accuracy']:.4f}",
             ", ".join(f"{t:.3f}" for t in e["temperature"]), str(e["val"]["count"]),
             f"{e['test']['nll_before']:.4f} → {e['test']['nll_after']:.4f}",
             f"{e['test']['ece_before']:.4f} → {e['test']['ece_after']:.4f}"] for key, e in data["datasets"].items()]
    return _table(["dataset", "epochs", "test acc", "T (fit on val)", "val images", "test NLL", "test ECE"], rows)


def step_profile(data: dict) -> list[str]:
    lines = []
    for key, net in data["nets"].items():
        rows = [[f"`{p['layer']}` {p['module']} {'x'.join(map(str, p['input']))}", f"{p['ms']:.1f}", f"{p['share']:.0%}",
                 f"{p['gflop_s']:.0f}" if p.get("gflop_s") else ""] for p in sorted(net["layers"], key=lambda p: -p["ms"])[:8]]
        lines += [f"`{key}` ({net['cpu']}): a step of {net['step_ms']:.0f} ms, {net['step_gflop_s']:.0f} GFLOP/s = "
                  f"{net['share_of_peak']:.0%} of the {net['matmul_peak_gflop_s']:.0f} GFLOP/s fp32 matmul peak "
                  f"measured in the same run; the slowest layers (forward + backward, alone):", "",
                  *_table(["layer", "ms", "share", "GFLOP/s"], rows), ""]
    return lines[:-1]


def report_page(data: dict) -> list[str]:
    best, top = data["seconds_best"], data["top"]
    rows = [["`cvkit report RUN`, nothing to reuse", f"{best['report']:.1f}"],
            [f"`cvkit evaluate RUN` + `cvkit cam` of the {top} worst images",
             f"{best['evaluate_cam']:.1f} ({best['evaluate']:.1f} + {best['cam']:.1f})"],
            ["`cvkit report RUN` after `evaluate` (`RUN/eval_test` reused)", f"{best['report_reusing']:.1f}"]]
    before, after = (", ".join(f"{x:.1f}" for x in data[k]) for k in ("load_average_before", "load_average_after"))
    return [*_table([f"{data['test_images']:,} test images, fresh processes", f"seconds (best of {data['rounds']})"],
                    rows), "",
            f"The report from scratch took {data['report_over_evaluate_cam']:g}x the time of `evaluate` + `cam` "
            f"(peak RSS {data['report_peak_rss_mib']} MiB against evaluate's {data['evaluate_peak_rss_mib']} MiB); "
            f"load average {before} before and {after} after (other jobs ran on the machine too)."]


# The benchmarks whose results are shown as a table; the others get their metadata line only.
def autoaugment(data: dict) -> list[str]:
    speed = data.get("images_per_s") or {}
    rows = [[f"`{policy}`", part.replace("_", " "), f"{r['cvkit_batched_images_per_s']:,}",
             f"{r['torchvision_per_sample_images_per_s']:,}", f"{r['speedup']:g}x"]
            for part in ("fmnist_28x28_gray", "photos_64x64_rgb") for policy, r in (speed.get(part) or {}).items()]
    # each part's own date and command (one part may be measured again without the other)
    notes = [f"{name}: measured {m['date']}, commit {m['commit']}, `{m['command']}`" for name, m in
             (("speed", speed.get("measured")), ("accuracy", (data.get("val_accuracy") or {}).get("measured"))) if m]
    lines = _table(["policy", f"batch of {speed.get('batch', 256)}", "cvkit batched img/s",
                    "torchvision per image img/s", "speed-up"], rows) if rows else []
    accuracy = {k: v for k, v in (data.get("val_accuracy") or {}).items() if isinstance(v, dict) and "best_val_acc" in v}
    if accuracy:
        lines += ["", *_table(["Fashion-MNIST, `--augment` preset", "seeds", "best val acc", "train loop s"],
                              [[f"`{k}`", str(len(v["runs"])), _pm(v["best_val_acc"]),
                                f"{v['train_loop_seconds']['mean']:.0f}"] for k, v in accuracy.items()])]
    return [*lines, *([""] + ["; ".join(notes) + "."] if notes else [])]


TABLES: dict[str, Callable[[dict], list[str]]] = {"train_fmnist": train_fmnist, "train_fmnist_amx": train_fmnist,
                                                  "train_fmnist_epyc": train_fmnist,
                                                  "train_fmnist_epyc_fp32": train_fmnist, "budget_fmnist": budget_fmnist,
                                                  "large": large, "distributed": distributed, "export": export, "int8": int8,
                                                  "multilabel": multilabel, "localize": localize,
                                                  "localize_choose": localize_choose, "regress": regress,
                                                  "segment": segment, "segment_models": segment_models,
                                                  "segment_choose": segment_choose, "gpu": gpu,
                                                  "recipe_val": recipe_val, "budget_val": recipe_val, "whiten_val": recipe_val,
                                                  "recipe_screen": recipe_screen, "ema": ema, "distill": distill,
                                                  "sampler": sampler, "tblog": tblog, "subject": subject, "tta": tta,
                                                  "autoaugment": autoaugment, "adversarial": adversarial, "calibrate": calibrate,
                                                  "step_profile": step_profile, "report": report_page}


def results_block(name: str) -> list[str]:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        return [f"`results/{name}.json`: not measured yet (`python bench/bench_{name}.py`)."]
    data = load(name)
    lines = [*TABLES[name](data), ""] if name in TABLES else []
    return [*lines, f"[`results/{name}.json`](results/{name}.json): {metadata(data)}"]


def index_block() -> list[str]:
    rows = []
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        rows.append([f"[`{path.name}`](results/{path.name})", str(data.get("date") or NOT_RECORDED),
                     str(data.get("commit") or NOT_RECORDED), str(data.get("cpu") or NOT_RECORDED),
                     f"`{data['command']}`" if data.get("command") else NOT_RECORDED])
    return _table(["results", "measured", "commit", "CPU", "command"], rows)


def render() -> str:
    template = TEMPLATE.read_text()

    def replace(match: re.Match) -> str:
        lines = index_block() if match["index"] else results_block(match["name"])
        return "\n".join(match["indent"] + line if line else "" for line in lines)

    header = "<!-- Generated by bench/report.py from bench/README.template.md and bench/results/*.json: do not edit. -->\n"
    return header + MARKER.sub(replace, template)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not README.is_file() or README.read_text() != text:
            print(f"out of date: bench/README.md; regenerate with: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    if not README.is_file() or README.read_text() != text:
        README.write_text(text)
        print("wrote bench/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
