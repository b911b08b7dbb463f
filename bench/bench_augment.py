"""Batched augmentation: cvkit's own ops against kornia and torchvision, and their cost in training.

Three parts, on two batch shapes (128 x 1 x 28 x 28 and 32 x 3 x 224 x 224 float in [0, 1]):

1. ops: images/s of each transform of the augmentation policy, for cvkit (``augment`` with that
   field alone), kornia (its batched ``kornia.augmentation`` op, ``same_on_batch=False``, p=1,
   seeded from the augmentation generator inside ``torch.random.fork_rng`` as cvkit would have to)
   and torchvision v2 (one set of random parameters per call, so per-image randomness is a Python
   loop over the batch: that loop is what is timed, at 224 px on the first 8 images of the batch, 2
   for elastic). Probabilities are 1 so every image does the work.
2. preset: images/s of the ``standard`` preset, cvkit batched (uint8 batch -> float -> augment)
   against torchvision applied per sample as a Dataset's __getitem__ does (baseline_fmnist.py):
   PIL image -> v2.Compose(...) -> float tensor, and the same on uint8 tensors without PIL.
3. train_step: ms per training step of the default net (smallcnn, batch 128, 1 x 28 x 28, Adam),
   without and with ``augment(x, standard)``, for both memory formats, steps interleaved; the extra
   time from the medians, from the fastest steps, and as augment's own time over a plain step.

Timings: torch.set_num_threads(2), one warm-up call, then the median of at least 3 calls (more
while under a small time budget), the libraries' calls interleaved so that load from other
processes hits each alike; the load average is recorded.

Usage: python bench/bench_augment.py  (about a minute)  ->  bench/results/augment.json
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from common import write_result

from cvkit.transforms.batch import Preprocess, augment
from cvkit.transforms.policy import PRESETS, AugmentPolicy

SHAPES = {"28x28x1": (128, 1, 28, 28), "224x224x3": (32, 3, 224, 224)}
BUDGET_S = 0.6  # time per measurement after the first 3 calls
COLOUR_ONLY = {"saturation", "hue", "grayscale"}

# The value of each policy field benchmarked (strong settings, probabilities at 1).
VALUES: dict[str, object] = {
    "hflip": 1.0, "vflip": 1.0, "rotate": 15.0, "translate": 0.1, "scale": [0.8, 1.2], "crop": 0.25,
    "perspective": 0.2, "elastic": 0.05, "brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.1,
    "grayscale": 1.0, "blur": 1.5, "noise": 0.1, "erase": 1.0,
}
NOTES = {
    "translate": "cvkit: whole-pixel shift (nearest source pixel, no interpolation); "
                 "kornia/torchvision: RandomAffine (bilinear)",
    "perspective": "kornia/torchvision distortion_scale 0.4 (corners inward up to 0.2 of the size); "
                   "cvkit 0.2 (either way)",
    "elastic": "all three smooth with sigma = size / 8; cvkit smooths a 16 x 16 noise grid and upsamples, "
               "kornia and torchvision smooth full-size noise (kernel 6 sigma + 1)",
    "noise": "kornia and torchvision: one fixed std (0.1); cvkit: per-image std up to 0.1",
    "erase": "kornia fills with 0, torchvision value='random' with normal noise, cvkit with uniform noise",
    "brightness": "kornia/torchvision ColorJitter(brightness=0.3); likewise contrast, saturation, hue",
}


def timed(calls: dict[str, tuple[Callable[[], object], int]]) -> dict[str, float]:
    """Images per second of each ``(fn, images it handles)``: one warm-up call each, then rounds of one
    call each (a burst of load from other processes hits every library alike), at least 3 rounds and
    more while under the time budget; the median call time of each."""
    for fn, _ in calls.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    start = time.perf_counter()
    while len(times[next(iter(calls))]) < 3 or (time.perf_counter() - start < BUDGET_S * len(calls)
                                                 and len(times[next(iter(calls))]) < 15):
        for name, (fn, _) in calls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: round(images / statistics.median(times[name]), 1) for name, (_, images) in calls.items()}


def kornia_op(name: str, shape: tuple[int, ...]):
    import kornia.augmentation as K

    _, _, h, w = shape
    sigma = h / 8
    size = 2 * int(np.ceil(3 * sigma)) + 1
    ops = {
        "hflip": lambda: K.RandomHorizontalFlip(p=1.0),
        "vflip": lambda: K.RandomVerticalFlip(p=1.0),
        "rotate": lambda: K.RandomRotation(15.0, p=1.0),
        "translate": lambda: K.RandomAffine(0.0, translate=(0.1, 0.1), p=1.0),
        "scale": lambda: K.RandomAffine(0.0, scale=(0.8, 1.2), p=1.0),
        "crop": lambda: K.RandomResizedCrop((h, w), scale=(0.25, 1.0), p=1.0),
        "perspective": lambda: K.RandomPerspective(0.4, p=1.0),
        "elastic": lambda: K.RandomElasticTransform((size, size), (sigma, sigma), (0.1, 0.1), p=1.0),
        "brightness": lambda: K.ColorJitter(brightness=0.3, p=1.0),
        "contrast": lambda: K.ColorJitter(contrast=0.3, p=1.0),
        "saturation": lambda: K.ColorJitter(saturation=0.3, p=1.0),
        "hue": lambda: K.ColorJitter(hue=0.1, p=1.0),
        "grayscale": lambda: K.RandomGrayscale(p=1.0),
        "blur": lambda: K.RandomGaussianBlur(11, (0.1, 1.5), p=1.0),
        "noise": lambda: K.RandomGaussianNoise(std=0.1, p=1.0),
        "erase": lambda: K.RandomErasing(p=1.0),
    }
    op = ops[name]()

    def run(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        # kornia draws from the global RNG: seeding it from our generator, inside fork_rng so training's
        # global stream is untouched, is what makes it repeatable; its cost is part of the measurement.
        seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return op(x)

    return run


def torchvision_op(name: str, shape: tuple[int, ...]):
    import torchvision.transforms.v2 as T

    _, _, h, w = shape
    sigma = h / 8
    bilinear = T.InterpolationMode.BILINEAR
    ops = {
        "hflip": lambda: T.RandomHorizontalFlip(p=1.0),
        "vflip": lambda: T.RandomVerticalFlip(p=1.0),
        "rotate": lambda: T.RandomRotation(15.0, interpolation=bilinear),
        "translate": lambda: T.RandomAffine(0.0, translate=(0.1, 0.1), interpolation=bilinear),
        "scale": lambda: T.RandomAffine(0.0, scale=(0.8, 1.2), interpolation=bilinear),
        "crop": lambda: T.RandomResizedCrop((h, w), scale=(0.25, 1.0)),
        "perspective": lambda: T.RandomPerspective(0.4, p=1.0),
        "elastic": lambda: T.ElasticTransform(alpha=0.05 * h, sigma=sigma),
        "brightness": lambda: T.ColorJitter(brightness=0.3),
        "contrast": lambda: T.ColorJitter(contrast=0.3),
        "saturation": lambda: T.ColorJitter(saturation=0.3),
        "hue": lambda: T.ColorJitter(hue=0.1),
        "grayscale": lambda: T.RandomGrayscale(p=1.0),
        "blur": lambda: T.GaussianBlur(11, (0.1, 1.5)),
        "noise": lambda: T.GaussianNoise(sigma=0.1),
        "erase": lambda: T.RandomErasing(p=1.0, value="random"),
    }
    op = ops[name]()
    return lambda x: torch.stack([op(image) for image in x])  # one draw per image needs one call per image


def per_image_subset(name: str, shape: tuple[int, ...]) -> int:
    """How many images torchvision's per-image loop is timed on: its cost is linear in the count, and a
    full 224 px batch would take minutes (elastic: about 3 s an image, blurring full-size noise)."""
    if shape[2] < 100:
        return shape[0]
    return 2 if name == "elastic" else 8


def ops_table() -> dict:
    table: dict = {}
    for shape_name, shape in SHAPES.items():
        x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
        n = shape[0]
        for name, value in VALUES.items():
            row = table.setdefault(name, {})
            if shape[1] == 1 and name in COLOUR_ONLY:
                row[shape_name] = None  # colour-only: a no-op on one channel
                continue
            policy = AugmentPolicy(**{name: value})
            gen = torch.Generator().manual_seed(1)
            k_op, t_op = kornia_op(name, shape), torchvision_op(name, shape)
            few = x[:per_image_subset(name, shape)]
            row[shape_name] = timed({"cvkit": (partial(augment, x, policy, gen), n),
                                     "kornia": (partial(k_op, x, gen), n),
                                     "torchvision_per_image": (partial(t_op, few), len(few))})
            row[shape_name]["fastest"] = max(row[shape_name], key=row[shape_name].get)
            print(name, shape_name, row[shape_name], flush=True)
    return {name: {"value": VALUES[name], **({"note": NOTES[name]} if name in NOTES else {}), **row}
            for name, row in table.items()}


def torchvision_standard(to_pil: bool):
    """The standard preset as a hand-written script's per-sample pipeline (Dataset.__getitem__)."""
    import torchvision.transforms.v2 as T

    p = PRESETS["standard"]
    return T.Compose([
        *([T.ToPILImage()] if to_pil else []),
        T.RandomHorizontalFlip(p["hflip"]),
        T.RandomAffine(p["rotate"], translate=(p["translate"], p["translate"]), scale=tuple(p["scale"]),
                       interpolation=T.InterpolationMode.BILINEAR),
        T.ColorJitter(brightness=p["brightness"], contrast=p["contrast"]),
        T.ToImage(), T.ToDtype(torch.float32, scale=True),
        T.RandomErasing(p["erase"], value="random"),
    ])


