"""`cvkit cam`: Grad-CAM speed against pytorch-grad-cam, and localization on generated shapes.

1. Speed: resnet18 (timm, random weights, 10 classes) on 64 generated 224x224 RGB images, Grad-CAM
   of the predicted class at layer4, 2 threads. Images/s of cvkit's batched ``class_maps`` and of
   pytorch-grad-cam's own ``GradCAM`` called per image (as its README loops) and on batches of the
   same size, all on the same preprocessed tensor in the same process; and of the whole
   ``cvkit cam`` command (decoding, maps, .npy and overlay PNG per image, cams.csv).
2. Localization: smallcnn with a GAP head trained on generated shapes (tests/shapes.py: 3 classes,
   32 px, a bright shape on a textured background, true boxes known), then ``cvkit cam`` on its
   held-out images with --boxes and --metrics for cam, gradcam and augmented-gradcam, 3 seeds:
   pointing game, IoU >= 0.5 rate, localization accuracy, faithfulness, seconds per image.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from bench.common import CVKIT, WORK, run_measured, spread, write_result  # noqa: E402

SPEED_IMAGES = 64
BATCH = 16
METHODS = ("cam", "gradcam", "augmented-gradcam")
SEEDS = (0, 1, 2)


def _speed_run(root: Path) -> tuple[Path, Path]:
    """A run directory holding a random resnet18, and a folder of 224 px images."""
    from cvkit.files.run import ModelInfo, save_model_weights
    from cvkit.models import create_model
    from tests.shapes import shape_image

    run, images = root / "resnet18_run", root / "images224"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(SPEED_IMAGES):
        image, _ = shape_image(("disc", "square", "cross")[i % 3], rng, canvas=224, sizes=(60, 110))
        Image.fromarray(image).save(images / f"{i:03d}.jpg", quality=92)
    torch.manual_seed(0)
    model = create_model("resnet18", 10, 3, (224, 224))
    run.mkdir(parents=True, exist_ok=True)
    ModelInfo(arch="resnet18", num_classes=10, num_outputs=10, in_chans=3, input_size=[224, 224],
              classes=[f"c{i}" for i in range(10)], loss="ce", mean=[0.5] * 3, std=[0.25] * 3).write(run)
    save_model_weights(run, model.state_dict(), 0)
    return run, images


def speed() -> dict:
    from pytorch_grad_cam import GradCAM

    from cvkit.explain.methods import class_maps
    from cvkit.runtime import load_run, read_images

    torch.set_num_threads(2)
    run, folder = _speed_run(WORK / "cam_speed")
    loaded = load_run(run, torch.device("cpu"), precision="fp32")
    found = read_images(sorted(str(p) for p in folder.iterdir()), (224, 224), 3)
    x = loaded.pre(torch.from_numpy(found.images))
    model = loaded.model
    n = len(x)

    def cvkit_maps() -> None:
        for b in range(0, n, BATCH):
            class_maps(model, x[b:b + BATCH], "layer4", None, "gradcam")

    def pgc(batch: int) -> None:
        with GradCAM(model=model, target_layers=[model.layer4]) as cam:
            for b in range(0, n, batch):
                cam(input_tensor=x[b:b + batch], targets=None)

    paths = sorted(str(p) for p in folder.iterdir())
    outputs = WORK / "cam_speed" / "script_out"

    def pgc_script() -> None:
        """What a user writes with pytorch-grad-cam: per image, read, preprocess, explain, save the overlay
        and the map (its README's loop)."""
        from pytorch_grad_cam.utils.image import preprocess_image, show_cam_on_image

        outputs.mkdir(parents=True, exist_ok=True)
        with GradCAM(model=model, target_layers=[model.layer4]) as cam:
            for path in paths:
                rgb = np.asarray(Image.open(path).convert("RGB").resize((224, 224)), dtype=np.float32) / 255
                grayscale = cam(input_tensor=preprocess_image(rgb, mean=[0.5] * 3, std=[0.25] * 3), targets=None)[0]
                Image.fromarray(show_cam_on_image(rgb, grayscale, use_rgb=True)).save(outputs / f"{Path(path).stem}.png")
                np.save(outputs / f"{Path(path).stem}.npy", grayscale)

    def cvkit_library() -> None:
        """cvkit's whole command in-process (reading, maps, .npy, overlays, cams.csv), without the start-up."""
        from cvkit.explain.cam import CamOptions, cam

        cam(loaded, [str(folder)], WORK / "cam_speed" / "library_out", CamOptions(batch_size=BATCH), force=True)

    calls = {"cvkit_class_maps_batch16": cvkit_maps, "pytorch_grad_cam_per_image": lambda: pgc(1),
             "pytorch_grad_cam_batch16": lambda: pgc(BATCH), "cvkit_cam_library_end_to_end": cvkit_library,
             "pytorch_grad_cam_script_end_to_end": pgc_script}
    for fn in calls.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(3):  # rounds of one call each, so drift hits every contender alike
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    result = {name: round(n / float(np.median(t)), 2) for name, t in times.items()}
    out = WORK / "cam_speed" / "out"
    seconds, rss, _ = run_measured(CVKIT + ["-q", "cam", str(run), str(folder), "--out", str(out), "--force",
                                            "--batch-size", str(BATCH)])
    result["cvkit_cam_command_with_startup"] = round(n / seconds, 2)  # a fresh process: imports, model build
    result["cvkit_cam_command_peak_rss_mib"] = round(rss / 2**20)
    result["speedup_vs_per_image"] = round(result["cvkit_class_maps_batch16"] / result["pytorch_grad_cam_per_image"], 2)
    result["speedup_vs_batch16"] = round(result["cvkit_class_maps_batch16"] / result["pytorch_grad_cam_batch16"], 2)
    result["speedup_end_to_end"] = round(result["cvkit_cam_library_end_to_end"]
                                         / result["pytorch_grad_cam_script_end_to_end"], 2)
    print("speed", result, flush=True)
    return {"model": "resnet18 (timm, random weights, 10 classes)", "images": n, "size": "224x224x3",
            "layer": "layer4", "threads": 2, "images_per_s": result}


THRESHOLDS = (0.2, 0.3, 0.4, 0.5)


def _listing(path: Path, paths: list[str]) -> Path:
    path.write_text("path\n" + "\n".join(paths) + "\n")
    return path


def _cam(run: Path, listing: Path, out: Path, boxes: Path, extra: list[str]) -> float:
    seconds, _, _ = run_measured(CVKIT + ["-q", "cam", str(run), str(listing), "--out", str(out), "--force", "--boxes",
                                          str(boxes), *sum((["--method", m] for m in METHODS), []), *extra])
    return seconds


def _choose_thresholds(out: Path, paths: list[str], boxes: Path) -> dict[str, float]:
    """Per method, the box threshold with the best mean IoU on the val images' maps."""
    from cvkit.explain.boxes import boxes_from_maps, ious
    from cvkit.files.cams import read_true_boxes

    truth = read_true_boxes(boxes)
    true = np.array([truth.get(p).box for p in paths])
    chosen = {}
    for m in METHODS:
        maps = np.stack([np.load(out / f"{Path(p).stem}_{m}.npy") for p in paths])
        scores = {t: float(ious(boxes_from_maps(maps, t), true).mean()) for t in THRESHOLDS}
        chosen[m] = max(scores, key=scores.get)
    return chosen


def localization() -> dict:
    """Box thresholds chosen on the val images; the test images are read once per threshold setting."""
    import pandas as pd

    from tests.shapes import write_shapes

    root = WORK / "cam_shapes"
    source = write_shapes(root, 100)
    boxes = root / "boxes.csv"
    data = root / "data"
    run_measured(CVKIT + ["-q", "prepare", str(source), "--out", str(data), "--size", "32", "--val", "0.2",
                          "--test", "0.2", "--force"])
    run_measured(CVKIT + ["-q", "normalize", str(data)])
    manifest = pd.read_csv(data / "manifest.csv")
    val = list(manifest.loc[manifest["split"] == "val", "path"])
    test = list(manifest.loc[manifest["split"] == "test", "path"])
    val_list, test_list = _listing(root / "val.csv", val), _listing(root / "test.csv", test)
    per_seed: dict[str, dict[str, dict[str, list[float]]]] = {"default_0.2": {}, "val_chosen": {}}
    thresholds: dict[str, list[float]] = {m: [] for m in METHODS}
    seconds: list[float] = []
    for seed in SEEDS:
        run = root / f"run{seed}"
        run_measured(CVKIT + ["-q", "--seed", str(seed), "train", str(data), "--out", str(run), "--arch", "smallcnn",
                              "--head", "gap", "--epochs", "15", "--force"])
        _cam(run, val_list, root / f"val{seed}", boxes, [])
        chosen = _choose_thresholds(root / f"val{seed}", val, boxes)
        for m in METHODS:
            thresholds[m].append(chosen[m])
        seconds.append(_cam(run, test_list, root / f"test{seed}", boxes, ["--metrics"]) / len(test))
        outs = {"default_0.2": root / f"test{seed}"}
        for m in METHODS:
            out = root / f"test{seed}_{m}"
            run_measured(CVKIT + ["-q", "cam", str(run), str(test_list), "--out", str(out), "--force", "--boxes",
                                  str(boxes), "--method", m, "--box-threshold", str(chosen[m])])
            outs[f"val_chosen:{m}"] = out
        faith = json.loads((root / f"test{seed}" / "faithfulness.json").read_text())["methods"]
        for m in METHODS:
            for setting, out in (("default_0.2", outs["default_0.2"]), ("val_chosen", outs[f"val_chosen:{m}"])):
                figures = json.loads((out / "localization.json").read_text())["methods"][m]
                if setting == "default_0.2":
                    figures = {**figures, **faith[m]}
                for key, value in figures.items():
                    if key != "count":
                        per_seed[setting].setdefault(m, {}).setdefault(key, []).append(float(value))
        print("seed", seed, "thresholds", chosen, flush=True)
    return {"data": "tests/shapes.py: 3 shapes x 100, 32 px RGB; 60 val images choose the box threshold, "
                    "60 test images are reported", "val_images": len(val), "test_images": len(test),
            "model": "smallcnn --head gap, 15 epochs", "seeds": list(SEEDS), "thresholds_tried": list(THRESHOLDS),
            "thresholds_chosen_on_val": thresholds,
            "seconds_per_image_all_methods_with_metrics": spread(seconds),
            "figures": {setting: {m: {k: spread(v) for k, v in values.items()} for m, values in methods.items()}
                        for setting, methods in per_seed.items()}}


def main() -> None:
    """``python bench/bench_cam.py [speed] [localization]``: the parts named (default both); a part not
    run keeps its figures from the last results file."""
    from bench.common import RESULTS

    parts = sys.argv[1:] or ["speed", "localization"]
    previous = RESULTS / "cam.json"
    result = {k: v for k, v in json.loads(previous.read_text()).items() if k in ("speed", "localization")} \
        if previous.is_file() else {}
    started = time.perf_counter()
    for part in parts:
        result[part] = {"speed": speed, "localization": localization}[part]()
    result["bench_seconds"] = round(time.perf_counter() - started, 1)
    write_result("cam", result)


if __name__ == "__main__":
    main()
