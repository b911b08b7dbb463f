"""Reference point for cvkit's segmentation benchmark: a U-Net trained the way a typical user writes it by hand
(torch Dataset that opens the PNGs with PIL, the same random horizontal flip on image and mask, DataLoader,
Adam, CrossEntropyLoss(ignore_index=255), fixed epochs and batch size).

DATA is a folder of images/NAME.png (RGB) and masks/NAME.png (class indices, 255 = ignore), with an
optional classes.txt (one class name a line; its length is the number of classes, else --classes), as
tests/tasks/scenes.py writes it. The last --val of the sorted names are the val split, or --splits names
them: a CSV with columns name,split (train/val; other rows unused). Normalization: the train split's
per-channel mean and std.

Prints one JSON line per epoch: {"epoch", "seconds", "images_per_s", "pixels_per_s", "train_loss",
"val_miou", "val_pixel_acc"}; --json writes the summary. The throughput counts the training loop only
(data loading included, val excluded); pixels/s = images/s x H x W, over every epoch and (steady) over
all but the first. mIoU: the mean over classes of
TP / (TP + FP + FN) from the val confusion matrix (pixels labelled 255 skipped), over the classes present
in the val masks or predictions.

Usage: python bench/baseline_unet.py DATA [--epochs 3] [--base 16] [--depth 3] [--batch 32] [--json out.json]
"""
import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torchvision.transforms.functional as TF
from PIL import Image

IGNORE = 255