def cvkit_batch(pre: Preprocess, images: torch.Tensor, policy: AugmentPolicy, gen: torch.Generator) -> torch.Tensor:
    return augment(pre.to_unit(images), policy, gen)


def per_sample(pipeline: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    return torch.stack([pipeline(image) for image in images])  # as a DataLoader collates __getitem__'s results


def preset_table() -> dict:
    policy = AugmentPolicy(**PRESETS["standard"])
    out: dict = {}
    for shape_name, (n, c, h, w) in SHAPES.items():
        images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (n, h, w, c), dtype=np.uint8))
        pre = Preprocess([0.5] * c, [0.25] * c, torch.device("cpu"), channels_last=False)
        gen = torch.Generator().manual_seed(0)
        chw = images.permute(0, 3, 1, 2)  # uint8 C x H x W per image, as a tensor dataset holds them
        pil_pipeline, tensor_pipeline = torchvision_standard(True), torchvision_standard(False)
        row = timed({
            "cvkit_batched": (partial(cvkit_batch, pre, images, policy, gen), n),
            "torchvision_per_sample_pil": (partial(per_sample, pil_pipeline, chw), n),
            "torchvision_per_sample_tensor": (partial(per_sample, tensor_pipeline, chw), n),
        })
        row["speedup_vs_pil"] = round(row["cvkit_batched"] / row["torchvision_per_sample_pil"], 1)
        row["speedup_vs_tensor"] = round(row["cvkit_batched"] / row["torchvision_per_sample_tensor"], 1)
        out[shape_name] = row
        print("standard", shape_name, row, flush=True)
    return {"policy": PRESETS["standard"], "images_per_s": out}


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, pre: Preprocess, images: torch.Tensor,
               labels: torch.Tensor, policy: AugmentPolicy | None, gen: torch.Generator) -> None:
    """What Trainer.step does on the CPU: scale, (augment,) normalize, forward, backward, update."""
    x = pre.to_unit(images)
    if policy is not None:
        x = augment(x, policy, gen)
    loss = torch.nn.functional.cross_entropy(model(pre.normalize(x)), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def train_step_table(steps: int = 15) -> dict:
    from cvkit.models import create_model

    policy = AugmentPolicy(**PRESETS["standard"])
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (128, 28, 28, 1), dtype=np.uint8))
    labels = torch.from_numpy(np.random.default_rng(1).integers(0, 10, 128))
    out: dict = {}
    for fmt in ("contiguous", "channels_last"):
        torch.manual_seed(0)
        model = create_model("smallcnn", 10, 1, (28, 28))
        model.to(memory_format=torch.channels_last if fmt == "channels_last" else torch.contiguous_format).train()
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        pre = Preprocess([0.286], [0.353], torch.device("cpu"), channels_last=fmt == "channels_last")
        gen = torch.Generator().manual_seed(0)
        times: dict[bool, list[float]] = {False: [], True: []}
        for i in range(2 * steps + 2):  # interleaved, so a burst of load hits both alike
            with_augment = bool(i % 2)
            t0 = time.perf_counter()
            train_step(model, opt, pre, images, labels, policy if with_augment else None, gen)
            if i >= 2:
                times[with_augment].append(time.perf_counter() - t0)
        x = pre.to_unit(images)  # a plain step scales the batch too: augment's own time is without it
        t0 = time.perf_counter()
        for _ in range(steps):
            augment(x, policy, gen)
        augment_ms = (time.perf_counter() - t0) / steps * 1000
        plain, augmented = (statistics.median(times[k]) * 1000 for k in (False, True))
        fastest, fastest_augmented = (min(times[k]) * 1000 for k in (False, True))
        out[fmt] = {"ms_per_step": round(plain, 1), "ms_per_step_augmented": round(augmented, 1),
                    "extra_percent": round(100 * (augmented / plain - 1), 1),
                    "extra_percent_fastest_steps": round(100 * (fastest_augmented / fastest - 1), 1),
                    "augment_ms": round(augment_ms, 2),
                    "augment_share_percent": round(100 * augment_ms / plain, 1)}
        print("train_step", fmt, out[fmt], flush=True)
    return {"net": "smallcnn", "batch": 128, "image": "28x28x1", "optimizer": "Adam", "policy": "standard", **out}


def main() -> None:
    torch.set_num_threads(2)
    import kornia
    import torchvision

    start = time.perf_counter()
    load_before = os.getloadavg()[0]
    result = {
        "versions": {"torch": torch.__version__, "kornia": kornia.__version__, "torchvision": torchvision.__version__},
        "threads": torch.get_num_threads(),
        "units": "images per second (median of >= 3 timed calls after one warm-up)",
        "ops": ops_table(),
        "standard_preset": preset_table(),
        "train_step": train_step_table(),
    }
    result["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    result["bench_seconds"] = round(time.perf_counter() - start, 1)
    write_result("augment", result)


if __name__ == "__main__":
    main()