def double_conv(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """Ronneberger et al. with same padding: level i has base * 2**i channels, depth max-pools down and as
    many transposed convolutions up, each followed by the concatenated skip and a double conv."""

    def __init__(self, in_channels=3, classes=11, base=64, depth=4):
        super().__init__()
        widths = [base * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([double_conv(in_channels, widths[0])]
                                  + [double_conv(widths[i], widths[i + 1]) for i in range(depth)])
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                for i in reversed(range(depth)))
        self.merge = nn.ModuleList(double_conv(2 * widths[i], widths[i]) for i in reversed(range(depth)))
        self.out = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        skips.pop()  # the bottleneck is x itself
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        return self.out(x)


class Scenes(torch.utils.data.Dataset):
    def __init__(self, root, names, mean, std, train):
        self.root, self.names, self.mean, self.std, self.train = Path(root), names, mean, std, train

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        image = Image.open(self.root / "images" / self.names[i]).convert("RGB")
        mask = Image.open(self.root / "masks" / self.names[i])
        if self.train and torch.rand(1).item() < 0.5:
            image, mask = TF.hflip(image), TF.hflip(mask)
        x = TF.normalize(TF.to_tensor(image), self.mean, self.std)
        return x, torch.from_numpy(np.array(mask, dtype=np.int64))


def split_names(root, val, splits):
    names = sorted(p.name for p in (root / "images").glob("*.png"))
    if not names:
        raise SystemExit(f"no images/*.png in {root}")
    if splits:
        table = pd.read_csv(splits)
        by_name = dict(zip(table["name"].astype(str), table["split"]))
        missing = [n for n in names if n not in by_name and Path(n).stem not in by_name]
        if missing:
            raise SystemExit(f"{splits} has no split for {len(missing)} images, e.g. {missing[0]}")
        split = [by_name.get(n, by_name.get(Path(n).stem)) for n in names]
        return [n for n, s in zip(names, split) if s == "train"], [n for n, s in zip(names, split) if s == "val"]
    cut = len(names) - math.ceil(val * len(names))
    return names[:cut], names[cut:]


def channel_stats(root, names):
    pixels = np.concatenate([np.asarray(Image.open(root / "images" / n).convert("RGB"), np.float64).reshape(-1, 3)
                             for n in names]) / 255
    return pixels.mean(0).tolist(), pixels.std(0).tolist()


def confusion(pred, target, classes):
    keep = target != IGNORE
    return torch.bincount(target[keep] * classes + pred[keep], minlength=classes * classes).reshape(classes, classes)


def miou(cm):
    cm = cm.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    iou = tp[union > 0] / union[union > 0]
    return iou.mean().item(), (tp.sum() / cm.sum()).item()


def main():
    a = argparse.ArgumentParser()
    a.add_argument("data", type=Path)
    a.add_argument("--epochs", type=int, default=3)
    a.add_argument("--base", type=int, default=16)
    a.add_argument("--depth", type=int, default=3)
    a.add_argument("--batch", type=int, default=32)
    a.add_argument("--lr", type=float, default=1e-3)
    a.add_argument("--val", type=float, default=0.2)
    a.add_argument("--splits", type=Path, help="CSV name,split: use these splits instead of the last --val")
    a.add_argument("--classes", type=int, default=11, help="used when DATA has no classes.txt")
    a.add_argument("--workers", type=int, default=0)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--json", type=Path)
    args = a.parse_args()
    torch.manual_seed(args.seed)
    root = args.data
    classes_file = root / "classes.txt"
    classes = len(classes_file.read_text().split()) if classes_file.is_file() else args.classes
    train_names, val_names = split_names(root, args.val, args.splits)
    mean, std = channel_stats(root, train_names)
    train = Scenes(root, train_names, mean, std, train=True)
    val = Scenes(root, val_names, mean, std, train=False)
    height, width = train[0][0].shape[1:]
    if height % 2 ** args.depth or width % 2 ** args.depth:
        raise SystemExit(f"--depth {args.depth} needs a size divisible by {2 ** args.depth}, got {width}x{height}")
    train_loader = torch.utils.data.DataLoader(train, batch_size=args.batch, shuffle=True, num_workers=args.workers)
    val_loader = torch.utils.data.DataLoader(val, batch_size=128, num_workers=args.workers)

    model = UNet(3, classes, args.base, args.depth)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE)
    epochs, times = [], []
    for epoch in range(1, args.epochs + 1):
        model.train()
        start, loss_sum = time.perf_counter(), 0.0
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(x)
        seconds = time.perf_counter() - start
        times.append(seconds)
        model.eval()
        cm = torch.zeros(classes, classes, dtype=torch.int64)
        with torch.no_grad():
            for x, y in val_loader:
                cm += confusion(model(x).argmax(1).flatten(), y.flatten(), classes)
        val_miou, val_acc = miou(cm)
        epochs.append({"epoch": epoch, "seconds": round(seconds, 2), "images_per_s": round(len(train) / seconds, 1),
                       "pixels_per_s": round(len(train) * height * width / seconds),
                       "train_loss": round(loss_sum / len(train), 4), "val_miou": round(val_miou, 4),
                       "val_pixel_acc": round(val_acc, 4)})
        print(json.dumps(epochs[-1]), flush=True)
    # After the first epoch, which also pays for the allocator's and oneDNN's warm-up.
    total = sum(times)
    steady = round((args.epochs - 1) * len(train) * height * width / sum(times[1:])) if args.epochs > 1 else None
    summary = {"train_images": len(train), "val_images": len(val), "size": [int(height), int(width)],
               "classes": classes, "epochs": args.epochs, "batch": args.batch, "base": args.base, "depth": args.depth,
               "lr": args.lr, "threads": torch.get_num_threads(),
               "params": sum(p.numel() for p in model.parameters()), "train_seconds": round(total, 2),
               "images_per_s": round(args.epochs * len(train) / total, 1),
               "pixels_per_s": round(args.epochs * len(train) * height * width / total),
               "steady_pixels_per_s": steady,
               "val_miou": epochs[-1]["val_miou"], "best_val_miou": max(e["val_miou"] for e in epochs),
               "val_pixel_acc": epochs[-1]["val_pixel_acc"], "per_epoch": epochs}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "per_epoch"}), flush=True)


if __name__ == "__main__":
    main()
